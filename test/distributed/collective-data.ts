// The data the collective tests send: integers, so every sum over ranks is exact in float32.

/** Buffer `i` of rank `r`. */
export function knownBuffer(r: number, i: number, length: number): Float32Array {
  return Float32Array.from({ length }, (_, k) => (r + 1) * 1000 + i * 7 + (k % 97));
}

/** Lengths of the buffers of one call: an empty one and one of 100 003 among them. */
export const LENGTHS = [3, 1, 0, 100_003, 17];
