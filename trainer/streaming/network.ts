// A whole network: the streamed body, an optional trunk run conventionally on the stitched feature
// map (e.g. ResNet layer4), global pooling and a dense layer. One training step either streams the
// body (the product) or runs everything on the whole image (the baseline the tests compare with).

import * as tf from '@tensorflow/tfjs-core';
import {
  type BackwardResult,
  ENGINE_LAYERS,
  runBody,
  streamBackward,
  streamForward,
  type TileProgress,
  type TileSource,
} from './executor.ts';
import type { TileGrid } from './geometry.ts';
import { attentionWith, headWith, trunkWith } from './layers.ts';
import { constantInits, type Network, networkParameterShapes } from './network-shape.ts';

export type { Network, Pooling } from './network-shape.ts';
export { networkParameterShapes } from './network-shape.ts';

// tf.variable names must be unique in the engine; the counter keeps them so across networks.
let variableCounter = 0;

/** All trainable tensors of a network, by prefixed name: `body/…`, `trunk/…`, `head/dense/…`. */
export type NetworkParams = Map<string, tf.Variable>;

/**
 * Seeded initialisation: He-normal conv kernels (std √(2 / fan-in)), zero biases and shifts, unit
 * scales, dense kernels (head and attention) N(0, 1/fan-in), layer norm and layer scale at their constants (constantInits).
 * The same seed gives the same weights on every backend.
 */
export function initParams(net: Network, seed: number): NetworkParams {
  const params: NetworkParams = new Map();
  const constants = constantInits(net);
  let i = 0;
  for (const [name, shape] of networkParameterShapes(net)) {
    const s = seed * 7919 + i++;
    const constant = constants.get(name);
    let value: tf.Tensor;
    if (constant !== undefined) value = tf.fill(shape, constant);
    else if (name.endsWith('/bias') || name.endsWith('/shift')) value = tf.zeros(shape);
    else if (name.endsWith('/scale')) value = tf.ones(shape);
    else if (shape.length === 2)
      // Dense kernels (the head's dense layer and the attention's V, U, w): N(0, 1/fan-in).
      value = tf.randomNormal(shape, 0, Math.sqrt(1 / (shape[0] as number)), 'float32', s);
    else {
      const fanIn = (shape[0] as number) * (shape[1] as number) * (shape[2] as number);
      value = tf.randomNormal(shape, 0, Math.sqrt(2 / fanIn), 'float32', s);
    }
    params.set(name, tf.variable(value, true, `${name}#${++variableCounter}`));
    value.dispose();
  }
  return params;
}

/** The parameters under `prefix/`, with the prefix removed. */
export function scoped(params: ReadonlyMap<string, tf.Tensor>, prefix: string): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [n, t] of params) if (n.startsWith(`${prefix}/`)) out.set(n.slice(prefix.length + 1), t);
  return out;
}

/** Trunk, global pooling and dense layer on the stitched feature map: logits [1, outputs] (layers.ts headWith). */
export function headForward(
  net: Network,
  params: ReadonlyMap<string, tf.Tensor>,
  F: tf.Tensor4D,
): tf.Tensor2D {
  return headWith(
    ENGINE_LAYERS,
    net,
    params,
    F,
    (name) => new Error(`missing parameter '${name}' of the head`),
  ) as tf.Tensor2D;
}

/** The loss of one image from its logits [1, outputs]; builds a scalar inside the caller's tape. */
export type LossFn = (logits: tf.Tensor2D) => tf.Scalar;

export interface StepResult {
  readonly loss: number;
  readonly logits: Float32Array;
  /** Gradients of every parameter by prefixed name; the caller disposes them. */
  readonly grads: Map<string, tf.Tensor>;
  readonly inputGrad?: Float32Array;
}

export interface StepOptions {
  inputGrad?: boolean;
  progress?: TileProgress;
}

/** Head loss and gradients with respect to F and the head's own parameters. */
function headStep(
  net: Network,
  params: NetworkParams,
  F: tf.Tensor4D,
  lossFn: LossFn,
): { loss: number; logits: Float32Array; dF: tf.Tensor4D; grads: Map<string, tf.Tensor> } {
  const names = [...params.keys()].filter((n) => !n.startsWith('body/'));
  const tensors = names.map((n) => params.get(n) as tf.Tensor);
  let logits: ArrayLike<number> = [];
  const { value, grads } = tf.tidy(() =>
    tf.valueAndGrads((f: tf.Tensor, ...ps: tf.Tensor[]) => {
      const y = headForward(net, new Map(names.map((n, i) => [n, ps[i] as tf.Tensor])), f as tf.Tensor4D);
      logits = y.dataSync() as Float32Array<ArrayBufferLike>;
      return lossFn(y);
    })([F, ...tensors]),
  );
  const loss = value.dataSync()[0] as number;
  value.dispose();
  return {
    loss,
    logits: Float32Array.from(logits),
    dF: grads[0] as tf.Tensor4D,
    grads: new Map(names.map((n, i) => [n, grads[i + 1] as tf.Tensor])),
  };
}

