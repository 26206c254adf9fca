// The synthetic "resolution matters" image (synthetic-task.md §1, the 8-bit variant with halved
// amplitudes): a tissue-like grey texture, and in positive images a few small lesions that are
// zero-mean period-2 checkerboards. Every 8 × 8 block of a checkerboard sums to zero, so an 8×
// box-downsampled image loses the lesion (only its soft edge leaves a residual under one grey
// level) while a network at full resolution finds it easily.
//
// Pure typed-array code: a 1024² image takes a fraction of a second and two float32 buffers of its size.

import { fillNormal, mulberry32 } from './random.ts';

/** Amplitudes on the [0, 1] scale (halved from the float recipe so 8-bit storage barely clips). */
export const LESION_TASK = {
  background: 0.5,
  /** Large-scale texture: box blur radius 12 (3 passes, ≈ Gaussian σ 12.5 px), amplitude. */
  largeRadius: 12,
  largeAmplitude: 0.04,
  /** Mid-scale texture: radius 3 (σ ≈ 3.5 px). */
  midRadius: 3,
  midAmplitude: 0.02,
  /** Independent per-pixel noise σ. */
  pixelNoise: 0.025,
  /** Dark round "nuclei" in both classes: one per 1000 px², radius U[1.5, 3], contrast. */
  nucleiPerPixel: 1 / 1000,
  nucleusContrast: -0.05,
  /** Lesion checkerboard amplitude (8× the pixel noise) and radius range in px. */
  lesionAmplitude: 0.2,
  lesionRadius: [4, 8] as const,
  /** Normalisation for the network: (x/255 − 0.5)/0.05, i.e. (v − 0.5)·20. */
  normalization: { mean: [0.5], std: [0.05] },
} as const;

/** The smallest side the lesion placement allows (a centre needs R + 4 px of margin). */
export const MIN_SYNTHETIC_SIDE = 32;

export interface Lesion {
  /** Centre in pixels (continuous; pixel (x, y) has its centre at (x, y)). */
  x: number;
  y: number;
  radius: number;
}

export interface LesionImage {
  /** Grey uint8 pixels, row-major. */
  pixels: Uint8Array;
  height: number;
  width: number;
  lesions: Lesion[];
}

/**
 * The number of lesions of a positive image: 1–3 up to 512² pixels, then scaled with the area
 * (4–12 at 1024², 16–48 at 2048²) so that lesions per pixel stay constant. With a fixed count, large
 * images failed to learn (global max pooling must first see a lesion win; synthetic-task.md §4).
 */
export function lesionCountRange(height: number, width: number): [number, number] {
  const area = (height * width) / (512 * 512);
  if (area <= 1) return [1, 3];
  const lo = Math.max(1, Math.round(area));
  return [lo, 3 * lo];
}

/**
 * Generates one image from its own seed. `lesions: false` draws the same image without adding the
 * lesions (the background is identical), for tests of what downsampling erases.
 */
export function generateLesionImage(
  height: number,
  width: number,
  seed: number,
  positive: boolean,
  options: { lesions?: boolean } = {},
): LesionImage {
  if (height < MIN_SYNTHETIC_SIDE || width < MIN_SYNTHETIC_SIDE) {
    throw new RangeError(
      `synthetic images need sides of at least ${MIN_SYNTHETIC_SIDE} px, got ${height}×${width}`,
    );
  }
  const t = LESION_TASK;
  const rand = mulberry32(seed);
  const n = height * width;
  const acc = new Float32Array(n).fill(t.background);
  const field = new Float32Array(n);
  const scratch = blurScratch(width, height, t.largeRadius);

  for (const [radius, amplitude] of [
    [t.largeRadius, t.largeAmplitude],
    [t.midRadius, t.midAmplitude],
  ] as const) {
    fillNormal(field, rand);
    for (let pass = 0; pass < 3; pass++) boxBlurInPlace(field, height, width, radius, scratch);
    standardise(field);
    for (let i = 0; i < n; i++) acc[i] = (acc[i] as number) + amplitude * (field[i] as number);
  }
  // The per-pixel noise reuses the field buffer.
  fillNormal(field, rand);
  for (let i = 0; i < n; i++) acc[i] = (acc[i] as number) + t.pixelNoise * (field[i] as number);

  const nuclei = Math.round(n * t.nucleiPerPixel);
  for (let k = 0; k < nuclei; k++) {
    const cx = rand() * width;
    const cy = rand() * height;
    const rho = 1.5 + 1.5 * rand();
    stamp(acc, height, width, cx, cy, rho + 1, (d) => t.nucleusContrast * clamp01(rho - d + 0.5));
  }

  const lesions: Lesion[] = [];
  if (positive) {
    const [lo, hi] = lesionCountRange(height, width);
    const count = lo + Math.min(hi - lo, Math.floor(rand() * (hi - lo + 1)));
    const [rMin, rMax] = t.lesionRadius;
    for (let k = 0; k < count; k++) {
      const radius = rMin + (rMax - rMin) * rand();
      const margin = radius + 4;
      const x = margin + rand() * (width - 2 * margin);
      const y = margin + rand() * (height - 2 * margin);
      lesions.push({ x, y, radius });
    }
    if (options.lesions !== false) {
      for (const l of lesions) {
        // Envelope 1 inside R − 1, a linear ramp to 0 at R + 1; sign (−1)^(x+y).
        stamp(acc, height, width, l.x, l.y, l.radius + 2, (d, px, py) => {
          const e = clamp01((l.radius - d) / 2 + 0.5);
          return ((px + py) & 1 ? -1 : 1) * t.lesionAmplitude * e;
        });
      }
    }
  }

  const pixels = new Uint8Array(n);
  // A clamped view stores round(255·v) limited to 0..255 (ties to even).
  const clamped = new Uint8ClampedArray(pixels.buffer);
  for (let i = 0; i < n; i++) clamped[i] = 255 * (acc[i] as number);
  return { pixels, height, width, lesions };
}

