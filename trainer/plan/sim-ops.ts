// Symbolic versions of the tfjs-core 4.22 ops and gradient configs that a tilestream training
// step runs, and the backends' kernel behaviour that changes memory: which kernels alias their
// input's buffer, and which kernels the project composes from other ops (trainer/backend/kernels).
// Each function mirrors the tfjs source it names, op for op, so that the simulated allocations
// match the real ones; test/plan/calibration.test.ts checks the sum against tf.profile.

import {
  type Attrs,
  type BackendModel,
  type CompositeKernel,
  type GradConfig,
  type SimDtype,
  SimEngine,
  type SimTensor,
  sizeOf,
} from './sim-engine.ts';

type T = SimTensor;
type Shape = readonly number[];
/** Explicit padding of a 4-D NHWC op: [top, bottom, left, right]. */
export type Pad4 = readonly [number, number, number, number];

// ---------------------------------------------------------------- shapes

export function broadcastShape(a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** broadcast_util.getReductionAxes: output axes that `inShape` was broadcast along. */
function reductionAxes(inShape: Shape, outShape: Shape): number[] {
  const axes: number[] = [];
  for (let i = 0; i < outShape.length; i++) {
    const inDim = inShape[inShape.length - 1 - i];
    const outAxis = outShape.length - 1 - i;
    if (inDim === undefined || (inDim === 1 && (outShape[outAxis] as number) > 1)) axes.unshift(outAxis);
  }
  return axes;
}

function reduceShape(shape: Shape, axes: readonly number[], keepDims = false): number[] {
  return keepDims
    ? shape.map((d, i) => (axes.includes(i) ? 1 : d))
    : shape.filter((_, i) => !axes.includes(i));
}

/** Output length of a window sweep: floor((n + pads − k_eff) / s) + 1. */
function windowOut(n: number, lo: number, hi: number, k: number, s: number, d = 1): number {
  return Math.floor((n + lo + hi - (d * (k - 1) + 1)) / s) + 1;
}

// ---------------------------------------------------------------- ops

const scalar = (sim: SimEngine): T => sim.make([]);

function binary(sim: SimEngine, name: string, a: T, b: T | number, dtype?: SimDtype): T {
  // op(): convertToTensor makes scalars and makeTypesMatch casts inside the op's scope.
  return sim.tidy(() => {
    let $a = a;
    let $b = typeof b === 'number' ? scalar(sim) : b;
    if ($a.dtype !== $b.dtype) {
      $a = cast(sim, $a, 'float32');
      $b = cast(sim, $b, 'float32');
    }
    return sim.kernel(name, { a: $a, b: $b }, broadcastShape($a.shape, $b.shape), {}, dtype ?? $a.dtype);
  });
}

export const add = (sim: SimEngine, a: T, b: T | number): T => binary(sim, 'Add', a, b);
export const mul = (sim: SimEngine, a: T, b: T | number): T => binary(sim, 'Multiply', a, b);
const sub = (sim: SimEngine, a: T | number, b: T): T =>
  typeof a === 'number'
    ? sim.tidy(() => sim.kernel('Sub', { a: scalar(sim), b }, b.shape))
    : binary(sim, 'Sub', a, b);
const div = (sim: SimEngine, a: T, b: number): T => binary(sim, 'RealDiv', a, b);
export const minimum = (sim: SimEngine, a: T, b: number): T => binary(sim, 'Minimum', a, b);
const compare = (sim: SimEngine, name: string, a: T, b: T | number): T => binary(sim, name, a, b, 'bool');

export const unary = (sim: SimEngine, name: string, x: T, attrs: Attrs = {}): T =>
  sim.kernel(name, { x }, x.shape, attrs);
export const cast = (sim: SimEngine, x: T, dtype: SimDtype): T =>
  sim.kernel('Cast', { x }, x.shape, { dtype }, dtype);
export const reshape = (sim: SimEngine, x: T, shape: Shape): T =>
  sim.kernel('Reshape', { x }, shape, { shape }, x.dtype);
export const clone = (sim: SimEngine, x: T): T => sim.clone(x);
const step = (sim: SimEngine, x: T): T => unary(sim, 'Step', x);
export const zerosLike = (sim: SimEngine, x: T): T => unary(sim, 'ZerosLike', x);
/** tf.ones: makeTensor, no kernel. */
const ones = (sim: SimEngine, shape: Shape): T => sim.make(shape);

export function pad(sim: SimEngine, x: T, paddings: readonly (readonly [number, number])[]): T {
  const shape = x.shape.map((d, i) => d + (paddings[i]?.[0] ?? 0) + (paddings[i]?.[1] ?? 0));
  return sim.kernel('PadV2', { x }, shape, { paddings });
}
export const pad4 = (sim: SimEngine, x: T, p: Pad4): T =>
  pad(sim, x, [
    [0, 0],
    [p[0], p[1]],
    [p[2], p[3]],
    [0, 0],
  ]);

export function slice(sim: SimEngine, x: T, begin: readonly number[], size: readonly number[]): T {
  const s = size.map((v, i) => (v === -1 ? (x.shape[i] as number) - (begin[i] as number) : v));
  return sim.kernel('Slice', { x }, s, { begin, size: s });
}
export const transpose = (sim: SimEngine, x: T, perm: readonly number[]): T =>
  sim.kernel(
    'Transpose',
    { x },
    perm.map((p) => x.shape[p] as number),
    { perm },
  );

export function concat(sim: SimEngine, xs: readonly T[], axis: number): T {
  if (xs.length === 1) return sim.clone(xs[0] as T);
  const shape = [...(xs[0] as T).shape];
  shape[axis] = xs.reduce((a, t) => a + (t.shape[axis] as number), 0);
  const inputs: Record<string, T> = {};
  xs.forEach((t, i) => {
    inputs[String(i)] = t;
  });
  return sim.kernel('Concat', inputs, shape, { axis });
}

export function split(sim: SimEngine, x: T, sizes: readonly number[], axis: number): T[] {
  const outs = sizes.map((s) => x.shape.map((d, i) => (i === axis ? s : d)));
  return sim.runKernel(
    'SplitV',
    { x },
    outs.map((shape) => ({ shape })),
    { axis, sizes },
  );
}

export const sum = (sim: SimEngine, x: T, axes: readonly number[]): T =>
  sim.kernel('Sum', { x }, reduceShape(x.shape, axes), { axes });
export const mean = (sim: SimEngine, x: T, axes: readonly number[]): T =>
  sim.kernel('Mean', { x }, reduceShape(x.shape, axes), { axes });
export const max = (sim: SimEngine, x: T, axes: readonly number[]): T =>
  sim.kernel('Max', { x }, reduceShape(x.shape, axes), { axes });

export function matMul(sim: SimEngine, a: T, b: T, tA = false, tB = false): T {
  const m = tA ? a.shape[1] : a.shape[0];
  const n = tB ? b.shape[0] : b.shape[1];
  return sim.kernel('BatchMatMul', { a, b }, [m as number, n as number], { tA, tB });
}

/** tf.where with equal shapes: broadcastTo clones each argument inside the op's scope. */
function where(sim: SimEngine, cond: T, a: T, b: T): T {
  return sim.tidy(() => {
    const c = sim.clone(cond);
    const ta = sim.clone(a);
    const tb = sim.clone(b);
    return sim.kernel('Select', { condition: c, t: ta, e: tb }, ta.shape);
  });
}

export interface ConvAttrs {
  readonly strides: readonly [number, number];
  readonly pad: Pad4;
  readonly dilations: readonly [number, number];
}

function convOutShape(x: Shape, filter: Shape, a: ConvAttrs, outChannels: number): number[] {
  return [
    x[0] as number,
    windowOut(x[1] as number, a.pad[0], a.pad[1], filter[0] as number, a.strides[0], a.dilations[0]),
    windowOut(x[2] as number, a.pad[2], a.pad[3], filter[1] as number, a.strides[1], a.dilations[1]),
    outChannels,
  ];
}

export const conv2d = (sim: SimEngine, x: T, filter: T, a: ConvAttrs): T =>
  sim.kernel('Conv2D', { x, filter }, convOutShape(x.shape, filter.shape, a, filter.shape[3] as number), {
    ...a,
  });

export const depthwiseConv2d = (sim: SimEngine, x: T, filter: T, a: ConvAttrs): T =>
  sim.kernel(
    'DepthwiseConv2dNative',
    { x, filter },
    convOutShape(x.shape, filter.shape, a, (filter.shape[2] as number) * (filter.shape[3] as number)),
    { ...a },
  );

export interface PoolAttrs {
  readonly kernel: readonly [number, number];
  readonly strides: readonly [number, number];
}

function poolOut(x: Shape, a: PoolAttrs): number[] {
  return [
    x[0] as number,
    windowOut(x[1] as number, 0, 0, a.kernel[0], a.strides[0]),
    windowOut(x[2] as number, 0, 0, a.kernel[1], a.strides[1]),
    x[3] as number,
  ];
}

export const maxPool = (sim: SimEngine, x: T, a: PoolAttrs): T =>
  sim.kernel('MaxPool', { x }, poolOut(x.shape, a), { ...a });

/** tf.avgPool: the AvgPool kernel, then a cast to the input dtype, inside the op's scope. */
export const avgPool = (sim: SimEngine, x: T, a: PoolAttrs): T =>
  sim.tidy(() => cast(sim, sim.kernel('AvgPool', { x }, poolOut(x.shape, a), { ...a }), x.dtype));

// ---------------------------------------------------------------- gradients (tfjs-core/dist/gradients)

function unaryGrad(
  inputsToSave: string[] | undefined,
  outputsToSave: boolean[] | undefined,
  fn: GradConfig['gradFunc'],
) {
  const g: GradConfig = {
    ...(inputsToSave && { inputsToSave }),
    ...(outputsToSave && { outputsToSave }),
    gradFunc: fn,
  };
  return g;
}

const dy0 = (dys: readonly T[]): T => dys[0] as T;
const s0 = (saved: readonly T[]): T => saved[0] as T;
const s1 = (saved: readonly T[]): T => saved[1] as T;

function broadcastGrad(sim: SimEngine, dy: T, inShape: Shape, outShape: Shape): T {
  let res = dy;
  const axes = reductionAxes(inShape, outShape);
  if (axes.length > 0) res = sum(sim, res, axes);
  return reshape(sim, res, inShape);
}

function gradForMinAndMax(sim: SimEngine, dy: T, y: T, x: T, axes: readonly number[]) {
  const full = reduceShape(x.shape, axes, true);
  const y4 = y.shape.length < x.shape.length ? reshape(sim, y, full) : y;
  const dy4 = dy.shape.length < x.shape.length ? reshape(sim, dy, full) : dy;
  return () => mul(sim, dy4, cast(sim, compare(sim, 'Equal', x, y4), 'float32'));
}

export const GRADIENTS: ReadonlyMap<string, GradConfig> = new Map<string, GradConfig>([
  [
    'Add',
    {
      inputsToSave: ['a', 'b'],
      gradFunc: (sim, dys, saved) => {
        const [a, b] = [s0(saved), s1(saved)];
        const out = broadcastShape(a.shape, b.shape);
        return {
          a: () => broadcastGrad(sim, dy0(dys), a.shape, out),
          b: () => broadcastGrad(sim, dy0(dys), b.shape, out),
        };
      },
    },
  ],
  [
    'Multiply',
    {
      inputsToSave: ['a', 'b'],
      gradFunc: (sim, dys, saved) => {
        const [a, b] = [s0(saved), s1(saved)];
        const out = broadcastShape(a.shape, b.shape);
        const der = (other: T, own: Shape) => () => {
          const res = mul(sim, dy0(dys), cast(sim, other, 'float32'));
          const axes = reductionAxes(own, out);
          return axes.length > 0 ? reshape(sim, sum(sim, res, axes), own) : res;
        };
        return { a: der(b, a.shape), b: der(a, b.shape) };
      },
    },
  ],
  [
    'Sub',
    {
      inputsToSave: ['a', 'b'],
      gradFunc: (sim, dys, saved) => {
        const out = broadcastShape(s0(saved).shape, s1(saved).shape);
        return {
          a: () => broadcastGrad(sim, dy0(dys), s0(saved).shape, out),
          b: () => unary(sim, 'Neg', broadcastGrad(sim, dy0(dys), s1(saved).shape, out)),
        };
      },
    },
  ],
  [
    'Conv2D',
    {
      inputsToSave: ['x', 'filter'],
      gradFunc: (sim, dys, saved, attrs) => {
        const [x, filter] = [s0(saved), s1(saved)];
        return {
          x: () =>
            sim.kernel('Conv2DBackpropInput', { dy: dy0(dys), filter }, x.shape, {
              ...attrs,
              inputShape: x.shape,
            }),
          filter: () =>
            sim.kernel('Conv2DBackpropFilter', { x, dy: dy0(dys) }, filter.shape, {
              ...attrs,
              filterShape: filter.shape,
            }),
        };
      },
    },
  ],
  [
    'DepthwiseConv2dNative',
    {
      inputsToSave: ['x', 'filter'],
      gradFunc: (sim, dys, saved, attrs) => {
        const [x, filter] = [s0(saved), s1(saved)];
        return {
          x: () =>
            sim.kernel('DepthwiseConv2dNativeBackpropInput', { dy: dy0(dys), filter }, x.shape, {
              ...attrs,
              inputShape: x.shape,
            }),
          filter: () =>
            sim.kernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: dy0(dys) }, filter.shape, {
              ...attrs,
              filterShape: filter.shape,
            }),
        };
      },
    },
  ],
  [
    'Relu',
    unaryGrad(['x'], undefined, (sim, dys, saved) => ({
      x: () => mul(sim, dy0(dys), cast(sim, step(sim, s0(saved)), 'float32')),
    })),
  ],
  [
    'Relu6',
    unaryGrad(['x'], undefined, (sim, dys, saved) => {
      const mask = mul(sim, compare(sim, 'LessEqual', s0(saved), 6), step(sim, s0(saved)));
      return { x: () => mul(sim, dy0(dys), cast(sim, mask, 'float32')) };
    }),
  ],
  [
    'LeakyRelu',
    unaryGrad(['x'], undefined, (sim, dys, saved) => {
      const mask = compare(sim, 'Greater', s0(saved), 0);
      return { x: () => where(sim, mask, dy0(dys), mul(sim, dy0(dys), 0)) };
    }),
  ],
  [
    'Sigmoid',
    unaryGrad(undefined, [true], (sim, dys, saved) => ({
      x: () => mul(sim, dy0(dys), mul(sim, s0(saved), sub(sim, 1, s0(saved)))),
    })),
  ],
  [
    'Tanh',
    unaryGrad(undefined, [true], (sim, dys, saved) => ({
      x: () => mul(sim, sub(sim, 1, unary(sim, 'Square', s0(saved))), dy0(dys)),
    })),
  ],
  [
    'Elu',
    unaryGrad(undefined, [true], (sim, dys, saved) => ({
      x: () => sim.kernel('EluGrad', { dy: dy0(dys), y: s0(saved) }, s0(saved).shape),
    })),
  ],
  [
    'Minimum',
    {
      inputsToSave: ['a', 'b'],
      gradFunc: (sim, dys, saved) => ({
        a: () => mul(sim, dy0(dys), cast(sim, compare(sim, 'LessEqual', s0(saved), s1(saved)), 'float32')),
        b: () => mul(sim, dy0(dys), cast(sim, compare(sim, 'Greater', s0(saved), s1(saved)), 'float32')),
      }),
    },
  ],
  ['Identity', unaryGrad(undefined, undefined, (sim, dys) => ({ x: () => cast(sim, dy0(dys), 'float32') }))],
  ['Cast', unaryGrad(undefined, undefined, (sim, dys) => ({ x: () => sim.clone(dy0(dys)) }))],
  [
    'PadV2',
    unaryGrad(['x'], undefined, (sim, dys, saved, attrs) => {
      const p = attrs.paddings as readonly (readonly [number, number])[];
      return {
        x: () =>
          slice(
            sim,
            dy0(dys),
            p.map((v) => v[0]),
            s0(saved).shape,
          ),
      };
    }),
  ],
  [
    'Slice',
    unaryGrad(['x'], undefined, (sim, dys, saved, attrs) => {
      const begin = attrs.begin as readonly number[];
      const x = s0(saved);
      const dy = dy0(dys);
      return {
        x: () =>
          pad(
            sim,
            dy,
            x.shape.map(
              (d, i) => [begin[i] as number, d - (begin[i] as number) - (dy.shape[i] as number)] as const,
            ),
          ),
      };
    }),
  ],
  [
    'Reshape',
    unaryGrad(['x'], undefined, (sim, dys, saved) => ({ x: () => reshape(sim, dy0(dys), s0(saved).shape) })),
  ],
  [
    'MaxPool',
    unaryGrad(['x'], [true], (sim, dys, saved) => ({
      x: () =>
        sim.kernel('MaxPoolGrad', { dy: dy0(dys), input: s0(saved), output: s1(saved) }, s0(saved).shape),
    })),
  ],
  [
    'AvgPool',
    unaryGrad(['x'], undefined, (sim, dys, saved) => ({
      x: () => sim.kernel('AvgPoolGrad', { dy: dy0(dys), input: s0(saved) }, s0(saved).shape),
    })),
  ],
  [
    'Concat',
    {
      saveAllInputs: true,
      gradFunc: (sim, dys, saved, attrs) => {
        const axis = attrs.axis as number;
        const parts = split(
          sim,
          dy0(dys),
          saved.map((t) => t.shape[axis] as number),
          axis,
        );
        return Object.fromEntries(parts.map((t, i) => [String(i), () => t]));
      },
    },
  ],
  [
    'SplitV',
    {
      gradFunc: (sim, dys, _saved, attrs) => ({ x: () => concat(sim, dys, attrs.axis as number) }),
    },
  ],
  [
    'Max',
    unaryGrad(['x'], [true], (sim, dys, saved, attrs) => {
      const f = gradForMinAndMax(sim, dy0(dys), s1(saved), s0(saved), attrs.axes as number[]);
      return { x: f };
    }),
  ],
  [
    'Mean',
    unaryGrad(['x'], undefined, (sim, dys, saved, attrs) => {
      const x = s0(saved);
      const axes = attrs.axes as number[];
      const n = sizeOf(axes.map((a) => x.shape[a] as number));
      return {
        x: () => {
          const expanded = reshape(sim, dy0(dys), reduceShape(x.shape, axes, true));
          return div(sim, mul(sim, expanded, ones(sim, x.shape)), n);
        },
      };
    }),
  ],
  [
    'Sum',
    unaryGrad(['x'], undefined, (sim, dys, saved, attrs) => {
      const x = s0(saved);
      const expanded = reshape(sim, dy0(dys), reduceShape(x.shape, attrs.axes as number[], true));
      const derX = mul(sim, expanded, ones(sim, x.shape));
      return { x: () => derX };
    }),
  ],
  [
    'BatchMatMul',
    {
      inputsToSave: ['a', 'b'],
      gradFunc: (sim, dys, saved) => ({
        a: () => matMul(sim, dy0(dys), s1(saved), false, true),
        b: () => matMul(sim, s0(saved), dy0(dys), true, false),
      }),
    },
  ],
]);