/** One streamed training step on one image: tiled forward, conventional head, output-partition backward. */
export async function streamedStep(
  net: Network,
  params: NetworkParams,
  source: TileSource,
  grid: TileGrid,
  lossFn: LossFn,
  options: StepOptions = {},
): Promise<StepResult> {
  const bodyParams = scoped(params, 'body');
  const F = await streamForward(net.body, bodyParams, source, grid, options.progress);
  let head: ReturnType<typeof headStep>;
  try {
    head = headStep(net, params, F, lossFn);
  } finally {
    F.dispose();
  }
  let back: BackwardResult;
  try {
    back = await streamBackward(net.body, bodyParams, source, grid, head.dF, {
      ...(options.inputGrad !== undefined && { inputGrad: options.inputGrad }),
      ...(options.progress && { progress: options.progress }),
    });
  } catch (e) {
    // The image is given up (a tile that fails to read, a stop request): so are the head's gradients.
    tf.dispose([...head.grads.values()]);
    throw e;
  } finally {
    head.dF.dispose();
  }
  const grads = new Map<string, tf.Tensor>();
  for (const [n, g] of back.grads) grads.set(`body/${n}`, g);
  for (const [n, g] of head.grads) grads.set(n, g);
  return back.inputGrad
    ? { loss: head.loss, logits: head.logits, grads, inputGrad: back.inputGrad }
    : { loss: head.loss, logits: head.logits, grads };
}

/** The conventional baseline: the whole network on the whole image with one gradient tape. */
export function conventionalStep(
  net: Network,
  params: NetworkParams,
  image: tf.Tensor4D,
  lossFn: LossFn,
  options: { inputGrad?: boolean } = {},
): StepResult {
  const names = [...params.keys()];
  const tensors = names.map((n) => params.get(n) as tf.Tensor);
  let logits: ArrayLike<number> = [];
  const { value, grads } = tf.tidy(() => {
    const f = (x: tf.Tensor, ...ps: tf.Tensor[]): tf.Scalar => {
      const p = new Map(names.map((n, i) => [n, ps[i] as tf.Tensor]));
      const y = headForward(net, p, runBody(net.body, scoped(p, 'body'), x as tf.Tensor4D));
      logits = y.dataSync() as Float32Array<ArrayBufferLike>;
      return lossFn(y);
    };
    return options.inputGrad
      ? tf.valueAndGrads(f)([image, ...tensors])
      : tf.valueAndGrads((...ps: tf.Tensor[]) => f(image, ...ps))(tensors);
  });
  const loss = value.dataSync()[0] as number;
  value.dispose();
  const paramGrads = options.inputGrad ? grads.slice(1) : grads;
  const result = new Map(names.map((n, i) => [n, paramGrads[i] as tf.Tensor]));
  if (!options.inputGrad) return { loss, logits: Float32Array.from(logits), grads: result };
  const dx = grads[0] as tf.Tensor;
  const inputGrad = dx.dataSync() as Float32Array;
  dx.dispose();
  return { loss, logits: Float32Array.from(logits), grads: result, inputGrad };
}

/** Streamed inference: logits of one image. */
export async function streamedPredict(
  net: Network,
  params: NetworkParams,
  source: TileSource,
  grid: TileGrid,
): Promise<Float32Array> {
  const F = await streamForward(net.body, scoped(params, 'body'), source, grid);
  let y: tf.Tensor2D;
  try {
    y = headForward(net, params, F);
  } finally {
    F.dispose();
  }
  const out = y.dataSync() as Float32Array;
  y.dispose();
  return Float32Array.from(out);
}

/** Attention weights of one image over the positions of the head's input (the trunk's output, or F). */
export interface AttentionMap {
  readonly height: number;
  readonly width: number;
  /** Row-major softmax weights, summing to 1. */
  readonly weights: Float32Array;
}

/** The attention head's weights on the stitched feature map F [1, h, w, C] (layers.ts attentionWith). */
export function attentionOf(
  net: Network,
  params: ReadonlyMap<string, tf.Tensor>,
  F: tf.Tensor4D,
): AttentionMap {
  if (net.pooling !== 'attention')
    throw new Error(`the network's head pools by ${net.pooling}, not attention`);
  const missing = (name: string) => new Error(`missing parameter '${name}' of the head`);
  const x = tf.tidy(() => trunkWith(ENGINE_LAYERS, net, params, F, missing));
  try {
    const [, height, width] = x.shape as [number, number, number, number];
    const w = tf.tidy(() => attentionWith(ENGINE_LAYERS.ops, params, x, missing).weights);
    const weights = Float32Array.from(w.dataSync());
    w.dispose();
    return { height, width, weights };
  } finally {
    if (x !== F) x.dispose();
  }
}

/** Streamed forward to F, then the attention head's weights (attentionOf). */
export async function streamedAttention(
  net: Network,
  params: NetworkParams,
  source: TileSource,
  grid: TileGrid,
): Promise<AttentionMap> {
  const F = await streamForward(net.body, scoped(params, 'body'), source, grid);
  try {
    return attentionOf(net, params, F);
  } finally {
    F.dispose();
  }
}

/** Adds `grads` into `into` (gradient accumulation across images), disposing what it replaces. */
export function accumulate(into: Map<string, tf.Tensor>, grads: ReadonlyMap<string, tf.Tensor>): void {
  for (const [n, g] of grads) {
    const prev = into.get(n);
    if (!prev) {
      into.set(n, g);
      continue;
    }
    into.set(n, tf.add(prev, g));
    prev.dispose();
    g.dispose();
  }
}
