// Conv2DBackpropInput on wasm: the composed kernel of trainer/kernels/conv2d-backprop-input-conv.ts
// (XNNPACK convolutions: zero-spread, or sub-pixel phases when strided) on tfjs tensors.
import * as tf from '@tensorflow/tfjs-core';
import * as composed from '../../kernels/conv2d-backprop-input-conv.ts';
import { convInfo } from './conv-geometry.ts';
import { tfOps } from './tf-ops.ts';

export { useSubPixel } from '../../kernels/conv2d-backprop-input-conv.ts';

type Form = typeof composed.conv2dBackpropInputViaConv;

const run =
  (form: Form) =>
  (dy: tf.Tensor4D, filter: tf.Tensor4D, attrs: tf.Conv2DBackpropInputAttrs): tf.Tensor4D =>
    form(
      tfOps(tf.backend(), tf.getBackend()),
      dy,
      filter,
      convInfo(tf.Conv2DBackpropInput, attrs.inputShape, filter.shape, attrs),
    ) as tf.Tensor4D;

/** The zero-spread form on tfjs tensors (tests compare both forms with a reference). */
export const conv2dBackpropInputViaConv = run(composed.conv2dBackpropInputViaConv);
/** The sub-pixel form on tfjs tensors. */
export const conv2dBackpropInputSubPixel = run(composed.conv2dBackpropInputSubPixel);