// ---------------------------------------------------------------- backends

/** trainer/backend/kernels/conv2d-backprop-input-conv.ts spreadWithZeros. */
function spreadWithZeros(sim: SimEngine, t: T, sH: number, sW: number): T {
  if (sH === 1 && sW === 1) return t;
  const [b, h, w, ch] = t.shape as [number, number, number, number];
  const t6 = reshape(sim, t, [b, h, 1, w, 1, ch]);
  const padded = pad(sim, t6, [
    [0, 0],
    [0, 0],
    [0, sH - 1],
    [0, 0],
    [0, sW - 1],
    [0, 0],
  ]);
  return reshape(sim, padded, [b, h * sH, w * sW, ch]);
}

/** conv-geometry.ts padOrCrop: a slice for negative amounts, then a pad for positive ones. */
function padOrCrop(sim: SimEngine, x: T, amounts: Pad4): T {
  let t = x;
  if (amounts.some((v) => v < 0)) {
    const [n, h, w, c] = t.shape as [number, number, number, number];
    const [top, bottom, left, right] = amounts.map((v) => Math.max(0, -v)) as [
      number,
      number,
      number,
      number,
    ];
    t = slice(sim, t, [0, top, left, 0], [n, h - top - bottom, w - left - right, c]);
  }
  if (amounts.some((v) => v > 0)) t = pad4(sim, t, amounts.map((v) => Math.max(0, v)) as unknown as Pad4);
  return t;
}

