// Conv2DBackpropInput composed from ordinary convolutions, for the wasm backend: its stock
// kernel is a naive loop (~2 GFLOP/s) while Conv2D runs on XNNPACK (~20 GFLOP/s). dx is the
// correlation of dy with the filter rotated by 180° and its channel axes swapped. Two forms:
// - spread: dy spread out with s−1 zeros between samples, then one stride-1 conv. Stride 1 is
//   just this conv. For stride s it multiplies s² times more zeros than needed.
// - sub-pixel: for stride > 1, one small conv per output phase (see below), no zeros.
// Measured on wasm (CPU ms, min of 7; fwd / spread / sub-pixel): 128² 64→64 3×3/2: 16 / 78 / 24;
// 64² 128→128 3×3/2: 17 / 71 / 22; 256² 3→64 7×7/2: 20 / 192 / 57; 256² 16→16 3×3/2: 5 / 22 / 17;
// 128² 64→128 1×1/2: 5 / 19 / 15; but 256² 16→32 1×1/2: 3 / 8 / 12, where interleaving the
// mostly-zero phases costs more than the zeros. Stock kernel at 256² 16→16 3×3/2: ~100.
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

/** One axis of the sub-pixel decomposition: which taps serve output phase φ, and where. */
interface PhaseAxis {
  /** Taps r, r+s, r+2s, … < K serve this phase; `taps` of them (0: the phase gets no gradient). */
  first: number;
  taps: number;
  /** Pad (or crop, if negative) dy by this much before and after, for a 'valid' correlation. */
  before: number;
  after: number;
}

function phaseAxis(
  phase: number,
  k: number,
  s: number,
  pad: number,
  outLen: number,
  dyLen: number,
): PhaseAxis {
  const first = (phase + pad) % s;
  const taps = first < k ? Math.ceil((k - first) / s) : 0;
  const shift = Math.floor((phase + pad) / s);
  // dx[s·q + φ] = Σ_t dy[q + shift − t]·w[first + s·t], a correlation of dy with the reversed taps.
  const before = taps - 1 - shift;
  return { first, taps, before, after: outLen + taps - 1 - before - dyLen };
}

/** The sub-filter of one phase: taps first, first+s, … reversed in space, channels swapped. */
function phaseFilter(
  w: Float32Array,
  shape: readonly number[],
  ph: PhaseAxis,
  pw: PhaseAxis,
  sH: number,
  sW: number,
) {
  const [, kw, ci, co] = shape as [number, number, number, number];
  const out = new Float32Array(ph.taps * pw.taps * ci * co);
  for (let u = 0; u < ph.taps; u++) {
    const kr = ph.first + sH * (ph.taps - 1 - u);
    for (let v = 0; v < pw.taps; v++) {
      const kc = pw.first + sW * (pw.taps - 1 - v);
      const src = (kr * kw + kc) * ci * co;
      const dst = (u * pw.taps + v) * co * ci;
      for (let i = 0; i < ci; i++)
        for (let j = 0; j < co; j++) out[dst + j * ci + i] = w[src + i * co + j] as number;
    }
  }
  return tf.tensor4d(out, [ph.taps, pw.taps, co, ci]);
}

/**
 * Strided Conv2DBackpropInput without multiplying zeros: the rows of dx with the same remainder
 * modulo the stride (a phase) depend on every s-th filter tap only, so dx splits into sH·sW
 * stride-1 correlations of dy with small sub-filters, whose results are interleaved. Same
 * arithmetic as the zero-spread version with s² fewer multiply-adds.
 */
export function conv2dBackpropInputSubPixel(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  attrs: tf.Conv2DBackpropInputAttrs,
): tf.Tensor4D {
  const c = convInfo(tf.Conv2DBackpropInput, attrs.inputShape, filter.shape, attrs);
  const { strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW, inChannels: Ci } = c;
  const [B, Ho, Wo] = dy.shape;
  const qh = Math.ceil(c.inHeight / sH); // rows per phase, padded to the longest phase
  const qw = Math.ceil(c.inWidth / sW);
  const w = filter.dataSync() as Float32Array;
  return tf.tidy((): tf.Tensor4D => {
    const rows: tf.Tensor4D[] = [];
    for (let fh = 0; fh < sH; fh++) {
      const ph = phaseAxis(fh, KH, sH, c.padInfo.top, qh, Ho);
      const cols: tf.Tensor4D[] = [];
      for (let fw = 0; fw < sW; fw++) {
        const pw = phaseAxis(fw, KW, sW, c.padInfo.left, qw, Wo);
        if (ph.taps === 0 || pw.taps === 0) {
          cols.push(tf.zeros([B, qh, qw, Ci]));
          continue;
        }
        const sub = phaseFilter(w, filter.shape, ph, pw, sH, sW);
        cols.push(conv2dSignedPad(dy, sub, [ph.before, ph.after, pw.before, pw.after]));
      }
      // [B, qh, qw, sW, Ci] → columns interleaved: [B, qh, qw·sW, Ci]
      rows.push(tf.reshape(tf.stack(cols, 3), [B, qh, qw * sW, Ci]) as tf.Tensor4D);
    }
    const full = tf.reshape(tf.stack(rows, 2), [B, qh * sH, qw * sW, Ci]) as tf.Tensor4D;
    if (full.shape[1] === c.inHeight && full.shape[2] === c.inWidth) return full;
    return tf.slice(full, [0, 0, 0, 0], [B, c.inHeight, c.inWidth, Ci]) as tf.Tensor4D;
  });
}

/** Picks the faster form from the measurements in the header comment. */
export function useSubPixel(filterShape: readonly number[], strides: [number, number]): boolean {
  const [kh, kw, ci, co] = filterShape as [number, number, number, number];
  if (strides[0] === 1 && strides[1] === 1) return false;
  return !(kh === 1 && kw === 1 && ci * co < 64 * 64);
}

export const conv2dBackpropInputConvKernel: tf.KernelFunc = ({ inputs, attrs }) => {
  const { dy, filter } = inputs as tf.Conv2DBackpropInputInputs;
  const a = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const s: [number, number] = typeof a.strides === 'number' ? [a.strides, a.strides] : a.strides;
  const f = asTensor4D(filter!, tf.Conv2DBackpropInput);
  const compose = useSubPixel(f.shape, s) ? conv2dBackpropInputSubPixel : conv2dBackpropInputViaConv;
  return compose(asTensor4D(dy!, tf.Conv2DBackpropInput), f, a);
};
