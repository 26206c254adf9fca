// Translates Keras layers, one at a time in topological order, into body nodes
// (trainer/streaming/graph.ts) and recipes for their parameters. Pure: weights are located in the
// manifest and their shapes checked, but read later (so a refused model fails before any shard is
// read, and a planner can use the network without the weights).
//
// Layer → nodes (a node keeps the layer's name; a fused activation adds `<layer>/<fn>`):
//   InputLayer            the body's INPUT (NHWC, known channel count)
//   Conv2D                conv2d (kernel, strides, dilation_rate, groups, use_bias), + activation
//   DepthwiseConv2D       conv2d with groups = cin, filters = cin·depth_multiplier
//   SeparableConv2D       `<layer>/depthwise` (grouped, no bias) then `<layer>` (1×1, bias)
//   Dense on a feature map  1×1 conv2d (Keras Dense acts on the last axis of every pixel)
//   MaxPooling2D / AveragePooling2D  maxPool / avgPool ('same' avg pools only when they pad nothing)
//   Activation / ReLU (max_value 6 → relu6, negative_slope → leakyRelu) / LeakyReLU / ELU
//   BatchNormalization    affine, moving statistics folded into scale and shift (frozen)
//   ZeroPadding2D         folded into the next conv or 'valid' avg pool, else a pad node
//   Add / Concatenate     add / concat (channel axis only)
// Padding 'valid' is zero; 'same' is the fixed explicit padding of same-padding.ts. Everything
// else is refused with the reason (refusals.ts), except Dropout-like layers after the cut, which
// are the identity at inference and are dropped from the conventionally run trunk.

import { type ActivationFn, type BodyNode, INPUT, type Op, type Padding, type Pair } from '../graph.ts';
import { type Config, type KerasGraph, type KerasLayer, TfjsImportError } from './model-json.ts';
import { cutBefore, INFERENCE_IDENTITY, refusal, UnsupportedLayerError } from './refusals.ts';
import { addPadding, kerasPadding } from './same-padding.ts';
import type { WeightIndex, WeightLocation } from './weights.ts';

/** How to make one body parameter from manifest weights. */
export interface WeightRecipe {
  /** The parameter as runBody names it: `node/kernel`, `node/bias`, `node/scale` or `node/shift`. */
  readonly key: string;
  readonly shape: readonly number[];
  /** The manifest weights it is made from, in the order `make` receives their values. */
  readonly from: readonly WeightLocation[];
  readonly make: (values: readonly Float32Array[]) => Float32Array;
}

/**
 * A TF 'same' layer with stride > 1 and a window wider than 1: exact only when its input length n
 * is a multiple of the stride or the window fits in the remainder (k ≤ n mod s; same-padding.ts).
 */
export interface SameAlignment {
  readonly layer: string;
  readonly className: string;
  /** The body or trunk node whose input length must suit `kernel` and `stride`, per axis. */
  readonly node: string;
  /** The effective (dilated) kernel or pool window, per axis. */
  readonly kernel: Pair;
  readonly stride: Pair;
}

/** A layer of the model that is not in the imported network, and why. */
export interface SkippedLayer {
  readonly layer: string;
  readonly className: string;
  readonly reason: string;
}

const CONV_CLASSES = new Set([
  'Conv2D',
  'Convolution2D',
  'DepthwiseConv2D',
  'SeparableConv2D',
  'SeparableConvolution2D',
]);

function pairOf(v: unknown, where: string, what: string): Pair {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x) && x >= 1)) {
    return [v[0] as number, v[1] as number];
  }
  throw new TfjsImportError(
    `${where}: ${what} must be an integer or a pair of integers, got ${JSON.stringify(v)}`,
  );
}

function bool(cfg: Config, key: string, dflt: boolean): boolean {
  const v = cfg[key];
  return typeof v === 'boolean' ? v : dflt;
}

function identity(values: readonly Float32Array[]): Float32Array {
  return values[0] as Float32Array;
}

