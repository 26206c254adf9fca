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

/** Per output pixel: the source indices it overlaps (relative to `first`) and their weights. */
function axisWeights(
  o0: number,
  o1: number,
  s: number,
  first: number,
): { start: Int32Array; weights: Float64Array[] } {
  const n = o1 - o0;
  const start = new Int32Array(n);
  const weights: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const a = (o0 + j) * s;
    const b = (o0 + j + 1) * s;
    const i0 = Math.floor(a);
    const i1 = Math.ceil(b);
    const w = new Float64Array(i1 - i0);
    for (let i = i0; i < i1; i++) w[i - i0] = (Math.min(b, i + 1) - Math.max(a, i)) / s;
    start[j] = i0 - first;
    weights.push(w);
  }
  return { start, weights };
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
  const wx = axisWeights(ox0, ox1, scaleX, firstX);
  const wy = axisWeights(oy0, oy1, scaleY, firstY);
  // Horizontal pass into float64 (no rounding between passes), then vertical, then one rounding.
  const mid = new Float64Array(srcRows * outCols * channels);
  for (let r = 0; r < srcRows; r++) {
    const rowBase = r * srcCols * channels;
    for (let j = 0; j < outCols; j++) {
      const w = wx.weights[j] as Float64Array;
      const s0 = wx.start[j] as number;
      for (let c = 0; c < channels; c++) {
        let acc = 0;
        for (let k = 0; k < w.length; k++)
          acc += (w[k] as number) * (src[rowBase + (s0 + k) * channels + c] as number);
        mid[(r * outCols + j) * channels + c] = acc;
      }
    }
  }
  const out = new Uint8Array(outRows * outCols * channels);
  const rowLen = outCols * channels;
  for (let i = 0; i < outRows; i++) {
    const w = wy.weights[i] as Float64Array;
    const s0 = wy.start[i] as number;
    for (let q = 0; q < rowLen; q++) {
      let acc = 0;
      for (let k = 0; k < w.length; k++) acc += (w[k] as number) * (mid[(s0 + k) * rowLen + q] as number);
      out[i * rowLen + q] = Math.min(255, Math.max(0, Math.round(acc)));
    }
  }
  return out;
}
