// The streamed body's layers, runBody and the head, written once against a small interface of tfjs ops,
// so that the engine (on tensors: ops.ts validates, then calls these; executor.ts runBody) and the
// memory planner (on shapes: plan/sim-body.ts) run the same op sequence. Pure: imports no
// TensorFlow (the planner and the operator load it).
import {
  type ActivationFn,
  type Body,
  type Conv2dOp,
  INPUT,
  type Padding,
  type Pair,
  type PoolOp,
} from './graph.ts';

/** The tfjs ops the layers use, over NHWC float32 tensors of type T. */
export interface LayerOps<T> {
  shape(x: T): readonly number[];
  /** tf.tidy: tensors made inside and not returned are freed when `fn` returns. */
  tidy(fn: () => T): T;
  dispose(x: T): void;
  /** tf.pad with a constant `value` (0 unless given). */
  pad(x: T, paddings: readonly (readonly [number, number])[], value?: number): T;
  reshape(x: T, shape: readonly number[]): T;
  slice(x: T, begin: readonly number[], size: readonly number[]): T;
  /** tf.split into `count` equal parts along `axis`. */
  split(x: T, count: number, axis: number): T[];
  concat(xs: readonly T[], axis: number): T;
  /** tf.conv2d and tf.depthwiseConv2d with explicit padding ('valid' when all zero). */
  conv2d(x: T, filter: T, strides: Pair, padding: Padding): T;
  depthwiseConv2d(x: T, filter: T, strides: Pair, padding: Padding): T;
  add(a: T, b: T | number): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T | number): T;
  minimum(a: T, b: number): T;
  /** tf.maxPool and tf.avgPool with 'valid' padding. */
  maxPool(x: T, kernel: Pair, strides: Pair): T;
  avgPool(x: T, kernel: Pair, strides: Pair): T;
  relu(x: T): T;
  relu6(x: T): T;
  leakyRelu(x: T, alpha: number): T;
  sigmoid(x: T): T;
  tanh(x: T): T;
  elu(x: T): T;
  /** The project's fused exact GELU (trainer/kernels/gelu.ts): one kernel, its input on the tape. */
  gelu(x: T): T;
  /** The project's fused channel layer norm (trainer/kernels/layer-norm.ts): one kernel, x and γ on the tape. */
  layerNorm(x: T, gamma: T, beta: T, epsilon: number): T;
  clone(x: T): T;
  /** tf.max and tf.mean over `axes` (the head's global pooling). */
  max(x: T, axes: readonly number[]): T;
  mean(x: T, axes: readonly number[]): T;
  matMul(a: T, b: T): T;
  /** tf.exp, tf.sum over `axes` and tf.div (the attention head's softmax). */
  exp(x: T): T;
  sum(x: T, axes: readonly number[]): T;
  div(a: T, b: T): T;
}

/** Default negative slope of leakyRelu when none is given: PyTorch's 0.01 (Keras uses 0.3). */
export const LEAKY_RELU_DEFAULT_ALPHA = 0.01;

const nhwcPad = (p: Padding): [number, number][] => [
  [0, 0],
  [p[0], p[1]],
  [p[2], p[3]],
  [0, 0],
];

/**
 * Inserts dilation−1 zero taps between the taps of a [kh, kw, a, b] kernel, with pad/reshape/
 * slice only, so the result is differentiable with respect to `w` (tfjs-core has no gradient for
 * dilated convolutions). The dilated kernel is (kh−1)·dh+1 by (kw−1)·dw+1.
 */
export function dilateKernel<T>(ops: LayerOps<T>, w: T, dilation: Pair): T {
  const [dh, dw] = dilation;
  if (dh === 1 && dw === 1) return w;
  return ops.tidy(() => {
    const [kh, kw, a, b] = ops.shape(w) as [number, number, number, number];
    let k = w;
    if (dh > 1) {
      const spread = ops.pad(ops.reshape(k, [kh, 1, kw, a, b]), [
        [0, 0],
        [0, dh - 1],
        [0, 0],
        [0, 0],
        [0, 0],
      ]);
      k = ops.slice(ops.reshape(spread, [kh * dh, kw, a, b]), [0, 0, 0, 0], [(kh - 1) * dh + 1, kw, a, b]);
    }
    if (dw > 1) {
      const h = ops.shape(k)[0] as number;
      const spread = ops.pad(ops.reshape(k, [h, kw, 1, a, b]), [
        [0, 0],
        [0, 0],
        [0, dw - 1],
        [0, 0],
        [0, 0],
      ]);
      k = ops.slice(ops.reshape(spread, [h, kw * dw, a, b]), [0, 0, 0, 0], [h, (kw - 1) * dw + 1, a, b]);
    }
    return k;
  });
}

