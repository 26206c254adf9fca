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
import { conv2dSignedPad, rotatedFilter, spreadWithZeros } from './conv-geometry.ts';
import type { ConvInfo, KernelOps, Pair } from './ops.ts';

export function conv2dBackpropInputViaConv<T>(ops: KernelOps<T>, dy: T, filter: T, c: ConvInfo): T {
  const { strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  return ops.tidy(() => {
    const spread = spreadWithZeros(ops, dy, sH, sW); // dy sample (r, c) now sits at (r·sH, c·sW)
    const [, h, w] = ops.shape(spread) as [number, number, number];
    // dx[i] = Σ_k spread[i + top − k]·w[k]: pad so that row i of the output reads rows
    // i .. i+KH−1 of the padded map; the padded map must have H + KH − 1 rows.
    const { top, left } = c.padInfo;
    const amounts = [KH - 1 - top, c.inHeight + top - h, KW - 1 - left, c.inWidth + left - w] as const;
    return conv2dSignedPad(ops, spread, rotatedFilter(ops, filter, true), amounts);
  });
}

/** One axis of the sub-pixel decomposition: which taps serve output phase φ, and where. */
export interface PhaseAxis {
  /** Taps r, r+s, r+2s, … < K serve this phase; `taps` of them (0: the phase gets no gradient). */
  readonly first: number;
  readonly taps: number;
  /** Pad (or crop, if negative) dy by this much before and after, for a 'valid' correlation. */
  readonly before: number;
  readonly after: number;
}

export function phaseAxis(
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
export function phaseFilter(
  w: Float32Array,
  shape: readonly number[],
  ph: PhaseAxis,
  pw: PhaseAxis,
  s: Pair,
): Float32Array {
  const [, kw, ci, co] = shape as [number, number, number, number];
  const out = new Float32Array(ph.taps * pw.taps * ci * co);
  for (let u = 0; u < ph.taps; u++) {
    const kr = ph.first + s[0] * (ph.taps - 1 - u);
    for (let v = 0; v < pw.taps; v++) {
      const kc = pw.first + s[1] * (pw.taps - 1 - v);
      const src = (kr * kw + kc) * ci * co;
      const dst = (u * pw.taps + v) * co * ci;
      for (let i = 0; i < ci; i++)
        for (let j = 0; j < co; j++) out[dst + j * ci + i] = w[src + i * co + j] as number;
    }
  }
  return out;
}

/**
 * Strided Conv2DBackpropInput without multiplying zeros: the rows of dx with the same remainder
 * modulo the stride (a phase) depend on every s-th filter tap only, so dx splits into sH·sW
 * stride-1 correlations of dy with small sub-filters, whose results are interleaved. Same
 * arithmetic as the zero-spread version with s² fewer multiply-adds.
 */
export function conv2dBackpropInputSubPixel<T>(ops: KernelOps<T>, dy: T, filter: T, c: ConvInfo): T {
  const { strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW, inChannels: Ci } = c;
  const [B, Ho, Wo] = ops.shape(dy) as [number, number, number];
  const fShape = ops.shape(filter);
  const co = fShape[3] as number;
  const qh = Math.ceil(c.inHeight / sH); // rows per phase, padded to the longest phase
  const qw = Math.ceil(c.inWidth / sW);
  return ops.tidy(() => {
    const rows: T[] = [];
    for (let fh = 0; fh < sH; fh++) {
      const ph = phaseAxis(fh, KH, sH, c.padInfo.top, qh, Ho);
      const cols: T[] = [];
      for (let fw = 0; fw < sW; fw++) {
        const pw = phaseAxis(fw, KW, sW, c.padInfo.left, qw, Wo);
        if (ph.taps === 0 || pw.taps === 0) {
          cols.push(ops.zeros([B, qh, qw, Ci]));
          continue;
        }
        const sub = ops.fromHost([ph.taps, pw.taps, co, Ci], [filter], ([w]) =>
          phaseFilter(w as Float32Array, fShape, ph, pw, [sH, sW]),
        );
        cols.push(conv2dSignedPad(ops, dy, sub, [ph.before, ph.after, pw.before, pw.after]));
      }
      // [B, qh, qw, sW, Ci] → columns interleaved: [B, qh, qw·sW, Ci]
      rows.push(ops.reshape(ops.stack(cols, 3), [B, qh, qw * sW, Ci]));
    }
    const full = ops.reshape(ops.stack(rows, 2), [B, qh * sH, qw * sW, Ci]);
    if (qh * sH === c.inHeight && qw * sW === c.inWidth) return full;
    return ops.slice(full, [0, 0, 0, 0], [B, c.inHeight, c.inWidth, Ci]);
  });
}

/** Picks the faster form from the measurements in the header comment. */
export function useSubPixel(filterShape: readonly number[], strides: Pair): boolean {
  const [kh, kw, ci, co] = filterShape as [number, number, number, number];
  if (strides[0] === 1 && strides[1] === 1) return false;
  return !(kh === 1 && kw === 1 && ci * co < 64 * 64);
}

/** The wasm Conv2DBackpropInput kernel: dx [B, H, W, Ci] of dy and the filter. */
export function conv2dBackpropInputConv<T>(ops: KernelOps<T>, dy: T, filter: T, c: ConvInfo): T {
  const sub = useSubPixel(ops.shape(filter), [c.strideHeight, c.strideWidth]);
  return (sub ? conv2dBackpropInputSubPixel : conv2dBackpropInputViaConv)(ops, dy, filter, c);
}
