// Conv2DBackpropFilter on wasm: the composed kernel of trainer/kernels/conv2d-backprop-filter-conv.ts
// (one XNNPACK convolution, plain or 16×16-block tiled) on tfjs tensors.
import * as tf from '@tensorflow/tfjs-core';
import * as composed from '../../kernels/conv2d-backprop-filter-conv.ts';
import { convInfo } from './conv-geometry.ts';
import { tfOps } from './tf-ops.ts';

export { useTiledFilterGradient } from '../../kernels/conv2d-backprop-filter-conv.ts';

type Form = typeof composed.conv2dBackpropFilterViaConv;

const run =
  (form: Form) =>
  (x: tf.Tensor4D, dy: tf.Tensor4D, attrs: tf.Conv2DBackpropFilterAttrs): tf.Tensor4D =>
    form(
      tfOps(tf.backend(), tf.getBackend()),
      x,
      dy,
      convInfo(tf.Conv2DBackpropFilter, x.shape, attrs.filterShape, attrs),
    ) as tf.Tensor4D;

/** The plain form on tfjs tensors (tests compare both forms with a reference). */
export const conv2dBackpropFilterViaConv = run(composed.conv2dBackpropFilterViaConv);
/** The 16×16-block tiled form on tfjs tensors. */
export const conv2dBackpropFilterTiled = run(composed.conv2dBackpropFilterTiled);
