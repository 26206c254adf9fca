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

/** Output block edge of the tiled form: 16×16 blocks gave the best times in the measurements. */
const BLOCK = 16;

/**
 * The same convolution with the reduction laid out for XNNPACK. In the plain form the filter's
 * input channels are the batch (usually 1), so XNNPACK walks Ho·Wo taps one float at a time.
 * Here dy is cut into BLOCK×BLOCK output blocks, each paired with the input window it read, and
 * the blocks (of every image in the batch) become the channels: the reduction runs over
 * BLOCK² taps × (number of blocks) contiguous channels.
 */
export function conv2dBackpropFilterTiled(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  attrs: tf.Conv2DBackpropFilterAttrs,
): tf.Tensor4D {
  const c = convInfo(tf.Conv2DBackpropFilter, x.shape, attrs.filterShape, attrs);
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: Ci, outHeight: Ho, outWidth: Wo } = c;
  const { outChannels: Co, strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  const { top, left } = c.padInfo;
  const bh = Math.min(BLOCK, Ho);
  const bw = Math.min(BLOCK, Wo);
  const nbh = Math.ceil(Ho / bh);
  const nbw = Math.ceil(Wo / bw);
  const T = B * nbh * nbw;
  const winH = (bh - 1) * sH + KH; // input rows one output block reads
  const winW = (bw - 1) * sW + KW;
  const xv = x.dataSync() as Float32Array;
  const dv = dy.dataSync() as Float32Array;
  // Block-major gathers with whole-row copies, then XNNPACK transposes put the blocks innermost:
  // xb[t, i, j, ci] = x[b, blockRow·bh·sH + i − top, blockCol·bw·sW + j − left, ci] (0 outside),
  // db[t, u, v, co] = dy[b, blockRow·bh + u, blockCol·bw + v, co] (0 past the last row/column).
  const xb = new Float32Array(T * winH * winW * Ci);
  const db = new Float32Array(T * bh * bw * Co);
  let t = 0;
  for (let b = 0; b < B; b++) {
    for (let br = 0; br < nbh; br++) {
      for (let bc = 0; bc < nbw; bc++, t++) {
        const r0 = br * bh * sH - top;
        const c0 = bc * bw * sW - left;
        const j0 = Math.max(0, -c0); // first window column inside the image
        const j1 = Math.min(winW, W - c0); // one past the last
        for (let i = 0; i < winH && j1 > j0; i++) {
          const xr = r0 + i;
          if (xr < 0 || xr >= H) continue;
          const src = ((b * H + xr) * W + c0 + j0) * Ci;
          xb.set(xv.subarray(src, src + (j1 - j0) * Ci), ((t * winH + i) * winW + j0) * Ci);
        }
        const v1 = Math.min(bw, Wo - bc * bw);
        for (let u = 0; u < bh; u++) {
          const yr = br * bh + u;
          if (yr >= Ho) break;
          const src = ((b * Ho + yr) * Wo + bc * bw) * Co;
          db.set(dv.subarray(src, src + v1 * Co), (t * bh + u) * bw * Co);
        }
      }
    }
  }
  return tf.tidy(() => {
    const xt = tf.transpose(tf.tensor4d(xb, [T, winH, winW, Ci]), [3, 1, 2, 0]); // [Ci, winH, winW, T]
    const dt = tf.transpose(tf.tensor4d(db, [T, bh, bw, Co]), [1, 2, 0, 3]); // [bh, bw, T, Co]
    const r = tf.conv2d(xt, dt, 1, 'valid', 'NHWC', [sH, sW]); // [Ci, KH, KW, Co]
    return tf.transpose(r, [1, 2, 0, 3]);
  });
}

/**
 * Picks the faster form. Measured on wasm (CPU ms, min of 7; forward / plain / tiled):
 * 128² 64→64 3×3: 68 / 165 / 136; 64² 128→128: 73 / 148 / 104; 32² 256→256: 70 / 142 / 109;
 * 128² 64→128 3×3/2: 33 / 81 / 66; but 128² 16→16: 6 / 12 / 13 and 128² 3→16: 2 / 5 / 7, where
 * the gathers cost more than the better reduction saves.
 */
export function useTiledFilterGradient(filterShape: readonly number[]): boolean {
  const [, , ci, co] = filterShape as [number, number, number, number];
  return ci >= 32 && co >= 32;
}

export const conv2dBackpropFilterConvKernel: tf.KernelFunc = ({ inputs, attrs }) => {
  const { x, dy } = inputs as tf.Conv2DBackpropFilterInputs;
  const a = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const compose = useTiledFilterGradient(a.filterShape)
    ? conv2dBackpropFilterTiled
    : conv2dBackpropFilterViaConv;
  return compose(asTensor4D(x!, tf.Conv2DBackpropFilter), asTensor4D(dy!, tf.Conv2DBackpropFilter), a);
};
