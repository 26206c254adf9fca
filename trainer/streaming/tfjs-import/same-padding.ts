// Keras/TF padding modes as explicit padding. TF 'same' pads, per axis, a total of
// max((⌈n/s⌉ − 1)·s + k − n, 0) with ⌊total/2⌋ before and the rest after (k the effective kernel).
// With r = n mod s that is max(k − s, 0) when r = 0 and max(k − r, 0) otherwise, so the fixed
// explicit padding max(k − s, 0) is exact for stride 1 always, and for stride s > 1 whenever the
// layer's input length is a multiple of s or the window fits in the remainder (k ≤ r: a 1×1
// kernel pads nothing at every length). A caller guarantees that by choosing image sizes (see
// checkInputSize); tiles need nothing more, since the streamed body pads every tile with the full
// image's explicit padding (streaming-algorithm.md §1.12).

import type { Padding, Pair } from '../graph.ts';
import { TfjsImportError } from './model-json.ts';

/** Explicit [top, bottom, left, right] padding equal to TF 'same' on inputs that are multiples of the stride. */
export function samePadding(effectiveKernel: Pair, stride: Pair): Padding {
  const axis = (k: number, s: number): [number, number] => {
    const total = Math.max(k - s, 0);
    const lo = Math.floor(total / 2);
    return [lo, total - lo];
  };
  const [t, b] = axis(effectiveKernel[0], stride[0]);
  const [l, r] = axis(effectiveKernel[1], stride[1]);
  return [t, b, l, r];
}

/**
 * Whether the fixed explicit padding of `samePadding` equals TF's 'same' padding for an input of
 * length n along one axis (and so gives the same output length ⌈n/s⌉).
 */
export function sameIsExact(n: number, k: number, s: number): boolean {
  const r = n % s;
  return r === 0 || k <= r;
}

/** TF's own 'same' padding for an input of length n along one axis, for tests and diagnostics. */
export function tfSamePadding(n: number, k: number, s: number): [number, number] {
  const total = Math.max((Math.ceil(n / s) - 1) * s + k - n, 0);
  const lo = Math.floor(total / 2);
  return [lo, total - lo];
}

/** The explicit padding of a Keras padding mode: 'valid' or 'same' (which may need suitable input sizes). */
export function kerasPadding(
  mode: unknown,
  effectiveKernel: Pair,
  stride: Pair,
  where: string,
): { padding: Padding; needsAlignment: boolean } {
  if (mode === undefined || mode === 'valid') return { padding: [0, 0, 0, 0], needsAlignment: false };
  if (mode === 'same') {
    // A window of 1 along an axis fits every remainder, so only k > 1 with s > 1 depends on the size.
    const dependsOnSize = (k: number, s: number): boolean => s > 1 && k > 1;
    return {
      padding: samePadding(effectiveKernel, stride),
      needsAlignment:
        dependsOnSize(effectiveKernel[0], stride[0]) || dependsOnSize(effectiveKernel[1], stride[1]),
    };
  }
  throw new TfjsImportError(
    `${where}: padding '${String(mode)}' is not supported; use 'valid' or 'same' (causal padding is for 1-D sequences)`,
  );
}

export function addPadding(a: Padding, b: Padding): Padding {
  return [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
}
