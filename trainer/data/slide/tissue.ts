// Tissue detection on a low-resolution RGB thumbnail, as the pathology pipelines do it (CLAM,
// HistoQC, Otsu on HSV saturation): glass and background are unsaturated, stained tissue is not.
// Steps: saturation S = (max − min)/max per pixel → Otsu's threshold on S (never below
// MIN_SATURATION, so an empty slide does not turn its noise into tissue) → closing (bridges gaps
// between nuclei and thin cracks) → holes filled → specks removed (components below 0.05% of the
// thumbnail or 1% of the largest component: dust is small against the tissue, whatever the slide's
// size) → the bounding box of what remains. Pure; masks are row-major uint8 0/1.

export interface Box {
  /** Inclusive start, exclusive end. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** The thumbnail for tissue detection: the coarsest level with a long side of at least this… */
export const THUMBNAIL_MIN_SIDE = 512;
/** …box-downsampled to at most this. */
export const THUMBNAIL_MAX_SIDE = 1024;
/** Source pixels per read while building the thumbnail (≈ 16 MB of ARGB). */
export const THUMBNAIL_BAND_PIXELS = 1 << 22;
/**
 * The most memory opening a slide takes before its tiles are read: one band as ARGB and as RGB,
 * the thumbnail and its mask (what opening the next slide ahead holds).
 */
export const SLIDE_OPEN_BYTES = THUMBNAIL_BAND_PIXELS * (4 + 3) + THUMBNAIL_MAX_SIDE ** 2 * (3 + 1);

/** An RGB thumbnail of a slide read from one level. */
export interface Thumbnail {
  rgb: Uint8Array;
  width: number;
  height: number;
  level: number;
  /** Level-0 pixels per thumbnail pixel. */
  downsampleX: number;
  downsampleY: number;
}

export interface TissueOptions {
  /** Closing radius in thumbnail pixels (default 2). */
  closeRadius?: number;
  /** Components smaller than this fraction of the thumbnail are specks (default 0.0005). */
  minAreaFraction?: number;
  /** Components smaller than this fraction of the largest one are specks (default 0.01). */
  minRelativeArea?: number;
}

export interface TissueMask {
  mask: Uint8Array;
  width: number;
  height: number;
  /** Saturation threshold (0–255) Otsu chose, after the floor. */
  threshold: number;
  /** Bounding box of the tissue in thumbnail pixels; undefined when no tissue was found. */
  box?: Box;
  /** Tissue pixels in the mask. */
  area: number;
}

/** Saturation below this (of 255) is never tissue: about 8%, above the noise of blank glass. */
export const MIN_SATURATION = 20;

/** HSV saturation (max − min)/max of RGB pixels, scaled to 0–255. */
export function saturation(rgb: Uint8Array, pixels: number): Uint8Array {
  const s = new Uint8Array(pixels);
  for (let p = 0; p < pixels; p++) {
    const r = rgb[p * 3] as number;
    const g = rgb[p * 3 + 1] as number;
    const b = rgb[p * 3 + 2] as number;
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    s[p] = max === 0 ? 0 : Math.round(((max - min) * 255) / max);
  }
  return s;
}

/** Otsu's threshold of 8-bit values: t maximising the between-class variance of {< t} and {≥ t}. */
export function otsuThreshold(values: Uint8Array): number {
  const hist = new Float64Array(256);
  for (const v of values) hist[v] = (hist[v] as number) + 1;
  const total = values.length;
  let sumAll = 0;
  for (let i = 0; i < 256; i++) sumAll += i * (hist[i] as number);
  let best = 0;
  let bestT = 0;
  let wB = 0;
  let sumB = 0;
  for (let t = 1; t < 256; t++) {
    wB += hist[t - 1] as number;
    sumB += (t - 1) * (hist[t - 1] as number);
    const wF = total - wB;
    if (wB === 0 || wF === 0) continue;
    const mB = sumB / wB;
    const mF = (sumAll - sumB) / wF;
    const between = wB * wF * (mB - mF) ** 2;
    if (between > best) {
      best = between;
      bestT = t;
    }
  }
  return bestT;
}

/** Summed-area table with a zero row and column: sat[(y)(w+1)+x] = sum of mask[<y][<x]. */
function summedArea(mask: Uint8Array, w: number, h: number): Float64Array {
  const sat = new Float64Array((w + 1) * (h + 1));
  for (let y = 0; y < h; y++) {
    let row = 0;
    for (let x = 0; x < w; x++) {
      row += mask[y * w + x] as number;
      sat[(y + 1) * (w + 1) + x + 1] = (sat[y * (w + 1) + x + 1] as number) + row;
    }
  }
  return sat;
}

function rectSum(sat: Float64Array, w: number, x0: number, y0: number, x1: number, y1: number): number {
  const W = w + 1;
  return (
    (sat[y1 * W + x1] as number) -
    (sat[y0 * W + x1] as number) -
    (sat[y1 * W + x0] as number) +
    (sat[y0 * W + x0] as number)
  );
}

/** Dilation (any set pixel in the (2r+1)² square) or erosion (all set; outside counts as set). */
function morph(mask: Uint8Array, w: number, h: number, r: number, op: 'dilate' | 'erode'): Uint8Array {
  const sat = summedArea(mask, w, h);
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const x0 = Math.max(0, x - r);
      const y0 = Math.max(0, y - r);
      const x1 = Math.min(w, x + r + 1);
      const y1 = Math.min(h, y + r + 1);
      const s = rectSum(sat, w, x0, y0, x1, y1);
      out[y * w + x] = op === 'dilate' ? (s > 0 ? 1 : 0) : s === (x1 - x0) * (y1 - y0) ? 1 : 0;
    }
  }
  return out;
}

