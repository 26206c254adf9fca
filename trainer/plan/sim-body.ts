// The streamed body and the head run symbolically: the engine's own layer code, runBody and head
// (trainer/streaming/layers.ts) on simulated ops, over shapes only.

import { FUSED_GELU } from '../kernels/gelu.ts';
import { FUSED_LAYER_NORM } from '../kernels/layer-norm.ts';
import type { Body } from '../streaming/graph.ts';
import { type HeadShape, headWith, type LayerOps, layersOf, runBodyWith } from '../streaming/layers.ts';

export type { HeadShape } from '../streaming/layers.ts';

import type { SimEngine, SimTensor } from './sim-engine.ts';
import {
  add,
  avgPool,
  clone,
  concat,
  conv2d,
  depthwiseConv2d,
  div,
  matMul,
  max,
  maxPool,
  mean,
  minimum,
  mul,
  pad,
  reshape,
  slice,
  split,
  sub,
  sum,
  unary,
} from './sim-ops.ts';

type T = SimTensor;

/**
 * The layers' tfjs ops (streaming/layers.ts) on a simulated engine: each is the simulated op of
 * the same name (sim-ops.ts), so the planner runs the engine's own layer code and runBody.
 */
export function simLayerOps(sim: SimEngine): LayerOps<T> {
  return {
    shape: (x) => x.shape,
    tidy: (fn) => sim.tidy(fn),
    dispose: (x) => sim.dispose(x),
    pad: (x, paddings) => pad(sim, x, paddings),
    reshape: (x, shape) => reshape(sim, x, shape),
    slice: (x, begin, size) => slice(sim, x, begin, size),
    split: (x, count, axis) => split(sim, x, Array(count).fill((x.shape[axis] as number) / count), axis),
    concat: (xs, axis) => concat(sim, xs, axis),
    conv2d: (x, filter, strides, padding) =>
      conv2d(sim, x, filter, { strides, pad: padding, dilations: [1, 1] }),
    depthwiseConv2d: (x, filter, strides, padding) =>
      depthwiseConv2d(sim, x, filter, { strides, pad: padding, dilations: [1, 1] }),
    add: (a, b) => add(sim, a, b),
    sub: (a, b) => sub(sim, a, b),
    mul: (a, b) => mul(sim, a, b),
    minimum: (a, b) => minimum(sim, a, b),
    maxPool: (x, kernel, strides) => maxPool(sim, x, { kernel, strides }),
    avgPool: (x, kernel, strides) => avgPool(sim, x, { kernel, strides }),
    relu: (x) => unary(sim, 'Relu', x),
    relu6: (x) => unary(sim, 'Relu6', x),
    leakyRelu: (x) => unary(sim, 'LeakyRelu', x),
    sigmoid: (x) => unary(sim, 'Sigmoid', x),
    tanh: (x) => unary(sim, 'Tanh', x),
    elu: (x) => unary(sim, 'Elu', x),
    gelu: (x) => sim.kernel(FUSED_GELU, { x }, x.shape),
    layerNorm: (x, gamma, beta, epsilon) =>
      sim.kernel(FUSED_LAYER_NORM, { x, gamma, beta }, x.shape, { epsilon }),
    clone: (x) => clone(sim, x),
    max: (x, axes) => max(sim, x, axes),
    mean: (x, axes) => mean(sim, x, axes),
    matMul: (a, b) => matMul(sim, a, b),
    exp: (x) => unary(sim, 'Exp', x),
    sum: (x, axes) => sum(sim, x, axes),
    div: (a, b) => div(sim, a, b),
  };
}

/** executor.ts runBody over shapes: the same layers and the same last-use frees (streaming/layers.ts). */
export function runBody(sim: SimEngine, body: Body, params: ReadonlyMap<string, T>, x: T): T {
  return runBodyWith(
    layersOf(simLayerOps(sim)),
    body,
    params,
    x,
    (name) => new Error(`internal: missing simulated parameter '${name}' of body '${body.name}'`),
  );
}

/** network.ts headForward over shapes: the same trunk, pooling and dense layer (streaming/layers.ts). */
export function headForward(sim: SimEngine, net: HeadShape, params: ReadonlyMap<string, T>, F: T): T {
  return headWith(
    layersOf(simLayerOps(sim)),
    net,
    params,
    F,
    (name) => new Error(`internal: missing simulated parameter '${name}'`),
  );
}

/** A loss of the logits, as compare.ts linearLoss (sum of logits times constants); tiny next to the rest. */
export function loss(sim: SimEngine, logits: T): T {
  return sum(sim, mul(sim, logits, sim.make(logits.shape)), [0, 1]);
}
