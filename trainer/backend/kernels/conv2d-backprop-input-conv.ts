// Conv2DBackpropInput composed from one ordinary convolution, for the wasm backend: its stock
// kernel is a naive loop (~2 GFLOP/s) while Conv2D runs on XNNPACK (~20 GFLOP/s). dx is the
// correlation of dy with the filter rotated by 180° and its channel axes swapped; for stride s,
// dy is first spread out with s−1 zeros between its samples. The zeros cost s² more work, which
// XNNPACK still wins for stride 2 (see bench in test/backend and the report in the kernel list).
import * as tf from '@tensorflow/tfjs-core';
import { asTensor4D, conv2dSignedPad, convInfo, rotatedFilter } from './conv-geometry.ts';

/** Inserts s−1 zeros after every sample along H and W: [B,H,W,C] → [B,H·sH,W·sW,C]. */
export function spreadWithZeros(t: tf.Tensor4D, sH: number, sW: number): tf.Tensor4D {
  if (sH === 1 && sW === 1) return t;
  const [b, h, w, ch] = t.shape;
  const t6 = tf.reshape(t, [b, h, 1, w, 1, ch]);
  const padded = tf.pad(t6, [
    [0, 0],
    [0, 0],
    [0, sH - 1],
    [0, 0],
    [0, sW - 1],
    [0, 0],
  ]);
  return tf.reshape(padded, [b, h * sH, w * sW, ch]);
}

export function conv2dBackpropInputViaConv(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  attrs: tf.Conv2DBackpropInputAttrs,
): tf.Tensor4D {
  const c = convInfo(tf.Conv2DBackpropInput, attrs.inputShape, filter.shape, attrs);
  const { strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  return tf.tidy(() => {
    const spread = spreadWithZeros(dy, sH, sW); // dy sample (r, c) now sits at (r·sH, c·sW)
    // dx[i] = Σ_k spread[i + top − k]·w[k]: pad so that row i of the output reads rows
    // i .. i+KH−1 of the padded map; the padded map must have H + KH − 1 rows.
    const { top, left } = c.padInfo;
    const amounts = [
      KH - 1 - top,
      c.inHeight + top - spread.shape[1],
      KW - 1 - left,
      c.inWidth + left - spread.shape[2],
    ] as const;
    return conv2dSignedPad(spread, rotatedFilter(filter, true), amounts);
  });
}

export const conv2dBackpropInputConvKernel: tf.KernelFunc = ({ inputs, attrs }) => {
  const { dy, filter } = inputs as tf.Conv2DBackpropInputInputs;
  return conv2dBackpropInputViaConv(
    asTensor4D(dy!, tf.Conv2DBackpropInput),
    asTensor4D(filter!, tf.Conv2DBackpropInput),
    attrs as unknown as tf.Conv2DBackpropInputAttrs,
  );
};