/** Keras activation names (Keras 2 and 3, tfjs spellings) that have an op; null for 'linear'. */
export function activationOf(
  raw: unknown,
  layer: KerasLayer,
  before: () => string,
): { fn: ActivationFn; alpha?: number } | null {
  // Keras 3 may serialise a built-in activation as {class_name: 'function', config: 'relu', …}.
  const name = typeof raw === 'object' && raw !== null ? (raw as Config).config : raw;
  if (name === undefined || name === null || name === 'linear') return null;
  switch (name) {
    case 'relu':
    case 'relu6':
    case 'sigmoid':
    case 'tanh':
    case 'elu':
      return { fn: name as ActivationFn };
    case 'leaky_relu':
      return { fn: 'leakyRelu', alpha: 0.2 }; // Keras 3's default negative slope
    default:
      throw new UnsupportedLayerError(
        layer,
        `uses the activation '${String(name)}', which the streamed body has no op for (its activations are ` +
          'relu, relu6, leakyRelu, elu, sigmoid, tanh, linear)',
        `Retrain with a supported activation, or ${before()}.`,
      );
  }
}

export interface TranslatorOptions {
  /** Layers whose output must stay a node of its own (the cut, the model outputs): never folded away. */
  readonly keep: ReadonlySet<string>;
}

/**
 * Accumulates nodes, recipes and alignment requirements. `section` is 'body' while translating the
 * layers up to the cut (everything unsupported is an error) and 'trunk' after it (where layers that
 * are the identity at inference, such as Dropout, are dropped and reported instead).
 */
export class Translator {
  readonly nodes: BodyNode[] = [];
  readonly recipes: WeightRecipe[] = [];
  readonly alignments: SameAlignment[] = [];
  readonly skipped: SkippedLayer[] = [];
  section: 'body' | 'trunk' = 'body';
  readonly #graph: KerasGraph;
  readonly #weights: WeightIndex;
  readonly #keep: ReadonlySet<string>;
  readonly #consumers = new Map<string, KerasLayer[]>();
  readonly #node = new Map<string, string>();
  readonly #channels = new Map<string, number>();
  /** ZeroPadding2D layers folded into their only consumer, with their padding. */
  readonly #folded = new Map<string, Padding>();

  constructor(graph: KerasGraph, weights: WeightIndex, options: TranslatorOptions) {
    this.#graph = graph;
    this.#weights = weights;
    this.#keep = options.keep;
    for (const l of graph.layers) this.#consumers.set(l.name, []);
    for (const l of graph.layers) for (const i of l.inputs) this.#consumers.get(i)?.push(l);
  }

  /** The node that holds a translated layer's output. */
  nodeOf(layer: string): string {
    const n = this.#node.get(layer);
    if (n === undefined) throw new Error(`internal: layer '${layer}' read before it was translated`);
    return n;
  }

  channelsOf(layer: string): number {
    return this.#channels.get(layer) as number;
  }

  /** A checkpoint to roll back to when the trunk turns out not to translate. */
  mark(): () => void {
    const n = this.nodes.length;
    const r = this.recipes.length;
    const a = this.alignments.length;
    const s = this.skipped.length;
    return () => {
      this.nodes.length = n;
      this.recipes.length = r;
      this.alignments.length = a;
      this.skipped.length = s;
    };
  }

