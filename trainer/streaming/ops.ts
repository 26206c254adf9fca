// The differentiable local operations of a streamed body, over NHWC float32 tensors. Padding is
// always explicit ([top, bottom, left, right]) so that a tile and the full image are padded the
// same way; TF-style 'same' is never used (streaming-algorithm.md §1.12). Every op here has a
// gradient on the cpu and wasm backends once `initBackend` has run (trainer/backend/select.ts),
// including dilated convolutions, which tfjs-core cannot differentiate on its own.
import * as tf from '@tensorflow/tfjs-core';
import type { ActivationFn, Padding, Pair } from './graph.ts';

export interface ConvOptions {
  readonly stride: Pair;
  readonly dilation: Pair;
  /** [top, bottom, left, right] zero rows/columns added around the input. */
  readonly padding: Padding;
  /** 1: ordinary conv; cin: depthwise (cout = cin·multiplier); else grouped (cin, cout divisible). */
  readonly groups: number;
}

export interface PoolOptions {
  readonly kernel: Pair;
  readonly stride: Pair;
  /** [top, bottom, left, right]; each side must be smaller than the kernel along its axis. */
  readonly padding: Padding;
}

function checkPositiveInts(op: string, what: string, values: readonly number[]): void {
  if (!values.every((v) => Number.isInteger(v) && v >= 1)) {
    throw new Error(`${op}: ${what} must be positive integers, got [${values.join(', ')}]`);
  }
}

function checkPadding(op: string, padding: Padding): void {
  if (padding.length !== 4 || !padding.every((v) => Number.isInteger(v) && v >= 0)) {
    throw new Error(
      `${op}: padding must be [top, bottom, left, right] of integers >= 0, got [${padding.join(', ')}]`,
    );
  }
}

function checkRank4(op: string, x: tf.Tensor): void {
  if (x.rank !== 4) throw new Error(`${op}: input must be NHWC (rank 4), got shape [${x.shape.join(', ')}]`);
}

/** Output length of a 'valid' window sweep after explicit padding (PyTorch floor mode). */
function outLength(
  op: string,
  n: number,
  lo: number,
  hi: number,
  effectiveKernel: number,
  stride: number,
): number {
  const span = n + lo + hi - effectiveKernel;
  if (span < 0) {
    throw new Error(
      `${op}: padded input length ${n + lo + hi} is smaller than the (effective) kernel ${effectiveKernel}`,
    );
  }
  return Math.floor(span / stride) + 1;
}

function explicitPad(p: Padding): 'valid' | tf.backend_util.ExplicitPadding {
  if (p.every((v) => v === 0)) return 'valid';
  return [
    [0, 0],
    [p[0], p[1]],
    [p[2], p[3]],
    [0, 0],
  ];
}

/**
 * Inserts dilation−1 zero taps between the taps of a [kh, kw, a, b] kernel, with pad/reshape/
 * slice only, so the result is differentiable with respect to `w` (tfjs-core has no gradient for
 * dilated convolutions). The dilated kernel is (kh−1)·dh+1 by (kw−1)·dw+1.
 */
export function dilateKernel(w: tf.Tensor4D, dilation: Pair): tf.Tensor4D {
  const [dh, dw] = dilation;
  if (dh === 1 && dw === 1) return w;
  return tf.tidy(() => {
    const [kh, kw, a, b] = w.shape;
    let k = w;
    if (dh > 1) {
      const spread = tf.pad(tf.reshape(k, [kh, 1, kw, a, b]), [
        [0, 0],
        [0, dh - 1],
        [0, 0],
        [0, 0],
        [0, 0],
      ]);
      k = tf.slice(
        tf.reshape(spread, [kh * dh, kw, a, b]),
        [0, 0, 0, 0],
        [(kh - 1) * dh + 1, kw, a, b],
      ) as tf.Tensor4D;
    }
    if (dw > 1) {
      const h = k.shape[0];
      const spread = tf.pad(tf.reshape(k, [h, kw, 1, a, b]), [
        [0, 0],
        [0, 0],
        [0, dw - 1],
        [0, 0],
        [0, 0],
      ]);
      k = tf.slice(
        tf.reshape(spread, [h, kw * dw, a, b]),
        [0, 0, 0, 0],
        [h, (kw - 1) * dw + 1, a, b],
      ) as tf.Tensor4D;
    }
    return k;
  });
}