/** conv-geometry.ts conv2dSignedPad: crop with a slice, pad inside the convolution; zeros when nothing real is left. */
function conv2dSignedPad(
  sim: SimEngine,
  x: T,
  filter: T,
  amounts: Pad4,
  dilations: readonly [number, number],
): T {
  const crop = amounts.map((v) => Math.min(0, v)) as unknown as Pad4;
  const [n, h, w] = x.shape as [number, number, number];
  const [kh, kw, , co] = filter.shape as [number, number, number, number];
  if (h + crop[0] + crop[1] <= 0 || w + crop[2] + crop[3] <= 0) {
    const outH = h + amounts[0] + amounts[1] - ((kh - 1) * dilations[0] + 1) + 1;
    const outW = w + amounts[2] + amounts[3] - ((kw - 1) * dilations[1] + 1) + 1;
    return sim.make([n, Math.max(0, outH), Math.max(0, outW), co]);
  }
  const xc = crop.some((v) => v < 0) ? padOrCrop(sim, x, crop) : x;
  return conv2d(sim, xc, filter, {
    strides: [1, 1],
    pad: amounts.map((v) => Math.max(0, v)) as unknown as Pad4,
    dilations,
  });
}

/** tf.stack: a Pack kernel (one input: an expandDims, which shares the buffer). */
function stack(sim: SimEngine, xs: readonly T[], axis: number): T {
  const shape = [...(xs[0] as T).shape];
  shape.splice(axis, 0, xs.length);
  const inputs: Record<string, T> = {};
  xs.forEach((t, i) => {
    inputs[String(i)] = t;
  });
  return sim.kernel('Pack', inputs, shape, { axis });
}