/** The convolution of a checked op: see ops.ts conv2d for the contract. */
export function convLayer<T>(
  ops: LayerOps<T>,
  x: T,
  w: T,
  bias: T | null,
  o: Pick<Conv2dOp, 'stride' | 'dilation' | 'padding' | 'groups'>,
): T {
  return ops.tidy(() => {
    const k = dilateKernel(ops, w, o.dilation);
    const cin = ops.shape(x)[3] as number;
    let y: T;
    if (o.groups === 1) {
      y = ops.conv2d(x, k, o.stride, o.padding);
    } else if (o.groups === cin) {
      const [kh, kw, , cout] = ops.shape(k) as [number, number, number, number];
      y = ops.depthwiseConv2d(x, ops.reshape(k, [kh, kw, cin, cout / cin]), o.stride, o.padding);
    } else {
      const xs = ops.split(x, o.groups, 3);
      const ks = ops.split(k, o.groups, 3);
      y = ops.concat(
        xs.map((xg, g) => ops.conv2d(xg, ks[g] as T, o.stride, o.padding)),
        3,
      );
    }
    return bias === null ? y : ops.add(y, bias);
  });
}

function padIfAny<T>(ops: LayerOps<T>, x: T, p: Padding, value: number): T {
  return p.every((v) => v === 0) ? x : ops.pad(x, nhwcPad(p), value);
}

/** Max pooling, PyTorch floor mode; padded cells are -Infinity (they never win). */
export const maxPoolLayer = <T>(
  ops: LayerOps<T>,
  x: T,
  o: Pick<PoolOp, 'kernel' | 'stride' | 'padding'>,
): T =>
  ops.tidy(() => ops.maxPool(padIfAny(ops, x, o.padding, Number.NEGATIVE_INFINITY), o.kernel, o.stride));

/** Average pooling, count_include_pad: padded cells are zeros that count in the divisor. */
export const avgPoolLayer = <T>(
  ops: LayerOps<T>,
  x: T,
  o: Pick<PoolOp, 'kernel' | 'stride' | 'padding'>,
): T => ops.tidy(() => ops.avgPool(padIfAny(ops, x, o.padding, 0), o.kernel, o.stride));

/** A pointwise activation; 'linear' returns a new handle on the same data. */
export function activationLayer<T>(ops: LayerOps<T>, x: T, fn: ActivationFn, alpha?: number): T {
  switch (fn) {
    case 'relu':
      return ops.relu(x);
    case 'relu6':
      return ops.relu6(x);
    case 'leakyRelu':
      return ops.leakyRelu(x, alpha ?? LEAKY_RELU_DEFAULT_ALPHA);
    case 'sigmoid':
      return ops.sigmoid(x);
    case 'tanh':
      return ops.tanh(x);
    case 'elu':
      if (alpha === undefined || alpha === 1) return ops.elu(x);
      // elu_α(x) = x for x > 0, α(eˣ − 1) otherwise = relu(x) + α·elu(min(x, 0)).
      return ops.tidy(() => ops.add(ops.relu(x), ops.mul(ops.elu(ops.minimum(x, 0)), alpha)));
    case 'gelu':
      return geluLayer(ops, x);
    case 'linear':
      return ops.clone(x);
  }
}

/**
 * Exact GELU, x·Φ(x) = x·(½ + ½·erf(x/√2)): the project's fused kernel, with its own gradient, on
 * every backend (trainer/kernels/gelu.ts; test/streaming/convnext.test.ts checks values and
 * gradients against a float64 reference on wasm, cpu and tensorflow).
 */
export const geluLayer = <T>(ops: LayerOps<T>, x: T): T => ops.gelu(x);