/**
 * 2-D convolution with explicit zero padding, stride, dilation and groups.
 * Weights use the Keras layout [kh, kw, cin/groups, cout]; `bias` is [cout] or null.
 * Depthwise (groups = cin > 1) runs as tf.depthwiseConv2d with the weights viewed as
 * [kh, kw, cin, cout/cin]: output channel c·m + j reads input channel c, as in Keras and PyTorch.
 */
export function conv2d(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  bias: tf.Tensor | null,
  opts: ConvOptions,
): tf.Tensor4D {
  const op = 'conv2d';
  checkRank4(op, x);
  if (w.rank !== 4)
    throw new Error(`${op}: weights must be [kh, kw, cin/groups, cout], got [${w.shape.join(', ')}]`);
  const { stride, dilation, padding, groups } = opts;
  checkPositiveInts(op, 'stride', stride);
  checkPositiveInts(op, 'dilation', dilation);
  checkPositiveInts(op, 'groups', [groups]);
  checkPadding(op, padding);
  const [, h, wd, cin] = x.shape;
  const [kh, kw, cinPerGroup, cout] = w.shape;
  if (cin % groups !== 0 || cout % groups !== 0) {
    throw new Error(`${op}: groups ${groups} must divide input channels ${cin} and output channels ${cout}`);
  }
  if (cinPerGroup * groups !== cin) {
    throw new Error(
      `${op}: weights [${w.shape.join(', ')}] expect ${cinPerGroup * groups} input channels with groups ${groups}, ` +
        `but the input has ${cin}`,
    );
  }
  if (bias !== null && (bias.rank !== 1 || bias.shape[0] !== cout)) {
    throw new Error(`${op}: bias must be [${cout}], got [${bias.shape.join(', ')}]`);
  }
  const ekh = (kh - 1) * dilation[0] + 1;
  const ekw = (kw - 1) * dilation[1] + 1;
  outLength(op, h, padding[0], padding[1], ekh, stride[0]);
  outLength(op, wd, padding[2], padding[3], ekw, stride[1]);

  return tf.tidy(() => {
    const k = dilateKernel(w, dilation);
    const pad = explicitPad(padding);
    const s: [number, number] = [stride[0], stride[1]];
    let y: tf.Tensor4D;
    if (groups === 1) {
      y = tf.conv2d(x, k, s, pad) as tf.Tensor4D;
    } else if (groups === cin) {
      const dk = tf.reshape(k, [k.shape[0], k.shape[1], cin, cout / cin]) as tf.Tensor4D;
      y = tf.depthwiseConv2d(x, dk, s, pad) as tf.Tensor4D;
    } else {
      const xs = tf.split(x, groups, 3);
      const ks = tf.split(k, groups, 3);
      y = tf.concat(
        xs.map((xg, g) => tf.conv2d(xg as tf.Tensor4D, ks[g] as tf.Tensor4D, s, pad) as tf.Tensor4D),
        3,
      );
    }
    return bias === null ? y : (tf.add(y, bias) as tf.Tensor4D);
  });
}

function checkPool(op: string, x: tf.Tensor4D, opts: PoolOptions): void {
  checkRank4(op, x);
  checkPositiveInts(op, 'kernel', opts.kernel);
  checkPositiveInts(op, 'stride', opts.stride);
  checkPadding(op, opts.padding);
  const [kh, kw] = opts.kernel;
  const [t, b, l, r] = opts.padding;
  // With each side below the kernel, every window holds at least one real cell (so a max-pool
  // window never sees only -Infinity). PyTorch is stricter (padding <= kernel/2).
  if (t >= kh || b >= kh || l >= kw || r >= kw) {
    throw new Error(
      `${op}: padding [${opts.padding.join(', ')}] must be smaller than the kernel [${kh}, ${kw}] on each side`,
    );
  }
  outLength(op, x.shape[1], t, b, kh, opts.stride[0]);
  outLength(op, x.shape[2], l, r, kw, opts.stride[1]);
}