  translate(layer: KerasLayer): void {
    const cfg = layer.config;
    if (cfg.data_format === 'channels_first') {
      throw new TfjsImportError(
        `layer '${layer.name}' (${layer.className}) uses data_format 'channels_first'; the streamed body is NHWC ` +
          "(channels_last). Rebuild the model with data_format='channels_last' and copy the weights " +
          '(conv kernels keep their [kh, kw, cin, cout] layout)',
      );
    }
    switch (layer.className) {
      case 'InputLayer':
        this.#input(layer);
        return;
      case 'Conv2D':
      case 'Convolution2D':
        this.#conv(layer, 'standard');
        return;
      case 'DepthwiseConv2D':
        this.#conv(layer, 'depthwise');
        return;
      case 'SeparableConv2D':
      case 'SeparableConvolution2D':
        this.#conv(layer, 'separable');
        return;
      case 'Dense':
        this.#denseOnMap(layer);
        return;
      case 'MaxPooling2D':
      case 'MaxPool2D':
        this.#pool(layer, 'maxPool');
        return;
      case 'AveragePooling2D':
      case 'AvgPool2D':
        this.#pool(layer, 'avgPool');
        return;
      case 'Activation': {
        const a = activationOf(cfg.activation, layer, () => this.#before(layer));
        this.#pointwise(layer, a);
        return;
      }
      case 'ReLU':
        this.#relu(layer);
        return;
      case 'LeakyReLU': {
        // Keras 2 and tfjs call the slope alpha (default 0.3); Keras 3 negative_slope (also 0.3).
        const alpha = (cfg.negative_slope ?? cfg.alpha ?? 0.3) as number;
        this.#pointwise(layer, { fn: 'leakyRelu', alpha });
        return;
      }
      case 'ELU':
        this.#pointwise(layer, { fn: 'elu', alpha: (cfg.alpha ?? 1) as number });
        return;
      case 'BatchNormalization':
        this.#batchNorm(layer);
        return;
      case 'ZeroPadding2D':
        this.#zeroPadding(layer);
        return;
      case 'Add':
        this.#merge(layer, 'add');
        return;
      case 'Concatenate':
        this.#merge(layer, 'concat');
        return;
      default:
        if (this.section === 'trunk' && INFERENCE_IDENTITY.has(layer.className)) {
          const input = this.#single(layer);
          this.#node.set(layer.name, this.nodeOf(input));
          this.#channels.set(layer.name, this.channelsOf(input));
          this.skipped.push({
            layer: layer.name,
            className: layer.className,
            reason: 'the identity at inference; the trunk runs without it',
          });
          return;
        }
        throw refusal(layer, this.#graph.input);
    }
  }

  #before(layer: KerasLayer): string {
    return cutBefore(layer, this.#graph.input);
  }

  #emit(name: string, op: Op, inputs: string[]): string {
    this.nodes.push({ name, op, inputs });
    return name;
  }

  #single(layer: KerasLayer): string {
    if (layer.inputs.length !== 1) {
      throw new TfjsImportError(
        `layer '${layer.name}' (${layer.className}) has ${layer.inputs.length} inputs; it takes one`,
      );
    }
    return layer.inputs[0] as string;
  }