/**
 * Layer normalisation over the channels of each pixel (graph.ts LayerNormOp): biased variance,
 * ε inside the root, as PyTorch's F.layer_norm; the project's fused kernel with its own gradient
 * (trainer/kernels/layer-norm.ts).
 */
export const layerNormLayer = <T>(ops: LayerOps<T>, x: T, gamma: T, beta: T, epsilon: number): T =>
  ops.layerNorm(x, gamma, beta, epsilon);

/** Frozen batch normalisation as a per-channel affine map: y = x·scale + shift. */
export const affineLayer = <T>(ops: LayerOps<T>, x: T, scale: T, shift: T): T =>
  ops.tidy(() => ops.add(ops.mul(x, scale), shift));

/** The layers runBody calls: the shared ones above, or the engine's checked versions of them (ops.ts). */
export interface BodyLayers<T> {
  readonly ops: LayerOps<T>;
  conv(x: T, w: T, bias: T | null, op: Conv2dOp): T;
  maxPool(x: T, op: PoolOp): T;
  avgPool(x: T, op: PoolOp): T;
  activation(x: T, fn: ActivationFn, alpha: number | undefined): T;
  affine(x: T, scale: T, shift: T): T;
  layerNorm(x: T, gamma: T, beta: T, epsilon: number): T;
}

/** The shared layers over `ops`, unchecked (the planner's bodies were validated when built). */
export const layersOf = <T>(ops: LayerOps<T>): BodyLayers<T> => ({
  ops,
  conv: (x, w, bias, op) => convLayer(ops, x, w, bias, op),
  maxPool: (x, op) => maxPoolLayer(ops, x, op),
  avgPool: (x, op) => avgPoolLayer(ops, x, op),
  activation: (x, fn, alpha) => activationLayer(ops, x, fn, alpha),
  affine: (x, scale, shift) => affineLayer(ops, x, scale, shift),
  layerNorm: (x, gamma, beta, epsilon) => layerNormLayer(ops, x, gamma, beta, epsilon),
});

/** A parameter by name, or the caller's error naming it. */
const lookup =
  <T>(params: ReadonlyMap<string, T>, missing: (name: string) => Error) =>
  (name: string): T => {
    const p = params.get(name);
    if (p === undefined) throw missing(name);
    return p;
  };

/**
 * Runs the body on a batch (conventionally: a whole image, or one tile). Frees intermediates
 * after their last use; the caller's input and the output stay.
 */
export function runBodyWith<T>(
  layers: BodyLayers<T>,
  body: Body,
  params: ReadonlyMap<string, T>,
  x: T,
  missing: (name: string) => Error,
): T {
  const { ops } = layers;
  const remaining = new Map<string, number>();
  for (const n of body.nodes) for (const i of n.inputs) remaining.set(i, (remaining.get(i) ?? 0) + 1);
  const values = new Map<string, T>([[INPUT, x]]);
  const param = lookup(params, missing);
  for (const node of body.nodes) {
    const inputs = node.inputs.map((i) => values.get(i) as T);
    const x0 = inputs[0] as T;
    const op = node.op;
    let y: T;
    switch (op.kind) {
      case 'conv2d':
        y = layers.conv(x0, param(`${node.name}/kernel`), op.bias ? param(`${node.name}/bias`) : null, op);
        break;
      case 'maxPool':
        y = layers.maxPool(x0, op);
        break;
      case 'avgPool':
        y = layers.avgPool(x0, op);
        break;
      case 'activation':
        y = layers.activation(x0, op.fn, op.alpha);
        break;
      case 'affine':
        y = layers.affine(x0, param(`${node.name}/scale`), param(`${node.name}/shift`));
        break;
      case 'layerNorm':
        y = layers.layerNorm(x0, param(`${node.name}/gamma`), param(`${node.name}/beta`), op.epsilon);
        break;
      case 'layerScale':
        y = ops.mul(x0, param(`${node.name}/gamma`));
        break;
      case 'channelSlice': {
        const [n, h, w] = ops.shape(x0) as [number, number, number, number];
        y = ops.slice(x0, [0, 0, 0, op.begin], [n, h, w, op.size]);
        break;
      }
      case 'pad':
        y = ops.pad(x0, nhwcPad(op.padding));
        break;
      case 'add':
        y = inputs.slice(1).reduce((acc, t) => ops.add(acc, t), x0);
        break;
      case 'concat':
        y = ops.concat(inputs, 3);
        break;
    }
    values.set(node.name, y);
    for (const i of node.inputs) {
      const left = (remaining.get(i) ?? 0) - 1;
      remaining.set(i, left);
      if (left === 0 && i !== INPUT && i !== body.output) ops.dispose(values.get(i) as T);
    }
  }
  return values.get(body.output) as T;
}

