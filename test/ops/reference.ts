// Naive float64 reference computations for convolutions, pooling and pointwise ops, written
// independently of TensorFlow.js: plain nested loops over NHWC arrays. Inputs are arrays of
// float32-representable numbers, so the only difference left against a float32 kernel is its
// rounding. Used by test/backend (kernels) and test/ops (ops and their gradients).

import { mulberry32 } from '../../trainer/data/random.ts';

export type Shape4 = [number, number, number, number];

export interface Arr4 {
  shape: Shape4;
  data: Float64Array;
}

export function zeros4(shape: Shape4): Arr4 {
  return { shape, data: new Float64Array(shape[0] * shape[1] * shape[2] * shape[3]) };
}

/** A seeded generator (mulberry32), so every case can be replayed from its seed. */
export const rng = mulberry32;

/** Uniform values in [-1, 1), rounded to float32 so tfjs and the reference see the same numbers. */
export function randomArr4(shape: Shape4, next: () => number): Arr4 {
  const a = zeros4(shape);
  for (let i = 0; i < a.data.length; i++) a.data[i] = Math.fround(next() * 2 - 1);
  return a;
}

const idx = (s: Shape4, a: number, b: number, c: number, d: number) => ((a * s[1] + b) * s[2] + c) * s[3] + d;

export interface ConvGeometry {
  stride: [number, number];
  dilation: [number, number];
  /** [top, bottom, left, right] */
  pad: [number, number, number, number];
  groups: number;
}

export function convOutShape(x: Shape4, w: Shape4, g: ConvGeometry): Shape4 {
  const [n, h, wd] = x;
  const [kh, kw, , co] = w;
  const ho = Math.floor((h + g.pad[0] + g.pad[1] - ((kh - 1) * g.dilation[0] + 1)) / g.stride[0]) + 1;
  const wo = Math.floor((wd + g.pad[2] + g.pad[3] - ((kw - 1) * g.dilation[1] + 1)) / g.stride[1]) + 1;
  return [n, ho, wo, co];
}

/**
 * Visits every multiply-add of a grouped convolution with weights [kh, kw, cin/groups, cout]:
 * fn(xIndex, wIndex, yIndex). Zero padding is implicit (out-of-range taps are skipped).
 */
function forEachTap(
  x: Shape4,
  w: Shape4,
  g: ConvGeometry,
  fn: (xi: number, wi: number, yi: number) => void,
): void {
  const [n, h, wd, cin] = x;
  const [kh, kw, cpg, cout] = w;
  const y = convOutShape(x, w, g);
  const opg = cout / g.groups;
  if (cpg * g.groups !== cin) throw new Error('reference conv: channel mismatch');
  for (let b = 0; b < n; b++)
    for (let yr = 0; yr < y[1]; yr++)
      for (let yc = 0; yc < y[2]; yc++)
        for (let kr = 0; kr < kh; kr++) {
          const xr = yr * g.stride[0] + kr * g.dilation[0] - g.pad[0];
          if (xr < 0 || xr >= h) continue;
          for (let kc = 0; kc < kw; kc++) {
            const xc = yc * g.stride[1] + kc * g.dilation[1] - g.pad[2];
            if (xc < 0 || xc >= wd) continue;
            for (let co = 0; co < cout; co++) {
              const grp = Math.floor(co / opg);
              for (let ci = 0; ci < cpg; ci++) {
                fn(idx(x, b, xr, xc, grp * cpg + ci), idx(w, kr, kc, ci, co), idx(y, b, yr, yc, co));
              }
            }
          }
        }
}

export function convRef(x: Arr4, w: Arr4, g: ConvGeometry, bias?: Float64Array): Arr4 {
  const y = zeros4(convOutShape(x.shape, w.shape, g));
  forEachTap(x.shape, w.shape, g, (xi, wi, yi) => {
    y.data[yi]! += x.data[xi]! * w.data[wi]!;
  });
  if (bias) for (let i = 0; i < y.data.length; i++) y.data[i]! += bias[i % y.shape[3]]!;
  return y;
}