/** Labels 4-connected components of `value`; calls visit with each component's pixel list. */
function components(
  mask: Uint8Array,
  w: number,
  h: number,
  value: number,
  visit: (pixels: number[], touchesBorder: boolean) => void,
): void {
  const seen = new Uint8Array(w * h);
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    if (seen[start] || mask[start] !== value) continue;
    const pixels: number[] = [];
    let border = false;
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop() as number;
      pixels.push(p);
      const x = p % w;
      const y = (p - x) / w;
      if (x === 0 || y === 0 || x === w - 1 || y === h - 1) border = true;
      const next = [x > 0 ? p - 1 : -1, x < w - 1 ? p + 1 : -1, y > 0 ? p - w : -1, y < h - 1 ? p + w : -1];
      for (const q of next) {
        if (q >= 0 && !seen[q] && mask[q] === value) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
    visit(pixels, border);
  }
}

/** The tissue mask of an RGB thumbnail (width × height × 3). */
export function detectTissue(
  rgb: Uint8Array,
  width: number,
  height: number,
  o: TissueOptions = {},
): TissueMask {
  const n = width * height;
  const s = saturation(rgb, n);
  const threshold = Math.max(MIN_SATURATION, otsuThreshold(s));
  let mask: Uint8Array = new Uint8Array(n);
  for (let p = 0; p < n; p++) mask[p] = (s[p] as number) >= threshold ? 1 : 0;
  const r = o.closeRadius ?? 2;
  if (r > 0) mask = morph(morph(mask, width, height, r, 'dilate'), width, height, r, 'erode');
  // Holes: background components that do not reach the border.
  components(mask, width, height, 0, (pixels, border) => {
    if (!border) for (const p of pixels) mask[p] = 1;
  });
  const pieces: number[][] = [];
  components(mask, width, height, 1, (pixels) => pieces.push(pixels));
  const largest = Math.max(0, ...pieces.map((p) => p.length));
  const minArea = Math.max(1, (o.minAreaFraction ?? 0.0005) * n, (o.minRelativeArea ?? 0.01) * largest);
  for (const piece of pieces) if (piece.length < minArea) for (const p of piece) mask[p] = 0;
  let area = 0;
  const box: Box = { x0: width, y0: height, x1: 0, y1: 0 };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      area++;
      box.x0 = Math.min(box.x0, x);
      box.y0 = Math.min(box.y0, y);
      box.x1 = Math.max(box.x1, x + 1);
      box.y1 = Math.max(box.y1, y + 1);
    }
  }
  return { mask, width, height, threshold, area, ...(area > 0 ? { box } : {}) };
}

/**
 * The top-left corner of the `winW` × `winH` window (mask pixels, at least 1) inside `within` that
 * holds the most tissue; ties go to the window nearest the centre of `within`. Sizes may exceed
 * `within` along an axis: that axis is centred.
 */
export function densestWindow(
  t: TissueMask,
  within: Box,
  winW: number,
  winH: number,
): { x: number; y: number } {
  const sat = summedArea(t.mask, t.width, t.height);
  const axis = (lo: number, hi: number, size: number): number[] => {
    if (size >= hi - lo) return [Math.round((lo + hi - size) / 2)];
    const out: number[] = [];
    for (let v = lo; v + size <= hi; v++) out.push(v);
    return out;
  };
  const ww = Math.max(1, Math.round(winW));
  const wh = Math.max(1, Math.round(winH));
  const cx = (within.x0 + within.x1 - ww) / 2;
  const cy = (within.y0 + within.y1 - wh) / 2;
  let best = { x: Math.round(cx), y: Math.round(cy) };
  let bestSum = -1;
  let bestDist = Number.POSITIVE_INFINITY;
  for (const y of axis(within.y0, within.y1, wh)) {
    for (const x of axis(within.x0, within.x1, ww)) {
      const cl = (v: number, hi: number): number => Math.min(hi, Math.max(0, v));
      const s = rectSum(
        sat,
        t.width,
        cl(x, t.width),
        cl(y, t.height),
        cl(x + ww, t.width),
        cl(y + wh, t.height),
      );
      const d = (x - cx) ** 2 + (y - cy) ** 2;
      if (s > bestSum || (s === bestSum && d < bestDist)) {
        best = { x, y };
        bestSum = s;
        bestDist = d;
      }
    }
  }
  return best;
}