/** What the head needs of a network: the conventionally run trunk, if any, and the pooling. */
export interface HeadShape {
  readonly trunk?: Body;
  readonly pooling: 'max' | 'avg' | 'attention';
}

/**
 * Gated attention (Ilse et al. 2018; CLAM's Attn_Net_Gated) over the instances of x [1, h, w, C],
 * one per position: s = w^T (tanh(V x + b_V) ⊙ sigmoid(U x + b_U)), a = softmax(s) over the h·w
 * instances. Returns the instances X [h·w, C] and the weights a [1, h·w]. The score has no bias:
 * softmax ignores a constant shift, so its gradient would always be zero. The maximum is
 * subtracted before exp so that large scores cannot overflow (softmax is unchanged by it).
 * Parameters `head/attention/{V,U}/{kernel,bias}` ([C, H], [H]) and `head/attention/w/kernel` [H, 1].
 */
export function attentionWith<T>(
  ops: LayerOps<T>,
  params: ReadonlyMap<string, T>,
  x: T,
  missing: (name: string) => Error,
): { instances: T; weights: T } {
  const param = lookup(params, missing);
  const [n, h, w, c] = ops.shape(x) as [number, number, number, number];
  if (n !== 1) throw new Error(`the attention head pools the instances of one image, got a batch of ${n}`);
  const instances = ops.reshape(x, [h * w, c]);
  const weights = ops.tidy(() => {
    const gate = (name: string, f: (t: T) => T): T =>
      f(
        ops.add(
          ops.matMul(instances, param(`head/attention/${name}/kernel`)),
          param(`head/attention/${name}/bias`),
        ),
      );
    const hidden = ops.mul(
      gate('V', (t) => ops.tanh(t)),
      gate('U', (t) => ops.sigmoid(t)),
    );
    const scores = ops.matMul(hidden, param('head/attention/w/kernel'));
    const e = ops.exp(ops.sub(scores, ops.max(scores, [0, 1])));
    return ops.reshape(ops.div(e, ops.sum(e, [0, 1])), [1, h * w]);
  });
  return { instances, weights };
}

/**
 * Trunk, global pooling and dense layer on the stitched feature map: logits [1, outputs].
 * Parameters as network.ts names them: `trunk/…`, `head/attention/…`, `head/dense/kernel|bias`.
 */
export function headWith<T>(
  layers: BodyLayers<T>,
  net: HeadShape,
  params: ReadonlyMap<string, T>,
  F: T,
  missing: (name: string) => Error,
): T {
  const { ops } = layers;
  const param = lookup(params, missing);
  return ops.tidy(() => {
    const x = trunkWith(layers, net, params, F, missing);
    let pooled: T;
    if (net.pooling === 'attention') {
      const { instances, weights } = attentionWith(ops, params, x, missing);
      pooled = ops.matMul(weights, instances);
    } else pooled = net.pooling === 'max' ? ops.max(x, [1, 2]) : ops.mean(x, [1, 2]);
    return ops.add(ops.matMul(pooled, param('head/dense/kernel')), param('head/dense/bias'));
  });
}

/** The trunk's output on F, or F itself when the network has no trunk. */
export function trunkWith<T>(
  layers: BodyLayers<T>,
  net: HeadShape,
  params: ReadonlyMap<string, T>,
  F: T,
  missing: (name: string) => Error,
): T {
  if (!net.trunk) return F;
  const trunkParams = new Map<string, T>();
  for (const [n, t] of params) if (n.startsWith('trunk/')) trunkParams.set(n.slice('trunk/'.length), t);
  return runBodyWith(layers, net.trunk, trunkParams, F, missing);
}
