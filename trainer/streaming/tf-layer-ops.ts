// The engine's implementation of the layers' operations (layers.ts LayerOps): each is the tfjs op
// of the same name. The planner's implementation is plan/sim-body.ts.
import * as tf from '@tensorflow/tfjs-core';
import { explicitPadding } from '../backend/kernels/tf-ops.ts';
import { FUSED_GELU } from '../kernels/gelu.ts';
import { FUSED_LAYER_NORM } from '../kernels/layer-norm.ts';
import type { LayerOps } from './layers.ts';

const as4 = (t: tf.Tensor): tf.Tensor4D => t as tf.Tensor4D;

/** Runs one of the project's fused ops, which exist once initBackend has registered them. */
function fused(kernelName: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): tf.Tensor {
  if (tf.getKernel(kernelName, tf.getBackend()) === undefined || tf.getGradient(kernelName) === undefined) {
    throw new Error(
      `the project kernel ${kernelName} is not registered on the ${tf.getBackend()} backend: ` +
        'start the backend with initBackend (trainer/backend/select.ts), or call registerProjectKernels ' +
        '(trainer/backend/kernels/registry.ts) after tf.setBackend',
    );
  }
  return tf.engine().runKernel(kernelName, inputs, attrs) as tf.Tensor;
}

export const TF_LAYER_OPS: LayerOps<tf.Tensor> = {
  shape: (x) => x.shape,
  tidy: (fn) => tf.tidy(fn),
  dispose: (x) => x.dispose(),
  pad: (x, paddings, value) =>
    tf.pad(
      x,
      paddings.map(([a, b]) => [a, b] as [number, number]),
      value,
    ),
  reshape: (x, shape) => tf.reshape(x, [...shape]),
  slice: (x, begin, size) => tf.slice(x, [...begin], [...size]),
  split: (x, count, axis) => tf.split(x, count, axis),
  concat: (xs, axis) => tf.concat([...xs], axis),
  conv2d: (x, filter, strides, padding) =>
    tf.conv2d(as4(x), as4(filter), [strides[0], strides[1]], explicitPadding(padding)),
  depthwiseConv2d: (x, filter, strides, padding) =>
    tf.depthwiseConv2d(as4(x), as4(filter), [strides[0], strides[1]], explicitPadding(padding)),
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  minimum: (a, b) => tf.minimum(a, b),
  maxPool: (x, kernel, strides) =>
    tf.maxPool(as4(x), [...kernel] as [number, number], [...strides] as [number, number], 'valid'),
  avgPool: (x, kernel, strides) =>
    tf.avgPool(as4(x), [...kernel] as [number, number], [...strides] as [number, number], 'valid'),
  relu: (x) => tf.relu(x),
  relu6: (x) => tf.relu6(x),
  leakyRelu: (x, alpha) => tf.leakyRelu(x, alpha),
  sigmoid: (x) => tf.sigmoid(x),
  tanh: (x) => tf.tanh(x),
  elu: (x) => tf.elu(x),
  gelu: (x) => fused(FUSED_GELU, { x }, {}),
  layerNorm: (x, gamma, beta, epsilon) => fused(FUSED_LAYER_NORM, { x, gamma, beta }, { epsilon }),
  clone: (x) => tf.clone(x),
  max: (x, axes) => tf.max(x, [...axes]),
  mean: (x, axes) => tf.mean(x, [...axes]),
  matMul: (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
  exp: (x) => tf.exp(x),
  sum: (x, axes) => tf.sum(x, [...axes]),
  div: (a, b) => tf.div(a, b),
};
