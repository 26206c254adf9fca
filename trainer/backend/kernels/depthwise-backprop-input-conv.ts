// DepthwiseConv2dNativeBackpropInput composed from one depthwise convolution, for the wasm backend
// (which lacks the kernel): dy spread out by the stride, padded, and correlated with the filter
// rotated by 180°. Each of the C·M dy channels meets its own filter tap, so a depthwise conv
// with multiplier 1 does the products, and a sum over the M multiplier channels folds them back
// onto the C input channels. Measured 4-9x faster on wasm than the typed-array loop.
import * as tf from '@tensorflow/tfjs-core';
import { asTensor4D, convInfo, padOrCrop, rotatedFilter } from './conv-geometry.ts';
import { spreadWithZeros } from './conv2d-backprop-input-conv.ts';

export function depthwiseBackpropInputViaConv(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  attrs: tf.DepthwiseConv2dNativeBackpropInputAttrs,
): tf.Tensor4D {
  const c = convInfo(
    tf.DepthwiseConv2dNativeBackpropInput,
    attrs.inputShape,
    filter.shape,
    attrs,
    attrs.dilations ?? 1,
    true,
  );
  const { strideHeight: sH, strideWidth: sW, dilationHeight: dH, dilationWidth: dW } = c;
  const { effectiveFilterHeight: EH, effectiveFilterWidth: EW, inChannels: C, outChannels: Co } = c;
  const [KH, KW] = filter.shape;
  const M = Co / C;
  return tf.tidy(() => {
    const spread = spreadWithZeros(dy, sH, sW);
    const { top, left } = c.padInfo;
    const amounts = [
      EH - 1 - top,
      c.inHeight + top - spread.shape[1],
      EW - 1 - left,
      c.inWidth + left - spread.shape[2],
    ] as const;
    const [b, h, w] = spread.shape;
    if (
      h + Math.min(0, amounts[0]) + Math.min(0, amounts[1]) <= 0 ||
      w + Math.min(0, amounts[2]) + Math.min(0, amounts[3]) <= 0
    ) {
      // Every dy sample is cropped away (padding wider than the filter): no input gets gradient.
      // XNNPACK would refuse the empty input and leave the output unwritten.
      return tf.zeros([b, c.inHeight, c.inWidth, C]) as tf.Tensor4D;
    }
    const padded = padOrCrop(spread, amounts);
    const rotated = tf.reshape(rotatedFilter(filter, false), [KH, KW, Co, 1]) as tf.Tensor4D;
    const r = tf.depthwiseConv2d(padded, rotated, 1, 'valid', 'NHWC', [dH, dW]);
    if (M === 1) return r;
    return tf.sum(tf.reshape(r, [b, c.inHeight, c.inWidth, C, M]), 4) as tf.Tensor4D;
  });
}

export const depthwiseBackpropInputConvKernel: tf.KernelFunc = ({ inputs, attrs }) => {
  const { dy, filter } = inputs as tf.DepthwiseConv2dNativeBackpropInputInputs;
  return depthwiseBackpropInputViaConv(
    asTensor4D(dy!, tf.DepthwiseConv2dNativeBackpropInput),
    asTensor4D(filter!, tf.DepthwiseConv2dNativeBackpropInput),
    attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs,
  );
};