/** Adds f(distance, x, y) to the pixels within `reach` of (cx, cy). */
function stamp(
  acc: Float32Array,
  height: number,
  width: number,
  cx: number,
  cy: number,
  reach: number,
  f: (d: number, x: number, y: number) => number,
): void {
  const x0 = Math.max(0, Math.floor(cx - reach));
  const x1 = Math.min(width - 1, Math.ceil(cx + reach));
  const y0 = Math.max(0, Math.floor(cy - reach));
  const y1 = Math.min(height - 1, Math.ceil(cy + reach));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const d = Math.sqrt(dx * dx + dy * dy);
      if (d > reach) continue;
      const i = y * width + x;
      acc[i] = (acc[i] as number) + f(d, x, y);
    }
  }
}

/** Scratch buffers of a blur, reused across passes and images of one size. */
export interface BlurScratch {
  line: Float32Array;
  sums: Float32Array;
  ring: Float32Array;
}

export function blurScratch(width: number, height: number, maxRadius: number): BlurScratch {
  return {
    line: new Float32Array(Math.max(width, height) + 2 * maxRadius + 1),
    sums: new Float32Array(width),
    ring: new Float32Array((maxRadius + 1) * width),
  };
}

/**
 * One pass of a separable box blur of width 2r + 1 with clamped edges, in place. The vertical pass
 * runs along rows (column sums slide down the image) and keeps the last r + 1 original rows in a
 * ring, so it needs no second image-sized buffer and reads memory in order.
 */
export function boxBlurInPlace(
  a: Float32Array,
  height: number,
  width: number,
  r: number,
  s: BlurScratch,
): void {
  const norm = 1 / (2 * r + 1);
  // Rows: copy each row into a padded line with clamped ends, then a running sum.
  const line = s.line;
  for (let y = 0; y < height; y++) {
    const base = y * width;
    const first = a[base] as number;
    const last = a[base + width - 1] as number;
    for (let i = 0; i < r; i++) line[i] = first;
    for (let i = 0; i < width; i++) line[r + i] = a[base + i] as number;
    for (let i = 0; i <= r; i++) line[r + width + i] = last;
    let sum = 0;
    for (let j = 0; j < 2 * r + 1; j++) sum += line[j] as number;
    for (let x = 0; x < width; x++) {
      a[base + x] = sum * norm;
      sum += (line[x + 2 * r + 1] as number) - (line[x] as number);
    }
  }
  // Columns: sums[x] = Σ rows clamp(y − r) .. clamp(y + r) of column x.
  const sums = s.sums;
  const ring = s.ring;
  const slots = r + 1;
  sums.fill(0);
  for (let j = -r; j <= r; j++) {
    const base = Math.min(height - 1, Math.max(0, j)) * width;
    for (let x = 0; x < width; x++) sums[x] = (sums[x] as number) + (a[base + x] as number);
  }
  for (let y = 0; y < height; y++) {
    const base = y * width;
    const slot = (y % slots) * width;
    for (let x = 0; x < width; x++) {
      ring[slot + x] = a[base + x] as number; // the original row y, before it is overwritten
      a[base + x] = (sums[x] as number) * norm;
    }
    if (y === height - 1) break;
    // Slide: add the original row clamp(y + r + 1) (below y, so not yet overwritten) and drop the
    // original row max(0, y − r) (kept in the ring).
    const addBase = Math.min(height - 1, y + r + 1) * width;
    const dropSlot = (Math.max(0, y - r) % slots) * width;
    for (let x = 0; x < width; x++) {
      sums[x] = (sums[x] as number) + (a[addBase + x] as number) - (ring[dropSlot + x] as number);
    }
  }
}

function standardise(a: Float32Array): void {
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i] as number;
    sum += v;
    sq += v * v;
  }
  const mean = sum / a.length;
  const std = Math.sqrt(Math.max(1e-20, sq / a.length - mean * mean));
  for (let i = 0; i < a.length; i++) a[i] = ((a[i] as number) - mean) / std;
}

function clamp01(v: number): number {
  return Math.min(1, Math.max(0, v));
}