/** conv-geometry.ts rotatedFilter: the filter turned by 180° in JS, made with tf.tensor (no kernel). */
const rotatedFilter = (sim: SimEngine, shape: Shape): T => sim.make(shape);

interface BackpropAttrs extends ConvAttrs {
  readonly inputShape: Shape;
  readonly filterShape: Shape;
}

/** The padding tfjs's computeConv2DInfo derives for explicit padding: as given. */
const convPad = (a: Attrs): Pad4 => (a as unknown as ConvAttrs).pad;

const wasmConv2dBackpropFilter: CompositeKernel = (sim, inputs, attrs) => {
  const x = inputs.x as T;
  const dy = inputs.dy as T;
  const a = attrs as unknown as BackpropAttrs;
  const [KH, KW] = a.filterShape as [number, number];
  const [sH, sW] = a.strides;
  const [, H, W] = x.shape as [number, number, number];
  const [, Ho, Wo] = dy.shape as [number, number, number];
  const [top, , left] = convPad(attrs);
  return sim.tidy(() => {
    const usedH = (Ho - 1) * sH + KH;
    const usedW = (Wo - 1) * sW + KW;
    const xT = transpose(sim, x, [3, 1, 2, 0]);
    const dyT = transpose(sim, dy, [1, 2, 0, 3]);
    const r = conv2dSignedPad(sim, xT, dyT, [top, usedH - H - top, left, usedW - W - left], [sH, sW]);
    return transpose(sim, r, [1, 2, 0, 3]);
  });
};