function padTensor(x: tf.Tensor4D, p: Padding, value: number): tf.Tensor4D {
  if (p.every((v) => v === 0)) return x;
  return tf.pad(
    x,
    [
      [0, 0],
      [p[0], p[1]],
      [p[2], p[3]],
      [0, 0],
    ],
    value,
  );
}

/**
 * Max pooling over windows of `kernel` at `stride`, PyTorch floor mode. Padded cells are
 * -Infinity, so they never win and never receive gradient.
 */
export function maxPool2d(x: tf.Tensor4D, opts: PoolOptions): tf.Tensor4D {
  checkPool('maxPool2d', x, opts);
  return tf.tidy(() =>
    tf.maxPool(
      padTensor(x, opts.padding, Number.NEGATIVE_INFINITY),
      [...opts.kernel],
      [...opts.stride],
      'valid',
    ),
  );
}

/**
 * Average pooling, PyTorch floor mode with count_include_pad = true (PyTorch's default): padded
 * cells are zeros that count in the divisor, so every window divides by kh·kw.
 */
export function avgPool2d(x: tf.Tensor4D, opts: PoolOptions): tf.Tensor4D {
  checkPool('avgPool2d', x, opts);
  return tf.tidy(() =>
    tf.avgPool(padTensor(x, opts.padding, 0), [...opts.kernel], [...opts.stride], 'valid'),
  );
}

/** Default negative slope of leakyRelu when none is given: PyTorch's 0.01 (Keras uses 0.3). */
export const LEAKY_RELU_DEFAULT_ALPHA = 0.01;

/**
 * Pointwise activation. `alpha` is the negative slope of leakyRelu (default 0.01) or the alpha
 * of elu (default 1); other functions refuse it. 'linear' returns a new handle on the same data.
 */
export function activation(x: tf.Tensor4D, fn: ActivationFn, alpha?: number): tf.Tensor4D {
  if (alpha !== undefined && fn !== 'leakyRelu' && fn !== 'elu') {
    throw new Error(`activation: '${fn}' takes no alpha (got ${alpha}); only leakyRelu and elu do`);
  }
  if (alpha !== undefined && !Number.isFinite(alpha)) {
    throw new Error(`activation: alpha of '${fn}' must be a finite number, got ${alpha}`);
  }
  switch (fn) {
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'leakyRelu':
      return tf.leakyRelu(x, alpha ?? LEAKY_RELU_DEFAULT_ALPHA);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'tanh':
      return tf.tanh(x);
    case 'elu':
      if (alpha === undefined || alpha === 1) return tf.elu(x);
      // elu_α(x) = x for x > 0, α(eˣ − 1) otherwise = relu(x) + α·elu(min(x, 0)).
      return tf.tidy(() => tf.add(tf.relu(x), tf.mul(tf.elu(tf.minimum(x, 0)), alpha)));
    case 'linear':
      return tf.clone(x);
    default: {
      const never: never = fn;
      throw new Error(`activation: unknown function '${String(never)}'`);
    }
  }
}

/** Frozen batch normalisation as a per-channel affine map: y = x·scale + shift, scale and shift [C]. */
export function affine(x: tf.Tensor4D, scale: tf.Tensor, shift: tf.Tensor): tf.Tensor4D {
  checkRank4('affine', x);
  const c = x.shape[3];
  for (const [name, t] of [
    ['scale', scale],
    ['shift', shift],
  ] as const) {
    if (t.rank !== 1 || t.shape[0] !== c) {
      throw new Error(`affine: ${name} must be [${c}] for ${c} channels, got [${t.shape.join(', ')}]`);
    }
  }
  return tf.tidy(() => tf.add(tf.mul(x, scale), shift));
}