/** Gradients of sum(conv(x, w) · dy) with respect to x and w. */
export function convGradRef(x: Arr4, w: Arr4, dy: Arr4, g: ConvGeometry): { dx: Arr4; dw: Arr4 } {
  const dx = zeros4(x.shape);
  const dw = zeros4(w.shape);
  forEachTap(x.shape, w.shape, g, (xi, wi, yi) => {
    dx.data[xi]! += w.data[wi]! * dy.data[yi]!;
    dw.data[wi]! += x.data[xi]! * dy.data[yi]!;
  });
  return { dx, dw };
}

/** Sum over N, H, W of an NHWC array: the gradient of a per-channel bias or shift. */
export function channelSums(a: Arr4): Float64Array {
  const c = a.shape[3];
  const s = new Float64Array(c);
  for (let i = 0; i < a.data.length; i++) s[i % c]! += a.data[i]!;
  return s;
}

export interface PoolGeometry {
  kernel: [number, number];
  stride: [number, number];
  pad: [number, number, number, number];
}

export function poolOutShape(x: Shape4, p: PoolGeometry): Shape4 {
  const ho = Math.floor((x[1] + p.pad[0] + p.pad[1] - p.kernel[0]) / p.stride[0]) + 1;
  const wo = Math.floor((x[2] + p.pad[2] + p.pad[3] - p.kernel[1]) / p.stride[1]) + 1;
  return [x[0], ho, wo, x[3]];
}

/**
 * Max pool (padded cells never win; the first maximum in row-major window order wins ties, as
 * in PyTorch) and average pool with count_include_pad = true. Returns y and, given dy, dx.
 */
export function poolRef(kind: 'max' | 'avg', x: Arr4, p: PoolGeometry, dy?: Arr4): { y: Arr4; dx: Arr4 } {
  const ys = poolOutShape(x.shape, p);
  const y = zeros4(ys);
  const dx = zeros4(x.shape);
  const [n, h, wd, c] = x.shape;
  const area = p.kernel[0] * p.kernel[1];
  for (let b = 0; b < n; b++)
    for (let yr = 0; yr < ys[1]; yr++)
      for (let yc = 0; yc < ys[2]; yc++)
        for (let ch = 0; ch < c; ch++) {
          let best = Number.NEGATIVE_INFINITY;
          let bestAt = -1;
          let sum = 0;
          const cells: number[] = [];
          for (let kr = 0; kr < p.kernel[0]; kr++) {
            const xr = yr * p.stride[0] + kr - p.pad[0];
            if (xr < 0 || xr >= h) continue;
            for (let kc = 0; kc < p.kernel[1]; kc++) {
              const xc = yc * p.stride[1] + kc - p.pad[2];
              if (xc < 0 || xc >= wd) continue;
              const xi = idx(x.shape, b, xr, xc, ch);
              const v = x.data[xi]!;
              cells.push(xi);
              sum += v;
              if (v > best) {
                best = v;
                bestAt = xi;
              }
            }
          }
          const yi = idx(ys, b, yr, yc, ch);
          y.data[yi] = kind === 'max' ? best : sum / area;
          if (dy) {
            const g = dy.data[yi]!;
            if (kind === 'max') dx.data[bestAt]! += g;
            else for (const xi of cells) dx.data[xi]! += g / area;
          }
        }
  return { y, dx };
}

/** Largest absolute difference, and the largest absolute reference value. */
export function compare(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
): { maxDiff: number; maxRef: number } {
  if (actual.length !== expected.length) {
    throw new Error(`length mismatch: actual ${actual.length}, expected ${expected.length}`);
  }
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    const d = Math.abs(a - e);
    if (Number.isNaN(d)) return { maxDiff: Number.NaN, maxRef: Number.NaN }; // fails every tolerance
    maxDiff = Math.max(maxDiff, d);
    maxRef = Math.max(maxRef, Math.abs(e));
  }
  return { maxDiff, maxRef };
}

/** Relative tolerance of the suite: float32 rounding, 1e-5 of the largest reference magnitude. */
export const REL_TOL = 1e-5;

export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  relTol = REL_TOL,
): void {
  const { maxDiff, maxRef } = compare(actual, expected);
  const allowed = relTol * Math.max(maxRef, 1e-30);
  if (!(maxDiff <= allowed)) {
    throw new Error(
      `${what}: max |diff| ${maxDiff.toExponential(3)} > ${relTol}·max|ref| = ${allowed.toExponential(3)}`,
    );
  }
}