/** conv2d-backprop-input-conv.ts useSubPixel: strided, except small 1×1 filters. */
function useSubPixel(filterShape: Shape, strides: readonly [number, number]): boolean {
  const [kh, kw, ci, co] = filterShape as [number, number, number, number];
  if (strides[0] === 1 && strides[1] === 1) return false;
  return !(kh === 1 && kw === 1 && ci * co < 64 * 64);
}

/** conv2d-backprop-input-conv.ts phaseAxis: the taps and dy padding of one output phase. */
function phaseAxis(phase: number, k: number, s: number, pad: number, outLen: number, dyLen: number) {
  const first = (phase + pad) % s;
  const taps = first < k ? Math.ceil((k - first) / s) : 0;
  const before = taps - 1 - Math.floor((phase + pad) / s);
  return { taps, before, after: outLen + taps - 1 - before - dyLen };
}

const wasmConv2dBackpropInput: CompositeKernel = (sim, inputs, attrs) => {
  const dy = inputs.dy as T;
  const filter = inputs.filter as T;
  const a = attrs as unknown as BackpropAttrs;
  const [KH, KW, ci, co] = filter.shape as [number, number, number, number];
  const [sH, sW] = a.strides;
  const [B, inH, inW] = a.inputShape as [number, number, number];
  const [top, , left] = convPad(attrs);
  if (useSubPixel(filter.shape, a.strides)) {
    // conv2dBackpropInputSubPixel: one stride-1 correlation per output phase, interleaved by stacks.
    const [, Ho, Wo] = dy.shape as [number, number, number];
    const qh = Math.ceil(inH / sH);
    const qw = Math.ceil(inW / sW);
    return sim.tidy(() => {
      const rows: T[] = [];
      for (let fh = 0; fh < sH; fh++) {
        const ph = phaseAxis(fh, KH, sH, top, qh, Ho);
        const cols: T[] = [];
        for (let fw = 0; fw < sW; fw++) {
          const pw = phaseAxis(fw, KW, sW, left, qw, Wo);
          if (ph.taps === 0 || pw.taps === 0) {
            cols.push(sim.make([B, qh, qw, ci]));
            continue;
          }
          const sub = sim.make([ph.taps, pw.taps, co, ci]);
          cols.push(conv2dSignedPad(sim, dy, sub, [ph.before, ph.after, pw.before, pw.after], [1, 1]));
        }
        rows.push(reshape(sim, stack(sim, cols, 3), [B, qh, qw * sW, ci]));
      }
      const full = reshape(sim, stack(sim, rows, 2), [B, qh * sH, qw * sW, ci]);
      if (qh * sH === inH && qw * sW === inW) return full;
      return slice(sim, full, [0, 0, 0, 0], [B, inH, inW, ci]);
    });
  }
  return sim.tidy(() => {
    const spread = spreadWithZeros(sim, dy, sH, sW);
    const amounts: Pad4 = [
      KH - 1 - top,
      inH + top - (spread.shape[1] as number),
      KW - 1 - left,
      inW + left - (spread.shape[2] as number),
    ];
    return conv2dSignedPad(sim, spread, rotatedFilter(sim, [KH, KW, co, ci]), amounts, [1, 1]);
  });
};

