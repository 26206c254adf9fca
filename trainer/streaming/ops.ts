// The differentiable local operations of a streamed body, over NHWC float32 tensors. Padding is
// always explicit ([top, bottom, left, right]) so that a tile and the full image are padded the
// same way; TF-style 'same' is never used (streaming-algorithm.md §1.12). Every op here has a
// gradient on the cpu and wasm backends once `initBackend` has run (trainer/backend/select.ts),
// including dilated convolutions, which tfjs-core cannot differentiate on its own. Each checks
// its arguments, then runs the layer of layers.ts on tfjs tensors (the planner runs the same
// layer on shapes).
import type * as tf from '@tensorflow/tfjs-core';
import { ACTIVATIONS, type ActivationFn, type Padding, type Pair } from './graph.ts';
import * as shared from './layers.ts';
import { TF_LAYER_OPS } from './tf-layer-ops.ts';

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

/**
 * Inserts dilation−1 zero taps between the taps of a [kh, kw, a, b] kernel, with pad/reshape/
 * slice only, so the result is differentiable with respect to `w` (tfjs-core has no gradient for
 * dilated convolutions). The dilated kernel is (kh−1)·dh+1 by (kw−1)·dw+1.
 */
export function dilateKernel(w: tf.Tensor4D, dilation: Pair): tf.Tensor4D {
  return shared.dilateKernel(TF_LAYER_OPS, w, dilation) as tf.Tensor4D;
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

  return shared.convLayer(TF_LAYER_OPS, x, w, bias, opts) as tf.Tensor4D;
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

/**
 * Max pooling over windows of `kernel` at `stride`, PyTorch floor mode. Padded cells are
 * -Infinity, so they never win and never receive gradient.
 */
export function maxPool2d(x: tf.Tensor4D, opts: PoolOptions): tf.Tensor4D {
  checkPool('maxPool2d', x, opts);
  return shared.maxPoolLayer(TF_LAYER_OPS, x, opts) as tf.Tensor4D;
}

/**
 * Average pooling, PyTorch floor mode with count_include_pad = true (PyTorch's default): padded
 * cells are zeros that count in the divisor, so every window divides by kh·kw.
 */
export function avgPool2d(x: tf.Tensor4D, opts: PoolOptions): tf.Tensor4D {
  checkPool('avgPool2d', x, opts);
  return shared.avgPoolLayer(TF_LAYER_OPS, x, opts) as tf.Tensor4D;
}

export { LEAKY_RELU_DEFAULT_ALPHA } from './layers.ts';

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
  if (!ACTIVATIONS.includes(fn)) throw new Error(`activation: unknown function '${String(fn)}'`);
  return shared.activationLayer(TF_LAYER_OPS, x, fn, alpha) as tf.Tensor4D;
}

function checkPerChannel(
  op: string,
  x: tf.Tensor4D,
  params: readonly (readonly [string, tf.Tensor])[],
): void {
  checkRank4(op, x);
  const c = x.shape[3];
  for (const [name, t] of params) {
    if (t.rank !== 1 || t.shape[0] !== c) {
      throw new Error(`${op}: ${name} must be [${c}] for ${c} channels, got [${t.shape.join(', ')}]`);
    }
  }
}

/** Frozen batch normalisation as a per-channel affine map: y = x·scale + shift, scale and shift [C]. */
export function affine(x: tf.Tensor4D, scale: tf.Tensor, shift: tf.Tensor): tf.Tensor4D {
  checkPerChannel('affine', x, [
    ['scale', scale],
    ['shift', shift],
  ]);
  return shared.affineLayer(TF_LAYER_OPS, x, scale, shift) as tf.Tensor4D;
}

/**
 * Layer normalisation over each pixel's channels (graph.ts LayerNormOp), gamma and beta [C]:
 * y = (x − mean_c) / √(var_c + ε) · gamma + beta, as PyTorch's F.layer_norm over the last axis.
 */
export function layerNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): tf.Tensor4D {
  checkPerChannel('layerNorm', x, [
    ['gamma', gamma],
    ['beta', beta],
  ]);
  if (!(epsilon > 0)) throw new Error(`layerNorm: epsilon must be positive, got ${epsilon}`);
  return shared.layerNormLayer(TF_LAYER_OPS, x, gamma, beta, epsilon) as tf.Tensor4D;
}
