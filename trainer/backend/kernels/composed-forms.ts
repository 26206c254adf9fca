// Each form of the composed wasm convolution gradients (trainer/kernels/) on tfjs tensors, called
// directly: the registered kernel picks a form by shape, and the tests compare every form with a
// reference. The geometry comes from tfjs's own computeConv2DInfo, as in the kernel.
import * as tf from '@tensorflow/tfjs-core';
import * as filter from '../../kernels/conv2d-backprop-filter-conv.ts';
import * as input from '../../kernels/conv2d-backprop-input-conv.ts';
import { convInfo } from './conv-geometry.ts';
import { tfOps } from './tf-ops.ts';

const ops = () => tfOps(tf.backend(), tf.getBackend());

const filterForm =
  (form: typeof filter.conv2dBackpropFilterViaConv) =>
  (x: tf.Tensor4D, dy: tf.Tensor4D, a: tf.Conv2DBackpropFilterAttrs): tf.Tensor4D =>
    form(ops(), x, dy, convInfo(tf.Conv2DBackpropFilter, x.shape, a.filterShape, a)) as tf.Tensor4D;

const inputForm =
  (form: typeof input.conv2dBackpropInputViaConv) =>
  (dy: tf.Tensor4D, w: tf.Tensor4D, a: tf.Conv2DBackpropInputAttrs): tf.Tensor4D =>
    form(ops(), dy, w, convInfo(tf.Conv2DBackpropInput, a.inputShape, w.shape, a)) as tf.Tensor4D;

/** Conv2DBackpropFilter: one convolution with batch and channels swapped. */
export const conv2dBackpropFilterViaConv = filterForm(filter.conv2dBackpropFilterViaConv);
/** Conv2DBackpropFilter over 16×16 output blocks (the kernel's form when both channel counts are ≥ 32). */
export const conv2dBackpropFilterTiled = filterForm(filter.conv2dBackpropFilterTiled);
/** Conv2DBackpropInput: dy spread with zeros, one stride-1 convolution. */
export const conv2dBackpropInputViaConv = inputForm(input.conv2dBackpropInputViaConv);
/** Conv2DBackpropInput: one convolution per output phase (the kernel's form when strided). */
export const conv2dBackpropInputSubPixel = inputForm(input.conv2dBackpropInputSubPixel);