const wasmDepthwiseBackpropInput: CompositeKernel = (sim, inputs, attrs) => {
  const dy = inputs.dy as T;
  const filter = inputs.filter as T;
  const a = attrs as unknown as BackpropAttrs;
  const [KH, KW, C, M] = filter.shape as [number, number, number, number];
  const [sH, sW] = a.strides;
  const [, inH, inW] = a.inputShape as [number, number, number];
  const [top, , left] = convPad(attrs);
  return sim.tidy(() => {
    const spread = spreadWithZeros(sim, dy, sH, sW);
    const [b, h, w] = spread.shape as [number, number, number];
    const amounts: Pad4 = [KH - 1 - top, inH + top - h, KW - 1 - left, inW + left - w];
    if (
      h + Math.min(0, amounts[0]) + Math.min(0, amounts[1]) <= 0 ||
      w + Math.min(0, amounts[2]) + Math.min(0, amounts[3]) <= 0
    ) {
      return sim.make([b, inH, inW, C]);
    }
    const padded = padOrCrop(sim, spread, amounts);
    const rotated = reshape(sim, rotatedFilter(sim, filter.shape), [KH, KW, C * M, 1]);
    const r = depthwiseConv2d(sim, padded, rotated, {
      strides: [1, 1],
      pad: [0, 0, 0, 0],
      dilations: [1, 1],
    });
    if (M === 1) return r;
    return sum(sim, reshape(sim, r, [b, inH, inW, C, M]), [4]);
  });
};

