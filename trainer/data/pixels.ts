// Pixel arithmetic on uint8 buffers (HWC): channel conversion, normalisation to float32 with the
// colour jitter, and box downsampling. Pure functions; every one is pointwise or block-local, so a
// region gives the same values as the same window of the whole image.

import type { ColorJitter } from './augment.ts';

/** Normalisation x → (x/255 − mean[c]) / std[c], on the [0, 1] scale as in `spec.data.normalization`. */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

/** How source channels become the requested ones. */
export type ChannelConversion = 'none' | 'grey-to-rgb' | 'rgb-to-grey' | 'drop-alpha' | 'grey-alpha-to-rgb';

/**
 * The conversion from `from` source channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) to `to` (1 or 3),
 * or undefined when there is none. Alpha is dropped (image files for training are opaque; a
 * transparent background would need a compositing colour that the manifest does not give).
 */
export function channelConversion(from: number, to: number): ChannelConversion | undefined {
  if (to !== 1 && to !== 3) return undefined;
  if (from === to) return 'none';
  if (from === 1 && to === 3) return 'grey-to-rgb';
  if (from === 2) return to === 1 ? 'drop-alpha' : 'grey-alpha-to-rgb';
  if (from === 4 && to === 3) return 'drop-alpha';
  if ((from === 3 || from === 4) && to === 1) return 'rgb-to-grey';
  return undefined;
}

/** ITU-R BT.601 luma, as PIL's 'L' conversion. */
function luma(r: number, g: number, b: number): number {
  return 0.299 * r + 0.587 * g + 0.114 * b;
}

/** Converts HWC uint8 pixels from `from` to `to` channels. Returns the input when nothing changes. */
export function convertChannels(src: Uint8Array, pixels: number, from: number, to: number): Uint8Array {
  const conv = channelConversion(from, to);
  if (conv === undefined) throw new Error(`cannot convert ${from} channels to ${to}`);
  if (conv === 'none') return src;
  const dst = new Uint8Array(pixels * to);
  for (let p = 0; p < pixels; p++) {
    const s = p * from;
    if (to === 3) {
      const colour = from >= 3;
      dst[p * 3] = src[s] as number;
      dst[p * 3 + 1] = src[colour ? s + 1 : s] as number;
      dst[p * 3 + 2] = src[colour ? s + 2 : s] as number;
    } else if (from >= 3) {
      dst[p] = Math.round(luma(src[s] as number, src[s + 1] as number, src[s + 2] as number));
    } else {
      dst[p] = src[s] as number;
    }
  }
  return dst;
}

/**
 * Normalises uint8 HWC pixels to float32: v = x/255, then the jitter (if any) clipped to [0, 1], then
 * (v − mean[c]) / std[c]. Without saturation jitter it is a 256-entry table per channel.
 */
export function normalizePixels(
  src: Uint8Array,
  channels: number,
  norm: Normalization,
  jitter?: ColorJitter,
): Float32Array {
  const out = new Float32Array(src.length);
  const bc = (v: number): number => (jitter ? (v * jitter.brightness - 0.5) * jitter.contrast + 0.5 : v);
  const sat =
    channels === 3 && jitter?.saturation !== undefined && jitter.saturation !== 1 ? jitter.saturation : 1;
  if (sat === 1) {
    const tables = Array.from({ length: channels }, (_, c) => {
      const t = new Float32Array(256);
      const mean = norm.mean[c] ?? 0;
      const std = norm.std[c] ?? 1;
      for (let x = 0; x < 256; x++) {
        const v = jitter ? clip01(bc(x / 255)) : x / 255;
        t[x] = (v - mean) / std;
      }
      return t;
    });
    // Unrolled per channel count: the generic loop is several times slower in V8.
    const n = src.length;
    if (channels === 1) {
      const t0 = tables[0] as Float32Array;
      for (let i = 0; i < n; i++) out[i] = t0[src[i] as number] as number;
    } else if (channels === 3) {
      const [t0, t1, t2] = tables as [Float32Array, Float32Array, Float32Array];
      for (let i = 0; i < n; i += 3) {
        out[i] = t0[src[i] as number] as number;
        out[i + 1] = t1[src[i + 1] as number] as number;
        out[i + 2] = t2[src[i + 2] as number] as number;
      }
    } else {
      for (let i = 0; i < n; i += channels) {
        for (let c = 0; c < channels; c++)
          out[i + c] = (tables[c] as Float32Array)[src[i + c] as number] as number;
      }
    }
    return out;
  }
  const [m0, m1, m2] = [norm.mean[0] ?? 0, norm.mean[1] ?? 0, norm.mean[2] ?? 0];
  const [s0, s1, s2] = [norm.std[0] ?? 1, norm.std[1] ?? 1, norm.std[2] ?? 1];
  for (let i = 0; i < src.length; i += 3) {
    const r = bc((src[i] as number) / 255);
    const g = bc((src[i + 1] as number) / 255);
    const b = bc((src[i + 2] as number) / 255);
    const y = luma(r, g, b);
    out[i] = (clip01(y + (r - y) * sat) - m0) / s0;
    out[i + 1] = (clip01(y + (g - y) * sat) - m1) / s1;
    out[i + 2] = (clip01(y + (b - y) * sat) - m2) / s2;
  }
  return out;
}

function clip01(v: number): number {
  return Math.min(1, Math.max(0, v));
}

/**
 * Box-downsamples HWC uint8 pixels by `factor`: each output pixel is the rounded mean of a
 * factor × factor block (blocks at the right and bottom edges may be smaller and are averaged over
 * the pixels they hold). Output size ceil(h/f) × ceil(w/f).
 */
export function boxDownsample(
  src: Uint8Array,
  height: number,
  width: number,
  channels: number,
  factor: number,
): Uint8Array {
  const oh = Math.ceil(height / factor);
  const ow = Math.ceil(width / factor);
  const sums = new Float64Array(ow * channels);
  const counts = new Float64Array(ow);
  const out = new Uint8Array(oh * ow * channels);
  for (let or = 0; or < oh; or++) {
    sums.fill(0);
    counts.fill(0);
    const r1 = Math.min(height, (or + 1) * factor);
    for (let r = or * factor; r < r1; r++) {
      let s = r * width * channels;
      for (let c = 0; c < width; c++) {
        const oc = (c / factor) | 0;
        counts[oc] = (counts[oc] as number) + 1;
        for (let k = 0; k < channels; k++)
          sums[oc * channels + k] = (sums[oc * channels + k] as number) + (src[s++] as number);
      }
    }
    for (let oc = 0; oc < ow; oc++) {
      for (let k = 0; k < channels; k++) {
        out[(or * ow + oc) * channels + k] = Math.round(
          (sums[oc * channels + k] as number) / (counts[oc] as number),
        );
      }
    }
  }
  return out;
}
