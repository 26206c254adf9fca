// Shared geometry for the project's convolution kernels: tfjs's own Conv2DInfo record, computed
// once from a kernel's attributes, plus a pad-or-crop helper for the composed kernels.
import * as tf from '@tensorflow/tfjs-core';

export type Conv2DInfo = tf.backend_util.Conv2DInfo;
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

export function convInfo(
  kernelName: string,
  inShape: readonly number[],
  filterShape: readonly number[],
  attrs: { strides: [number, number] | number; pad: Pad; dimRoundingMode?: Rounding; dataFormat?: string },
  dilations: [number, number] | number = 1,
  depthwise = false,
): Conv2DInfo {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(
      `${kernelName}: the project kernel supports NHWC only, got dataFormat ${attrs.dataFormat}`,
    );
  }
  return tf.backend_util.computeConv2DInfo(
    inShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    depthwise,
    'channelsLast',
  );
}

/**
 * Pads (positive amounts) or crops (negative amounts) the H and W axes of an NHWC tensor.
 * `amounts` is [top, bottom, left, right].
 */
export function padOrCrop(x: tf.Tensor4D, amounts: readonly [number, number, number, number]): tf.Tensor4D {
  const [top, bottom, left, right] = amounts;
  let t = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = t.shape;
    const ct = Math.max(0, -top);
    const cl = Math.max(0, -left);
    t = tf.slice(t, [0, ct, cl, 0], [n, h - ct - Math.max(0, -bottom), w - cl - Math.max(0, -right), c]);
  }
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    const p = (v: number) => Math.max(0, v);
    t = tf.pad(t, [
      [0, 0],
      [p(top), p(bottom)],
      [p(left), p(right)],
      [0, 0],
    ]);
  }
  return t;
}

/**
 * A 'valid' tf.conv2d of `x` padded (positive) or cropped (negative) by [top, bottom, left, right]:
 * crops with a slice, and hands the padding to the convolution itself (XNNPACK pads through its
 * indirection buffer, which is cheaper than materialising a padded copy).
 */
export function conv2dSignedPad(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  amounts: readonly [number, number, number, number],
  dilations: [number, number] = [1, 1],
): tf.Tensor4D {
  const crop = amounts.map((v) => Math.min(0, v)) as unknown as [number, number, number, number];
  const [t, b, l, r] = amounts.map((v) => Math.max(0, v)) as [number, number, number, number];
  const [n, h, w] = x.shape;
  const [kh, kw, , co] = filter.shape;
  if (h + crop[0] + crop[1] <= 0 || w + crop[2] + crop[3] <= 0) {
    // Everything real was cropped: the window sees padding only. XNNPACK refuses an empty input
    // (xnn_setup_convolution2d_nhwc_f32 status 2, leaving the output unwritten), so answer here.
    const eh = (kh - 1) * dilations[0] + 1;
    const ew = (kw - 1) * dilations[1] + 1;
    const outH = h + amounts[0] + amounts[1] - eh + 1;
    const outW = w + amounts[2] + amounts[3] - ew + 1;
    return tf.zeros([n, Math.max(0, outH), Math.max(0, outW), co]);
  }
  const xc = crop.some((v) => v < 0) ? padOrCrop(x, crop) : x;
  const pad: 'valid' | tf.backend_util.ExplicitPadding =
    t + b + l + r === 0
      ? 'valid'
      : [
          [0, 0],
          [t, b],
          [l, r],
          [0, 0],
        ];
  return tf.conv2d(xc, filter, 1, pad, 'NHWC', dilations);
}

/**
 * The filter of a backprop-input convolution: rotated by 180° in space, and with its two channel
 * axes swapped when `swapChannels` ([KH,KW,A,B] → [KH,KW,B,A]). Done in JavaScript because filters
 * are small and wasm's Reverse kernel takes milliseconds even for a 3×3×16×16 filter.
 */
export function rotatedFilter(filter: tf.Tensor4D, swapChannels: boolean): tf.Tensor4D {
  const [kh, kw, a, b] = filter.shape;
  const w = filter.dataSync();
  const out = new Float32Array(w.length);
  for (let r = 0; r < kh; r++) {
    for (let c = 0; c < kw; c++) {
      const src = ((kh - 1 - r) * kw + (kw - 1 - c)) * a * b;
      const dst = (r * kw + c) * a * b;
      for (let i = 0; i < a; i++) {
        for (let j = 0; j < b; j++) {
          out[dst + (swapChannels ? j * a + i : i * b + j)] = w[src + i * b + j] as number;
        }
      }
    }
  }
  return tf.tensor4d(out, swapChannels ? [kh, kw, b, a] : [kh, kw, a, b]);
}

/** Narrows a kernel input (a TensorInfo) to the Tensor that the engine actually passes. */
export function asTensor4D(t: tf.TensorInfo, what: string): tf.Tensor4D {
  if (!(t instanceof tf.Tensor) || t.rank !== 4) {
    throw new Error(
      `${what}: expected a rank-4 Tensor, got ${t instanceof tf.Tensor ? `rank ${t.rank}` : 'a TensorInfo'}`,
    );
  }
  return t as tf.Tensor4D;
}
