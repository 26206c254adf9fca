import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import {
  type Augmentation,
  augmentedSize,
  drawAugmentation,
  gridMap,
  remapRegion,
  sourceRect,
} from '../../trainer/data/augment.ts';
import {
  boxDownsample,
  channelConversion,
  convertChannels,
  normalizePixels,
} from '../../trainer/data/pixels.ts';
import {
  deriveSeed,
  fillNormal,
  inverseNormalCdf,
  mulberry32,
  permutation,
} from '../../trainer/data/random.ts';
import { crop } from './pixel-window.ts';

await tf.setBackend('cpu');

/** The augmented whole image by an independent route: tf.reverse for flips, reverse∘transpose for rot90. */
function augmentWithTf(pixels: Uint8Array, h: number, w: number, c: number, aug: Augmentation): Uint8Array {
  return tf.tidy(() => {
    let x: tf.Tensor3D = tf.tensor3d(Array.from(pixels), [h, w, c], 'int32');
    if (aug.flipH) x = tf.reverse(x, 1);
    if (aug.flipV) x = tf.reverse(x, 0);
    // numpy.rot90(m) == flip(transpose(m), axis 0): one counter-clockwise quarter turn.
    for (let k = 0; k < (aug.rot90 ?? 0); k++) x = tf.reverse(tf.transpose(x, [1, 0, 2]), 0);
    return Uint8Array.from(x.dataSync());
  });
}

const augArb = fc.record({
  flipH: fc.boolean(),
  flipV: fc.boolean(),
  rot90: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
});

describe('flip and rotation as region remapping', () => {
  it('a remapped source rectangle equals the same window of the augmented whole image', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom(1, 3),
        augArb,
        fc.tuple(
          fc.double({ min: 0, max: 0.999, noNaN: true }),
          fc.double({ min: 0, max: 0.999, noNaN: true }),
        ),
        fc.tuple(
          fc.double({ min: 0, max: 0.999, noNaN: true }),
          fc.double({ min: 0, max: 0.999, noNaN: true }),
        ),
        (h, w, c, aug, [a, b], [d, e]) => {
          const src = Uint8Array.from({ length: h * w * c }, (_, i) => (i * 37 + 11) % 256);
          const full = augmentWithTf(src, h, w, c, aug);
          const size = augmentedSize(h, w, aug);
          const top = Math.floor(a * size.height);
          const left = Math.floor(b * size.width);
          const rows = 1 + Math.floor(d * (size.height - top));
          const cols = 1 + Math.floor(e * (size.width - left));
          const map = gridMap(h, w, aug);
          const rect = { top, left, rows, cols };
          const s = sourceRect(map, rect);
          assert.ok(
            s.top >= 0 && s.left >= 0 && s.top + s.rows <= h && s.left + s.cols <= w,
            'source inside image',
          );
          assert.equal(s.rows * s.cols, rows * cols, 'the source rectangle holds exactly the pixels needed');
          const got = remapRegion(crop(src, w, c, s.top, s.left, s.rows, s.cols), s, c, map, rect);
          assert.deepEqual(got, crop(full, size.width, c, top, left, rows, cols));
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });

  it('odd quarter turns swap height and width', () => {
    assert.deepEqual(augmentedSize(4, 7, { rot90: 1 }), { height: 7, width: 4 });
    assert.deepEqual(augmentedSize(4, 7, { rot90: 2, flipH: true }), { height: 4, width: 7 });
  });
});

describe('augmentation draw', () => {
  it('is a function of the random stream, covers every case, and keeps non-square sizes', () => {
    const policy = { flips: true, rotate90: true, colorJitter: 0.2 };
    const a = drawAugmentation(policy, mulberry32(5), { height: 8, width: 8 });
    assert.deepEqual(a, drawAugmentation(policy, mulberry32(5), { height: 8, width: 8 }));
    const rots = new Set<number>();
    let flips = 0;
    for (let s = 0; s < 400; s++) {
      const d = drawAugmentation(policy, mulberry32(s), { height: 8, width: 8 });
      rots.add(d.rot90 ?? -1);
      flips += d.flipH ? 1 : 0;
      const j = d.jitter;
      assert.ok(j && j.brightness >= 0.8 && j.brightness <= 1.2 && j.contrast >= 0.8 && j.contrast <= 1.2);
      const r = drawAugmentation(policy, mulberry32(s), { height: 8, width: 6 }).rot90;
      assert.ok(r === 0 || r === 2, `non-square image got rot90 ${r}`);
    }
    assert.deepEqual([...rots].sort(), [0, 1, 2, 3]);
    assert.ok(flips > 150 && flips < 250, `flipH drawn ${flips}/400 times`);
    assert.deepEqual(drawAugmentation({}, mulberry32(1), { height: 8, width: 8 }), {});
  });
});

