// Area resampling (box filter with fractional edges, as OpenCV's INTER_AREA and Pillow's BOX) of
// uint8 pixels by a factor ≥ 1 per axis. Output pixel j covers source span [j·s, (j+1)·s) and is
// the mean of the source pixels weighted by their overlap with that span. Each output pixel is a
// function of its own span only, computed in the same order whatever region it is read in, so a
// tile equals the same window of the whole resampled image exactly: streamed and conventional
// training see identical pixels. Pure.

/** Source span [first, end) of output pixels [o0, o1) along an axis with scale s. */
export function sourceSpan(o0: number, o1: number, s: number): [number, number] {
  return [Math.floor(o0 * s), Math.ceil(o1 * s)];
}

/**
 * Per output pixel: the first source index it overlaps (relative to `first`) and its weights, in a
 * flat table of `taps` weights per pixel (zero-padded; a zero weight's tap is clamped into the span).
 */
function axisWeights(
  o0: number,
  o1: number,
  s: number,
  first: number,
  span: number,
): { start: Int32Array; taps: number; weights: Float64Array } {
  const n = o1 - o0;
  // Zero-weight taps add exactly nothing, so the count may differ between calls without changing a sum.
  const taps = Math.min(Math.ceil(s) + 1, span);
  const start = new Int32Array(n);
  const weights = new Float64Array(n * taps);
  for (let j = 0; j < n; j++) {
    const a = (o0 + j) * s;
    const b = (o0 + j + 1) * s;
    const i0 = Math.floor(a);
    const i1 = Math.ceil(b);
    // Clamped so that every tap reads inside the span; the shift moves the weights along with it.
    const s0 = Math.min(i0 - first, span - taps);
    start[j] = Math.max(0, s0);
    for (let i = i0; i < i1; i++) {
      weights[j * taps + (i - first - (start[j] as number))] = (Math.min(b, i + 1) - Math.max(a, i)) / s;
    }
  }
  return { start, taps, weights };
}

/**
 * Resamples `src` (rows × cols × channels, the source span of the output rectangle as given by
 * sourceSpan) to the output rectangle rows [oy0, oy1) × cols [ox0, ox1).
 */
export function areaResample(
  src: Uint8Array,
  srcRows: number,
  srcCols: number,
  channels: number,
  oy0: number,
  oy1: number,
  ox0: number,
  ox1: number,
  scaleY: number,
  scaleX: number,
): Uint8Array {
  const outRows = oy1 - oy0;
  const outCols = ox1 - ox0;
  if (scaleX === 1 && scaleY === 1) return src.slice(0, outRows * outCols * channels);
  const [firstY] = sourceSpan(oy0, oy1, scaleY);
  const [firstX] = sourceSpan(ox0, ox1, scaleX);
  const wx = axisWeights(ox0, ox1, scaleX, firstX, srcCols);
  const wy = axisWeights(oy0, oy1, scaleY, firstY, srcRows);
  // Horizontal pass into float64 (no rounding between passes), then vertical, then one rounding.
  // Every output pixel sums its taps in the same order wherever the region starts.
  const rowLen = outCols * channels;
  const mid = new Float64Array(srcRows * rowLen);
  const tx = wx.taps;
  for (let r = 0; r < srcRows; r++) {
    const rowBase = r * srcCols * channels;
    for (let j = 0; j < outCols; j++) {
      const s0 = rowBase + (wx.start[j] as number) * channels;
      const w0 = j * tx;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < tx; k++)
          acc += (wx.weights[w0 + k] as number) * (src[s0 + k * channels + c] as number);
        mid[r * rowLen + j * channels + c] = acc;
      }
    }
  }
  const out = new Uint8Array(outRows * rowLen);
  const acc = new Float64Array(rowLen);
  const ty = wy.taps;
  for (let i = 0; i < outRows; i++) {
    acc.fill(0);
    for (let k = 0; k < ty; k++) {
      const w = wy.weights[i * ty + k] as number;
      const off = ((wy.start[i] as number) + k) * rowLen;
      for (let q = 0; q < rowLen; q++) acc[q] = (acc[q] as number) + w * (mid[off + q] as number);
    }
    for (let q = 0; q < rowLen; q++)
      out[i * rowLen + q] = Math.min(255, Math.max(0, Math.round(acc[q] as number)));
  }
  return out;
}
