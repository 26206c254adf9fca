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

/** Standard normal draws by the Box–Muller transform (two per pair of uniforms). */
export function gaussian(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = 1 - rand(); // (0, 1]: log stays finite
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}