  #input(layer: KerasLayer): void {
    if (layer.name !== this.#graph.input) {
      throw new TfjsImportError(
        `InputLayer '${layer.name}' is a second input; the streamed body takes one image`,
      );
    }
    const shape = this.#graph.inputShape;
    const c = shape[3];
    if (shape.length !== 4 || typeof c !== 'number') {
      throw new TfjsImportError(
        `the model's input '${layer.name}' has batch shape [${shape.map(String).join(', ')}]; ` +
          'the streamed body needs an image batch [batch, height, width, channels] with a known channel count',
      );
    }
    this.#node.set(layer.name, INPUT);
    this.#channels.set(layer.name, c);
  }

  #conv(layer: KerasLayer, kind: 'standard' | 'depthwise' | 'separable'): void {
    const cfg = layer.config;
    const where = `layer '${layer.name}' (${layer.className})`;
    const input = this.#single(layer);
    const cin = this.channelsOf(input);
    const kernel = pairOf(cfg.kernel_size, where, 'kernel_size');
    const stride = pairOf(cfg.strides ?? 1, where, 'strides');
    const dilation = pairOf(cfg.dilation_rate ?? 1, where, 'dilation_rate');
    const effective: Pair = [dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1];
    const { padding: own, needsAlignment } = kerasPadding(cfg.padding, effective, stride, where);
    const padding = addPadding(own, this.#folded.get(input) ?? [0, 0, 0, 0]);
    const bias = bool(cfg, 'use_bias', true);
    const activation = activationOf(cfg.activation, layer, () => this.#before(layer));
    const inNode = this.nodeOf(input);
    const find = (param: string, shape: number[]): WeightLocation =>
      this.#weights.require(layer.name, layer.className, param, shape);

    let out: string;
    let cout: number;
    if (kind === 'standard') {
      const groups = (cfg.groups ?? 1) as number;
      cout = cfg.filters as number;
      if (!Number.isInteger(cout) || cout < 1)
        throw new TfjsImportError(`${where}: filters must be a positive integer`);
      if (!Number.isInteger(groups) || groups < 1 || cin % groups !== 0 || cout % groups !== 0) {
        throw new TfjsImportError(
          `${where}: groups ${String(groups)} must divide the input channels ${cin} and filters ${cout}`,
        );
      }
      const shape = [kernel[0], kernel[1], cin / groups, cout];
      out = this.#emit(
        layer.name,
        { kind: 'conv2d', filters: cout, kernel, stride, dilation, padding, groups, bias },
        [inNode],
      );
      this.recipes.push({ key: `${out}/kernel`, shape, from: [find('kernel', shape)], make: identity });
    } else {
      // tfjs-layers leaves depth_multiplier out of SeparableConv2D configs; the kernel's shape has it.
      const m = (cfg.depth_multiplier ??
        this.#weights.find(layer.name, 'depthwise_kernel')?.spec.shape[3] ??
        1) as number;
      if (!Number.isInteger(m) || m < 1)
        throw new TfjsImportError(`${where}: depth_multiplier must be a positive integer`);
      // Keras [kh, kw, cin, m] read row-major is [kh, kw, 1, cin·m]: output c·m + j reads input c, as ops.conv2d expects.
      const dwShape = [kernel[0], kernel[1], cin, m];
      const depthwise = kind === 'separable' ? `${layer.name}/depthwise` : layer.name;
      const dwBias = kind === 'depthwise' && bias;
      this.#emit(
        depthwise,
        { kind: 'conv2d', filters: cin * m, kernel, stride, dilation, padding, groups: cin, bias: dwBias },
        [inNode],
      );
      this.recipes.push({
        key: `${depthwise}/kernel`,
        shape: [kernel[0], kernel[1], 1, cin * m],
        from: [find('depthwise_kernel', dwShape)],
        make: identity,
      });
      out = depthwise;
      cout = cin * m;
      if (kind === 'separable') {
        cout = cfg.filters as number;
        const pwShape = [1, 1, cin * m, cout];
        out = this.#emit(
          layer.name,
          {
            kind: 'conv2d',
            filters: cout,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            padding: [0, 0, 0, 0],
            groups: 1,
            bias,
          },
          [depthwise],
        );
        this.recipes.push({
          key: `${out}/kernel`,
          shape: pwShape,
          from: [find('pointwise_kernel', pwShape)],
          make: identity,
        });
      }
    }
    if (bias)
      this.recipes.push({ key: `${out}/bias`, shape: [cout], from: [find('bias', [cout])], make: identity });
    if (needsAlignment) {
      this.alignments.push({
        layer: layer.name,
        className: layer.className,
        node: kind === 'separable' ? `${layer.name}/depthwise` : out,
        kernel: effective,
        stride,
      });
    }
    this.#finish(layer, out, cout, activation);
  }

  /** Dense on a rank-4 tensor acts on the channel axis of every pixel: a 1×1 convolution. */
  #denseOnMap(layer: KerasLayer): void {
    const cfg = layer.config;
    const input = this.#single(layer);
    const cin = this.channelsOf(input);
    const units = cfg.units as number;
    const bias = bool(cfg, 'use_bias', true);
    const activation = activationOf(cfg.activation, layer, () => this.#before(layer));
    const out = this.#emit(
      layer.name,
      {
        kind: 'conv2d',
        filters: units,
        kernel: [1, 1],
        stride: [1, 1],
        dilation: [1, 1],
        padding: [0, 0, 0, 0],
        groups: 1,
        bias,
      },
      [this.nodeOf(input)],
    );
    const kernel = this.#weights.require(layer.name, layer.className, 'kernel', [cin, units]);
    this.recipes.push({ key: `${out}/kernel`, shape: [1, 1, cin, units], from: [kernel], make: identity });
    if (bias) {
      const b = this.#weights.require(layer.name, layer.className, 'bias', [units]);
      this.recipes.push({ key: `${out}/bias`, shape: [units], from: [b], make: identity });
    }
    this.#finish(layer, out, units, activation);
  }

  #finish(
    layer: KerasLayer,
    out: string,
    channels: number,
    activation: { fn: ActivationFn; alpha?: number } | null,
  ): void {
    let node = out;
    if (activation) {
      const op: Op =
        activation.alpha === undefined
          ? { kind: 'activation', fn: activation.fn }
          : { kind: 'activation', fn: activation.fn, alpha: activation.alpha };
      node = this.#emit(`${layer.name}/${activation.fn}`, op, [out]);
    }
    this.#node.set(layer.name, node);
    this.#channels.set(layer.name, channels);
  }

  #pool(layer: KerasLayer, kind: 'maxPool' | 'avgPool'): void {
    const cfg = layer.config;
    const where = `layer '${layer.name}' (${layer.className})`;
    const input = this.#single(layer);
    const kernel = pairOf(cfg.pool_size ?? 2, where, 'pool_size');
    const stride = pairOf(cfg.strides ?? kernel, where, 'strides');
    const { padding: own, needsAlignment } = kerasPadding(cfg.padding, kernel, stride, where);
    if (kind === 'avgPool' && own.some((p) => p > 0)) {
      throw new UnsupportedLayerError(
        layer,
        `uses 'same' padding with pool_size [${kernel.join(', ')}] > strides [${stride.join(', ')}]: TF then averages ` +
          'border windows over the real pixels only, while the streamed avgPool divides by the whole window ' +
          "(PyTorch's count_include_pad), so the borders would differ",
        "Use padding 'valid' (or pool_size equal to strides) and retrain, or end the streamed body before it.",
      );
    }
    const padding = addPadding(own, this.#folded.get(input) ?? [0, 0, 0, 0]);
    const out = this.#emit(layer.name, { kind, kernel, stride, padding }, [this.nodeOf(input)]);
    if (needsAlignment)
      this.alignments.push({ layer: layer.name, className: layer.className, node: out, kernel, stride });
    this.#finish(layer, out, this.channelsOf(input), null);
  }

  #pointwise(layer: KerasLayer, activation: { fn: ActivationFn; alpha?: number } | null): void {
    const input = this.#single(layer);
    if (activation === null) {
      // 'linear': no node; the layer's output is its input.
      this.#node.set(layer.name, this.nodeOf(input));
      this.#channels.set(layer.name, this.channelsOf(input));
      return;
    }
    const op: Op =
      activation.alpha === undefined
        ? { kind: 'activation', fn: activation.fn }
        : { kind: 'activation', fn: activation.fn, alpha: activation.alpha };
    const out = this.#emit(layer.name, op, [this.nodeOf(input)]);
    this.#finish(layer, out, this.channelsOf(input), null);
  }

  #relu(layer: KerasLayer): void {
    const cfg = layer.config;
    const max = cfg.max_value ?? null;
    const slope = (cfg.negative_slope ?? 0) as number;
    const threshold = (cfg.threshold ?? 0) as number;
    if (threshold !== 0 || (max !== null && max !== 6) || (max !== null && slope !== 0)) {
      throw new UnsupportedLayerError(
        layer,
        `is a ReLU with max_value ${String(max)}, negative_slope ${slope} and threshold ${threshold}; the streamed ` +
          'body has relu, relu6 (max_value 6) and leakyRelu (negative_slope) only',
        `Retrain with one of those, or ${this.#before(layer)}.`,
      );
    }
    if (max === 6) {
      this.#pointwise(layer, { fn: 'relu6' });
      return;
    }
    if (slope !== 0) {
      this.#pointwise(layer, { fn: 'leakyRelu', alpha: slope });
      return;
    }
    this.#pointwise(layer, { fn: 'relu' });
    return;
  }

  /** Frozen batch normalisation: y = (x − mean)·γ/√(var + ε) + β = x·scale + shift, folded in float64. */
  #batchNorm(layer: KerasLayer): void {
    const cfg = layer.config;
    const axis = Array.isArray(cfg.axis) ? cfg.axis : [cfg.axis ?? -1];
    if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== 3)) {
      throw new UnsupportedLayerError(
        layer,
        `normalises along axis ${JSON.stringify(cfg.axis)}, not the channel axis, so it is not a per-channel affine map`,
        `Use axis -1, or ${this.#before(layer)}.`,
      );
    }
    const input = this.#single(layer);
    const c = this.channelsOf(input);
    const eps = (cfg.epsilon ?? 1e-3) as number;
    const center = bool(cfg, 'center', true);
    const scaled = bool(cfg, 'scale', true);
    const get = (p: string): WeightLocation => this.#weights.require(layer.name, layer.className, p, [c]);
    const gamma = scaled ? [get('gamma')] : [];
    const beta = center ? [get('beta')] : [];
    const mean = get('moving_mean');
    const variance = get('moving_variance');
    const out = this.#emit(layer.name, { kind: 'affine' }, [this.nodeOf(input)]);
    // values: [variance, mean, gamma?, beta?]
    const factor = (v: readonly Float32Array[], i: number): number =>
      (scaled ? ((v[2] as Float32Array)[i] as number) : 1) /
      Math.sqrt(((v[0] as Float32Array)[i] as number) + eps);
    const from = [variance, mean, ...gamma, ...beta];
    this.recipes.push({
      key: `${out}/scale`,
      shape: [c],
      from,
      make: (v) => Float32Array.from({ length: c }, (_, i) => factor(v, i)),
    });
    this.recipes.push({
      key: `${out}/shift`,
      shape: [c],
      from,
      make: (v) =>
        Float32Array.from({ length: c }, (_, i) => {
          const b = center ? ((v[scaled ? 3 : 2] as Float32Array)[i] as number) : 0;
          return b - ((v[1] as Float32Array)[i] as number) * factor(v, i);
        }),
    });
    this.#finish(layer, out, c, null);
  }

  #zeroPadding(layer: KerasLayer): void {
    const where = `layer '${layer.name}' (ZeroPadding2D)`;
    const raw = layer.config.padding ?? 1;
    let padding: Padding;
    if (typeof raw === 'number') padding = [raw, raw, raw, raw];
    else if (Array.isArray(raw) && raw.length === 2 && raw.every((v) => typeof v === 'number')) {
      padding = [raw[0], raw[0], raw[1], raw[1]] as Padding;
    } else if (
      Array.isArray(raw) &&
      raw.length === 2 &&
      raw.every((v) => Array.isArray(v) && v.length === 2)
    ) {
      const [[t, b], [l, r]] = raw as [[number, number], [number, number]];
      padding = [t, b, l, r];
    } else {
      throw new TfjsImportError(
        `${where}: padding ${JSON.stringify(raw)} is not n, [h, w] or [[top, bottom], [left, right]]`,
      );
    }
    if (!padding.every((p) => Number.isInteger(p) && p >= 0)) {
      throw new TfjsImportError(
        `${where}: padding must be non-negative integers, got ${JSON.stringify(raw)}`,
      );
    }
    const input = this.#single(layer);
    if (this.#foldable(layer, padding)) {
      this.#folded.set(layer.name, addPadding(padding, this.#folded.get(input) ?? [0, 0, 0, 0]));
      this.#node.set(layer.name, this.nodeOf(input));
      this.#channels.set(layer.name, this.channelsOf(input));
      return;
    }
    const out = this.#emit(layer.name, { kind: 'pad', padding }, [this.nodeOf(input)]);
    this.#finish(layer, out, this.channelsOf(input), null);
  }

  /**
   * Zero padding folds into its only consumer when that is a convolution (its padding is zeros
   * too) or a 'valid' average pool whose padded sides stay smaller than the window. Not into a
   * max pool, whose padding never wins, and not under a 'same' conv with stride > 1, whose
   * alignment requirement is on its own input.
   */
  #foldable(layer: KerasLayer, padding: Padding): boolean {
    const users = this.#consumers.get(layer.name) ?? [];
    const user = users[0];
    if (this.#keep.has(layer.name) || users.length !== 1 || !user) return false;
    const cfg = user.config;
    if (CONV_CLASSES.has(user.className)) {
      const strides = cfg.strides ?? 1;
      const strided = Array.isArray(strides) ? strides.some((s) => s !== 1) : strides !== 1;
      return cfg.padding !== 'same' || !strided;
    }
    if (user.className === 'AveragePooling2D' || user.className === 'AvgPool2D') {
      const k = cfg.pool_size ?? 2;
      const [kh, kw] = Array.isArray(k) ? (k as number[]) : [k as number, k as number];
      return (
        (cfg.padding ?? 'valid') === 'valid' &&
        padding[0] < (kh as number) &&
        padding[1] < (kh as number) &&
        padding[2] < (kw as number) &&
        padding[3] < (kw as number)
      );
    }
    return false;
  }

  #merge(layer: KerasLayer, kind: 'add' | 'concat'): void {
    if (layer.inputs.length < 2) {
      throw new TfjsImportError(`layer '${layer.name}' (${layer.className}) needs at least two inputs`);
    }
    const channels = layer.inputs.map((i) => this.channelsOf(i));
    if (kind === 'concat') {
      const axis = layer.config.axis ?? -1;
      if (axis !== -1 && axis !== 3) {
        throw new UnsupportedLayerError(
          layer,
          `concatenates along axis ${String(axis)}; only concatenation along the channel axis (-1) is local`,
          `Concatenate channels instead, or ${this.#before(layer)}.`,
        );
      }
    } else if (channels.some((c) => c !== channels[0])) {
      throw new TfjsImportError(
        `layer '${layer.name}' (Add) adds inputs of ${channels.join(', ')} channels (${layer.inputs.join(', ')})`,
      );
    }
    const out = this.#emit(
      layer.name,
      { kind },
      layer.inputs.map((i) => this.nodeOf(i)),
    );
    const c = kind === 'add' ? (channels[0] as number) : channels.reduce((a, b) => a + b, 0);
    this.#finish(layer, out, c, null);
  }
}
