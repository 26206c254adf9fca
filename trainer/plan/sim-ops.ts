// Symbolic versions of the tfjs-core 4.22 ops and gradient configs that a tilestream training
// step runs (the backends' kernels are in sim-backends.ts). Each function mirrors the tfjs source
// it names, op for op, so that the simulated allocations match the real ones;
// test/plan/calibration.test.ts checks the sum against tf.profile.

import type { Pad4 } from '../kernels/ops.ts';
import {
  type Attrs,
  type GradConfig,
  type SimDtype,
  type SimEngine,
  type SimTensor,
  sizeOf,
} from './sim-engine.ts';

export type { Pad4 };

type T = SimTensor;
type Shape = readonly number[];

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

export function reduceShape(shape: Shape, axes: readonly number[], keepDims = false): number[] {
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
export const sub = (sim: SimEngine, a: T | number, b: T): T =>
  typeof a === 'number'
    ? sim.tidy(() => sim.kernel('Sub', { a: scalar(sim), b }, b.shape))
    : binary(sim, 'Sub', a, b);
export const div = (sim: SimEngine, a: T, b: T | number): T => binary(sim, 'RealDiv', a, b);
const pow = (sim: SimEngine, a: T, b: number): T => binary(sim, 'Pow', a, b);
export const minimum = (sim: SimEngine, a: T, b: number): T => binary(sim, 'Minimum', a, b);
export const compare = (sim: SimEngine, name: string, a: T, b: T | number): T =>
  binary(sim, name, a, b, 'bool');

export const unary = (sim: SimEngine, name: string, x: T, attrs: Attrs = {}): T =>
  sim.kernel(name, { x }, x.shape, attrs);
export const cast = (sim: SimEngine, x: T, dtype: SimDtype): T =>
  sim.kernel('Cast', { x }, x.shape, { dtype }, dtype);
export const reshape = (sim: SimEngine, x: T, shape: Shape): T =>
  sim.kernel('Reshape', { x }, shape, { shape }, x.dtype);
export const clone = (sim: SimEngine, x: T): T => sim.clone(x);
const step = (sim: SimEngine, x: T): T => unary(sim, 'Step', x);
/** tf.erf, tf.square, tf.rsqrt on float32: one kernel each. */
export const erf = (sim: SimEngine, x: T): T => unary(sim, 'Erf', x);
export const square = (sim: SimEngine, x: T): T => unary(sim, 'Square', x);
export const rsqrt = (sim: SimEngine, x: T): T => unary(sim, 'Rsqrt', x);
export const zerosLike = (sim: SimEngine, x: T): T => unary(sim, 'ZerosLike', x);
/** tf.ones: makeTensor, no kernel. */
export const ones = (sim: SimEngine, shape: Shape): T => sim.make(shape);

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
export function where(sim: SimEngine, cond: T, a: T, b: T): T {
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
          // Sub_grad negates the reduced gradient before reshaping it.
          b: () => {
            const b = s1(saved);
            const axes = reductionAxes(b.shape, out);
            const res = axes.length > 0 ? sum(sim, dy0(dys), axes) : dy0(dys);
            return reshape(sim, unary(sim, 'Neg', res), b.shape);
          },
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
      // tfjs's scalar(1) is made outside sub's scope: it lives until the gradient's scope ends.
      x: () => {
        const one = sim.make([]);
        return mul(sim, dy0(dys), mul(sim, s0(saved), sub(sim, one, s0(saved))));
      },
    })),
  ],
  [
    'Tanh',
    unaryGrad(undefined, [true], (sim, dys, saved) => ({
      x: () => {
        const one = sim.make([]);
        return mul(sim, sub(sim, one, unary(sim, 'Square', s0(saved))), dy0(dys));
      },
    })),
  ],
  [
    'Elu',
    unaryGrad(undefined, [true], (sim, dys, saved) => ({
      x: () => sim.kernel('EluGrad', { dy: dy0(dys), y: s0(saved) }, s0(saved).shape),
    })),
  ],
  ['Exp', unaryGrad(undefined, [true], (sim, dys, saved) => ({ x: () => mul(sim, dy0(dys), s0(saved)) }))],
  [
    'RealDiv',
    {
      inputsToSave: ['a', 'b'],
      gradFunc: (sim, dys, saved) => {
        const [a, b] = [s0(saved), s1(saved)];
        const out = broadcastShape(a.shape, b.shape);
        const reduced = (t: T, shape: Shape): T => {
          const axes = reductionAxes(shape, out);
          return axes.length > 0 ? reshape(sim, sum(sim, t, axes), shape) : t;
        };
        return {
          a: () => reduced(div(sim, dy0(dys), cast(sim, b, 'float32')), a.shape),
          b: () => {
            const res = reduced(mul(sim, dy0(dys), cast(sim, a, 'float32')), b.shape);
            return unary(sim, 'Neg', div(sim, res, cast(sim, square(sim, b), 'float32')));
          },
        };
      },
    },
  ],
  [
    'Erf',
    unaryGrad(['x'], undefined, (sim, dys, saved) => {
      const a = mul(
        sim,
        unary(sim, 'Exp', unary(sim, 'Neg', square(sim, s0(saved)))),
        2 / Math.sqrt(Math.PI),
      );
      return { x: () => mul(sim, dy0(dys), a) };
    }),
  ],
  [
    'Square',
    unaryGrad(['x'], undefined, (sim, dys, saved) => ({
      x: () => mul(sim, dy0(dys), mul(sim, cast(sim, s0(saved), 'float32'), 2)),
    })),
  ],
  [
    'Rsqrt',
    unaryGrad(['x'], undefined, (sim, dys, saved) => ({
      x: () => unary(sim, 'Neg', div(sim, dy0(dys), mul(sim, pow(sim, s0(saved), 1.5), 2))),
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

/** tf.stack: a Pack kernel (one input: an expandDims, which shares the buffer). */
export function stack(sim: SimEngine, xs: readonly T[], axis: number): T {
  const shape = [...(xs[0] as T).shape];
  shape.splice(axis, 0, xs.length);
  const inputs: Record<string, T> = {};
  xs.forEach((t, i) => {
    inputs[String(i)] = t;
  });
  return sim.kernel('Pack', inputs, shape, { axis });
}

/** tf.stridedSlice with no masks: a StridedSlice kernel. */
export function stridedSlice(
  sim: SimEngine,
  x: T,
  begin: readonly number[],
  end: readonly number[],
  strides: readonly number[],
): T {
  const shape = x.shape.map((d, i) => {
    const b = begin[i] ?? 0;
    const e = Math.min(d, end[i] ?? d);
    return Math.max(0, Math.ceil((e - b) / (strides[i] ?? 1)));
  });
  return sim.kernel('StridedSlice', { x }, shape, { begin, end, strides });
}
