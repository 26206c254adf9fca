// Seeded, counter-based randomness for the data pipeline. Every stream is derived from (seed, labels)
// by hashing, so the draw for epoch e, item i is a pure function of them: resuming at a position
// needs no saved generator state, and skipping or re-reading an image cannot shift later draws.

/** mulberry32: a small 32-bit generator with a good enough spread for shuffles and augmentation. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes integers and strings into one 32-bit seed (FNV-1a over the parts, then a murmur3 finaliser). */
export function deriveSeed(...parts: (number | string)[]): number {
  let h = 0x811c9dc5;
  const mix = (byte: number): void => {
    h = Math.imul(h ^ (byte & 0xff), 0x01000193);
  };
  for (const part of parts) {
    if (typeof part === 'number') {
      if (!Number.isSafeInteger(part)) throw new RangeError(`seed part ${part} is not a safe integer`);
      // Low and high 32 bits, so seeds above 2^32 stay distinct.
      const lo = part >>> 0;
      const hi = Math.floor(part / 4294967296) >>> 0;
      for (const w of [lo, hi]) for (let s = 0; s < 32; s += 8) mix(w >>> s);
      mix(0x4e);
    } else {
      for (let i = 0; i < part.length; i++) {
        const c = part.charCodeAt(i);
        mix(c);
        mix(c >>> 8);
      }
      mix(0x53);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A Fisher–Yates permutation of 0..n−1. */
export function permutation(n: number, rand: () => number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i] as number;
    p[i] = p[j] as number;
    p[j] = t;
  }
  return p;
}

/**
 * Inverse of the standard normal CDF (P. J. Acklam's rational approximation, relative error below
 * 1.2e-9 over (0, 1)).
 */
export function inverseNormalCdf(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`inverseNormalCdf needs p in (0, 1), got ${p}`);
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number): number =>
    (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) /
    ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  const low = 0.02425;
  if (p < low) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - low) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

const NORMAL_TABLE_BITS = 16;
let normalTable: Float32Array | undefined;

/**
 * Fills `a` with standard normal draws, two per 32-bit uniform: each 16-bit half indexes a table of
 * the normal's quantiles at (k + ½)/65536. About 10× faster than Box–Muller; the tails stop at
 * ±4.3σ, which no use here can tell apart (pixel noise of σ 6 grey levels, and blurred fields).
 */
export function fillNormal(a: Float32Array, rand: () => number): void {
  if (!normalTable) {
    const size = 1 << NORMAL_TABLE_BITS;
    normalTable = new Float32Array(size);
    for (let k = 0; k < size; k++) normalTable[k] = inverseNormalCdf((k + 0.5) / size);
  }
  const table = normalTable;
  const n = a.length;
  for (let i = 0; i < n; i += 2) {
    const u = (rand() * 4294967296) >>> 0;
    a[i] = table[u & 0xffff] as number;
    if (i + 1 < n) a[i + 1] = table[u >>> 16] as number;
  }
}
