// The streamed body and the head run symbolically: the same op sequence as
// trainer/streaming/ops.ts (explicit padding, dilated kernels, groups), executor.ts runBody (which
// frees intermediates at their last use) and network.ts headForward, over shapes only.

import type { ActivationFn, Body, Conv2dOp, Padding, PoolOp } from '../streaming/graph.ts';
import { INPUT } from '../streaming/graph.ts';
import type { SimEngine, SimTensor } from './sim-engine.ts';
import {
  add,
  avgPool,
  clone,
  concat,
  conv2d,
  depthwiseConv2d,
  matMul,
  max,
  maxPool,
  mean,
  minimum,
  mul,
  type Pad4,
  pad,
  pad4,
  reshape,
  slice,
  split,
  sum,
  unary,
} from './sim-ops.ts';

type T = SimTensor;

/** ops.ts dilateKernel: spreads the taps with pad/reshape/slice (differentiable in w). */
function dilateKernel(sim: SimEngine, w: T, dilation: readonly [number, number]): T {
  const [dh, dw] = dilation;
  if (dh === 1 && dw === 1) return w;
  return sim.tidy(() => {
    const [kh, kw, a, b] = w.shape as [number, number, number, number];
    let k = w;
    if (dh > 1) {
      const spread = pad(sim, reshape(sim, k, [kh, 1, kw, a, b]), [
        [0, 0],
        [0, dh - 1],
        [0, 0],
        [0, 0],
        [0, 0],
      ]);
      k = slice(sim, reshape(sim, spread, [kh * dh, kw, a, b]), [0, 0, 0, 0], [(kh - 1) * dh + 1, kw, a, b]);
    }
    if (dw > 1) {
      const h = k.shape[0] as number;
      const spread = pad(sim, reshape(sim, k, [h, kw, 1, a, b]), [
        [0, 0],
        [0, 0],
        [0, dw - 1],
        [0, 0],
        [0, 0],
      ]);
      k = slice(sim, reshape(sim, spread, [h, kw * dw, a, b]), [0, 0, 0, 0], [h, (kw - 1) * dw + 1, a, b]);
    }
    return k;
  });
}

function conv(sim: SimEngine, x: T, w: T, bias: T | null, op: Conv2dOp): T {
  return sim.tidy(() => {
    const k = dilateKernel(sim, w, op.dilation);
    const a = { strides: op.stride, pad: op.padding as Pad4, dilations: [1, 1] as const };
    const cin = x.shape[3] as number;
    let y: T;
    if (op.groups === 1) y = conv2d(sim, x, k, a);
    else if (op.groups === cin) {
      const [kh, kw, , cout] = k.shape as [number, number, number, number];
      y = depthwiseConv2d(sim, x, reshape(sim, k, [kh, kw, cin, cout / cin]), a);
    } else {
      const g = op.groups;
      const xs = split(sim, x, Array(g).fill(cin / g), 3);
      const ks = split(sim, k, Array(g).fill((k.shape[3] as number) / g), 3);
      y = concat(
        sim,
        xs.map((xg, i) => conv2d(sim, xg, ks[i] as T, a)),
        3,
      );
    }
    return bias === null ? y : add(sim, y, bias);
  });
}

const padIfAny = (sim: SimEngine, x: T, p: Padding): T =>
  p.some((v) => v > 0) ? pad4(sim, x, p as Pad4) : x;

function pool(sim: SimEngine, x: T, op: PoolOp): T {
  const a = { kernel: op.kernel, strides: op.stride };
  return sim.tidy(() =>
    op.kind === 'maxPool'
      ? maxPool(sim, padIfAny(sim, x, op.padding), a)
      : avgPool(sim, padIfAny(sim, x, op.padding), a),
  );
}

function activation(sim: SimEngine, x: T, fn: ActivationFn, alpha: number | undefined): T {
  switch (fn) {
    case 'relu':
      return unary(sim, 'Relu', x);
    case 'relu6':
      return unary(sim, 'Relu6', x);
    case 'leakyRelu':
      return unary(sim, 'LeakyRelu', x);
    case 'sigmoid':
      return unary(sim, 'Sigmoid', x);
    case 'tanh':
      return unary(sim, 'Tanh', x);
    case 'elu':
      if (alpha === undefined || alpha === 1) return unary(sim, 'Elu', x);
      return sim.tidy(() =>
        add(sim, unary(sim, 'Relu', x), mul(sim, unary(sim, 'Elu', minimum(sim, x, 0)), alpha)),
      );
    case 'linear':
      return clone(sim, x);
  }
}

/** executor.ts runBody over shapes: intermediates die at their last use. */
export function runBody(sim: SimEngine, body: Body, params: ReadonlyMap<string, T>, x: T): T {
  const remaining = new Map<string, number>();
  for (const n of body.nodes) for (const i of n.inputs) remaining.set(i, (remaining.get(i) ?? 0) + 1);
  const values = new Map<string, T>([[INPUT, x]]);
  const param = (name: string): T => {
    const p = params.get(name);
    if (!p) throw new Error(`internal: missing simulated parameter '${name}' of body '${body.name}'`);
    return p;
  };
  for (const node of body.nodes) {
    const inputs = node.inputs.map((i) => values.get(i) as T);
    const x0 = inputs[0] as T;
    const op = node.op;
    let y: T;
    switch (op.kind) {
      case 'conv2d':
        y = conv(sim, x0, param(`${node.name}/kernel`), op.bias ? param(`${node.name}/bias`) : null, op);
        break;
      case 'maxPool':
      case 'avgPool':
        y = pool(sim, x0, op);
        break;
      case 'activation':
        y = activation(sim, x0, op.fn, op.alpha);
        break;
      case 'affine':
        y = sim.tidy(() => add(sim, mul(sim, x0, param(`${node.name}/scale`)), param(`${node.name}/shift`)));
        break;
      case 'pad':
        y = pad4(sim, x0, op.padding as Pad4);
        break;
      case 'add':
        y = inputs.slice(1).reduce((acc, t) => add(sim, acc, t), x0);
        break;
      case 'concat':
        y = concat(sim, inputs, 3);
        break;
    }
    values.set(node.name, y);
    for (const i of node.inputs) {
      const left = (remaining.get(i) ?? 0) - 1;
      remaining.set(i, left);
      if (left === 0 && i !== INPUT && i !== body.output) sim.dispose(values.get(i));
    }
  }
  return values.get(body.output) as T;
}

export interface HeadShape {
  readonly trunk?: Body;
  readonly pooling: 'max' | 'avg';
}

/** network.ts headForward: trunk, global pooling, dense layer; logits [1, outputs]. */
export function headForward(sim: SimEngine, net: HeadShape, params: ReadonlyMap<string, T>, F: T): T {
  return sim.tidy(() => {
    const trunkParams = new Map<string, T>();
    for (const [n, t] of params) if (n.startsWith('trunk/')) trunkParams.set(n.slice(6), t);
    const x = net.trunk ? runBody(sim, net.trunk, trunkParams, F) : F;
    const pooled = net.pooling === 'max' ? max(sim, x, [1, 2]) : mean(sim, x, [1, 2]);
    const kernel = params.get('head/dense/kernel') as T;
    const bias = params.get('head/dense/bias') as T;
    return add(sim, matMul(sim, pooled, kernel), bias);
  });
}

/** A loss of the logits, as compare.ts linearLoss (sum of logits times constants); tiny next to the rest. */
export function loss(sim: SimEngine, logits: T): T {
  return sum(sim, mul(sim, logits, sim.make(logits.shape)), [0, 1]);
}