/**
 * Step (the Relu and Relu6 gradients' mask) on tensorflow: the project's kernel
 * (kernels/step-tensorflow.ts) runs Relu then Sign on the backend directly (no kernel of the engine,
 * so no profile sample), disposing the Relu: two tensors of x's size at its peak. Other alphas go to
 * tfjs-node's composition — isNaN(x), greater(x, 0), ones and a fill of x's shape, a where of them,
 * then Select(nans, x, mask) — about 4.5 tensors of x's size at its end.
 */
const tensorflowStep: CompositeKernel = (sim, inputs, attrs) => {
  const x = inputs.x as T;
  return sim.tidy(() => {
    if ((attrs.alpha ?? 0) === 0) {
      sim.make(x.shape); // the Relu, disposed by the kernel
      return sim.make(x.shape);
    }
    sim.kernel('IsNan', { x }, x.shape, {}, 'bool');
    const positive = compare(sim, 'Greater', x, sim.make([]));
    where(sim, positive, ones(sim, x.shape), sim.kernel('Fill', {}, x.shape));
    return sim.make(x.shape);
  });
};

/** tfjs-node's Mean casts its input to float32 first (a copy on this backend), then runs TF's Mean directly. */
const tensorflowMean: CompositeKernel = (sim, inputs, attrs) => {
  const x = inputs.x as T;
  const asFloat = cast(sim, x, 'float32');
  const out = sim.make(reduceShape(x.shape, attrs.axes as number[]));
  sim.dispose(asFloat);
  return out;
};

/** tensorflow-explicit-padding.ts windowedPadding: the padding, less the rows and columns past the last window. */
function windowedPadding(
  inShape: Shape,
  pad: Pad4,
  out: readonly [number, number],
  strides: readonly [number, number],
  filterShape: Shape,
): Pad4 {
  const excessRows =
    (inShape[1] as number) + pad[0] + pad[1] - ((out[0] - 1) * strides[0] + (filterShape[0] as number));
  const excessCols =
    (inShape[2] as number) + pad[2] + pad[3] - ((out[1] - 1) * strides[1] + (filterShape[1] as number));
  return [pad[0], pad[1] - excessRows, pad[2], pad[3] - excessCols];
}

/**
 * tensorflow-explicit-padding.ts geometry (streamed convolutions never send dilation): a depthwise
 * gradient with unequal strides runs at stride 1 on dy spread with zeros; `made` is freed after the op.
 */
function tensorflowGeometry(
  sim: SimEngine,
  inShape: Shape,
  filterShape: Shape,
  a: BackpropAttrs,
  depthwise: boolean,
  dy: T,
): { strides: readonly [number, number]; out: [number, number]; dy: T; made?: T } {
  const [sH, sW] = a.strides;
  if (!depthwise || sH === sW)
    return { strides: a.strides, out: [dy.shape[1] as number, dy.shape[2] as number], dy };
  const [top, bottom, left, right] = a.pad;
  const out: [number, number] = [
    (inShape[1] as number) + top + bottom - (filterShape[0] as number) + 1,
    (inShape[2] as number) + left + right - (filterShape[1] as number) + 1,
  ];
  const spread = sim.tidy(() =>
    slice(
      sim,
      spreadWithZeros(sim, dy, sH, sW),
      [0, 0, 0, 0],
      [dy.shape[0] as number, out[0], out[1], dy.shape[3] as number],
    ),
  );
  return { strides: [1, 1], out, dy: spread, made: spread };
}

/**
 * The project's tensorflow input gradients (tensorflow-explicit-padding.ts inputKernel): TensorFlow's
 * VALID op (run on the backend directly) for the input padded or cropped to what the windows read,
 * then that gradient cropped or padded back to the input's extent.
 */