describe('pixels', () => {
  it('normalises (x/255 − mean)/std per channel, with the jitter applied first and clipped', () => {
    const px = Uint8Array.from([0, 128, 255, 10, 20, 30]);
    const norm = { mean: [0.5, 0.25, 0], std: [0.5, 0.25, 2] };
    const plain = normalizePixels(px, 3, norm);
    const expect = [...px].map(
      (x, i) => (x / 255 - (norm.mean[i % 3] as number)) / (norm.std[i % 3] as number),
    );
    plain.forEach((v, i) => {
      assert.ok(Math.abs(v - (expect[i] as number)) < 1e-6, `${i}: ${v} vs ${expect[i]}`);
    });

    const jitter = { brightness: 1.3, contrast: 0.7 };
    const bc = (v: number) => Math.min(1, Math.max(0, (v * 1.3 - 0.5) * 0.7 + 0.5));
    const jit = normalizePixels(px, 3, norm, jitter);
    [...px].forEach((x, i) => {
      const want = (bc(x / 255) - (norm.mean[i % 3] as number)) / (norm.std[i % 3] as number);
      assert.ok(Math.abs((jit[i] as number) - want) < 1e-6);
    });
  });

  it('jitter is pointwise: permuting pixels permutes the output', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 30, maxLength: 30 }),
        fc.integer({ min: 0, max: 1000 }),
        (bytes, seed) => {
          const jitter = { brightness: 1.1, contrast: 0.9, saturation: 1.4 };
          const norm = { mean: [0.4, 0.5, 0.6], std: [0.2, 0.3, 0.25] };
          const perm = permutation(10, mulberry32(seed));
          const shuffled = new Uint8Array(30);
          perm.forEach((p, i) => {
            shuffled.set(bytes.subarray(p * 3, p * 3 + 3), i * 3);
          });
          const a = normalizePixels(bytes, 3, norm, jitter);
          const b = normalizePixels(shuffled, 3, norm, jitter);
          perm.forEach((p, i) => {
            assert.deepEqual(b.subarray(i * 3, i * 3 + 3), a.subarray(p * 3, p * 3 + 3));
          });
        },
      ),
      { numRuns: 50 },
    );
  });

  it('converts channels: grey ↔ RGB, alpha dropped, more bands refused', () => {
    assert.deepEqual(convertChannels(Uint8Array.from([7, 9]), 2, 1, 3), Uint8Array.from([7, 7, 7, 9, 9, 9]));
    assert.deepEqual(convertChannels(Uint8Array.from([1, 2, 3, 255]), 1, 4, 3), Uint8Array.from([1, 2, 3]));
    // BT.601 luma: 0.299·200 + 0.587·100 + 0.114·50 = 124.2
    assert.deepEqual(
      convertChannels(Uint8Array.from([200, 100, 50, 0, 0, 0]), 2, 3, 1),
      Uint8Array.from([124, 0]),
    );
    assert.deepEqual(convertChannels(Uint8Array.from([5, 255, 6, 0]), 2, 2, 1), Uint8Array.from([5, 6]));
    assert.equal(channelConversion(5, 3), undefined);
    assert.equal(channelConversion(3, 2), undefined);
  });

  it('box-downsamples with rounded means, edge blocks averaged over what they hold', () => {
    // 3×5 grey, factor 2 → 2×3
    const px = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert.deepEqual(
      boxDownsample(px, 3, 5, 1, 2),
      Uint8Array.from([
        Math.round((1 + 2 + 6 + 7) / 4),
        Math.round((3 + 4 + 8 + 9) / 4),
        Math.round((5 + 10) / 2),
        Math.round((11 + 12) / 2),
        Math.round((13 + 14) / 2),
        15,
      ]),
    );
  });
});

describe('seeded randomness', () => {
  it('derives distinct seeds for distinct parts, and permutations are permutations', () => {
    const seeds = new Set<number>();
    for (let e = 0; e < 50; e++) for (let i = 0; i < 50; i++) seeds.add(deriveSeed(3, 'augment', e, i));
    assert.equal(seeds.size, 2500);
    assert.notEqual(deriveSeed(1, 'a'), deriveSeed(1, 'b'));
    assert.notEqual(deriveSeed(2 ** 32 + 1), deriveSeed(1));
    const p = permutation(1000, mulberry32(9));
    assert.deepEqual(
      [...p].sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
    );
  });

  it('normal draws: the inverse CDF at known points, and the table sampler has mean 0 and variance ≈ 1', () => {
    assert.ok(Math.abs(inverseNormalCdf(0.975) - 1.959963985) < 1e-8);
    assert.ok(Math.abs(inverseNormalCdf(0.001) + 3.090232306) < 1e-8);
    assert.equal(inverseNormalCdf(0.5), 0);
    const a = new Float32Array(1 << 18);
    fillNormal(a, mulberry32(4));
    let s = 0;
    let q = 0;
    for (const v of a) {
      s += v;
      q += v * v;
    }
    const mean = s / a.length;
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(q / a.length - mean * mean - 1) < 0.015, `variance ${q / a.length}`);
  });
});
