// Conv2DBackpropFilter composed from one ordinary convolution, for the wasm backend (which has no
// such kernel) so that the work runs on XNNPACK. Swapping batch and channels turns the weight
// gradient into a convolution of the input (channels as batch) with dy (as the filter, batch as
// its input channels); the forward stride becomes the filter's dilation. tfjs-notes §4b measured
// this at ~8 GFLOP/s on wasm against ~1.5 for slice/matMul variants.
import * as tf from '@tensorflow/tfjs-core';
import { asTensor4D, conv2dSignedPad, convInfo } from './conv-geometry.ts';

export function conv2dBackpropFilterViaConv(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  attrs: tf.Conv2DBackpropFilterAttrs,
): tf.Tensor4D {
  const c = convInfo(tf.Conv2DBackpropFilter, x.shape, attrs.filterShape, attrs);
  const { strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  return tf.tidy(() => {
    // Keep exactly the rows/columns some window touches, so the convolution below yields KH×KW
    // outputs and computes nothing that is cropped away afterwards.
    const usedH = (c.outHeight - 1) * sH + KH;
    const usedW = (c.outWidth - 1) * sW + KW;
    const { top, left } = c.padInfo;
    const xT = tf.transpose(x, [3, 1, 2, 0]); // [Ci, H, W, B]
    const dyT = tf.transpose(dy, [1, 2, 0, 3]); // [Ho, Wo, B, Co] used as a filter
    const amounts = [top, usedH - c.inHeight - top, left, usedW - c.inWidth - left] as const;
    const r = conv2dSignedPad(xT, dyT, amounts, [sH, sW]); // [Ci, KH, KW, Co]
    return tf.transpose(r, [1, 2, 0, 3]);
  });
}

export const conv2dBackpropFilterConvKernel: tf.KernelFunc = ({ inputs, attrs }) => {
  const { x, dy } = inputs as tf.Conv2DBackpropFilterInputs;
  return conv2dBackpropFilterViaConv(
    asTensor4D(x!, tf.Conv2DBackpropFilter),
    asTensor4D(dy!, tf.Conv2DBackpropFilter),
    attrs as unknown as tf.Conv2DBackpropFilterAttrs,
  );
};