const tensorflowBackpropInput =
  (depthwise: boolean): CompositeKernel =>
  (sim, inputs, attrs) => {
    const filter = inputs.filter as T;
    const a = attrs as unknown as BackpropAttrs;
    const [n, h, w, c] = a.inputShape as [number, number, number, number];
    const g = tensorflowGeometry(sim, a.inputShape, filter.shape, a, depthwise, inputs.dy as T);
    const [t, b, l, r] = windowedPadding(a.inputShape, a.pad, g.out, g.strides, filter.shape);
    const dxValid = sim.make([n, h + t + b, w + l + r, c]);
    let dx = dxValid;
    if (t !== 0 || b !== 0 || l !== 0 || r !== 0) {
      dx = sim.tidy(() => padOrCrop(sim, dxValid, [-t, -b, -l, -r]));
      sim.dispose(dxValid);
    }
    sim.dispose(g.made);
    return dx;
  };

/**
 * The project's tensorflow filter gradients (tensorflow-explicit-padding.ts filterKernel): x padded
 * or cropped to what the windows read (a copy), then TensorFlow's VALID op on the backend directly.
 */
const tensorflowBackpropFilter =
  (depthwise: boolean): CompositeKernel =>
  (sim, inputs, attrs) => {
    const x = inputs.x as T;
    const a = attrs as unknown as BackpropAttrs;
    const g = tensorflowGeometry(sim, x.shape, a.filterShape, a, depthwise, inputs.dy as T);
    const amounts = windowedPadding(x.shape, a.pad, g.out, g.strides, a.filterShape);
    const xv = sim.tidy(() => padOrCrop(sim, x, amounts));
    const dw = sim.make(a.filterShape);
    sim.dispose(g.made);
    if (xv !== x) sim.dispose(xv);
    return dw;
  };

export type BackendName = 'cpu' | 'wasm' | 'tensorflow';
export const BACKEND_NAMES: readonly BackendName[] = ['cpu', 'wasm', 'tensorflow'];

/**
 * cpu: Identity, Reshape and lossless Casts hand out the input's buffer (tfjs-backend-cpu
 * identity). wasm: Reshape, and Identity through the project's kernel (identity-wasm.ts; the
 * stock one copies); Cast copies on the heap. A one-input Pack (stack) is an expandDims, a view.
 * tensorflow (tfjs-node and tfjs-node-gpu, the same JavaScript): Identity shares the data id
 * (nodejs Identity kernel); Reshape and a Cast to the same type are new data ids that TensorFlow
 * backs with the input's buffer (forwarding); every other kernel is one TensorFlow op, except
 * Mean, which tfjs-node composes in JavaScript, Step (the project's two-op kernel,
 * step-tensorflow.ts) and the project's convolution gradients (tensorflow-explicit-padding.ts), which pad or crop x, or the input gradient, to
 * what the windows read around TensorFlow's VALID op. When trainer/backend/kernels
 * changes what aliases or what is composed, change it here: test/plan/calibration.test.ts
 * compares the handle and buffer peaks (and on tensorflow, TensorFlow's own allocations) with
 * measurements.
 */
export const BACKENDS: Readonly<Record<BackendName, BackendModel>> = {
  cpu: { name: 'cpu', aliasing: new Set(['Identity', 'Reshape', 'Cast', 'Pack']), composites: {} },
  wasm: {
    name: 'wasm',
    aliasing: new Set(['Identity', 'Reshape', 'Pack']),
    composites: {
      Conv2DBackpropFilter: wasmConv2dBackpropFilter,
      Conv2DBackpropInput: wasmConv2dBackpropInput,
      DepthwiseConv2dNativeBackpropInput: wasmDepthwiseBackpropInput,
    },
  },
  tensorflow: {
    name: 'tensorflow',
    aliasing: new Set(['Identity']),
    forwarding: new Set(['Reshape', 'Cast']),
    composites: {
      Step: tensorflowStep,
      Mean: tensorflowMean,
      Conv2DBackpropInput: tensorflowBackpropInput(false),
      Conv2DBackpropFilter: tensorflowBackpropFilter(false),
      DepthwiseConv2dNativeBackpropInput: tensorflowBackpropInput(true),
      DepthwiseConv2dNativeBackpropFilter: tensorflowBackpropFilter(true),
    },
  },
};

/** A simulated engine for `backend`; `countDataIds`: buffers are the engine's data ids, not memory. */
export function createEngine(backend: BackendName, floatBytes = 4, countDataIds = false): SimEngine {
  return new SimEngine(BACKENDS[backend], floatBytes, GRADIENTS, countDataIds);
}
