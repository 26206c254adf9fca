// Packing what the ranks exchange: gradients with presence flags and a tail in one buffer, summed
// buffers unpacked, JSON as bytes in floats.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bytesToFloats, floatsToBytes, packSum, unpackSum } from '../../trainer/distributed/rank-sync.ts';

const slots = [
  { name: 'a', size: 2 },
  { name: 'b', size: 3 },
];

describe('rank sync packing', () => {
  it('sums two ranks as the element-wise sum of their buffers, keeping which slots any rank had', () => {
    const r0 = packSum(slots, new Map([['a', Float32Array.of(1, 2)]]), [2, 0.5, 0]);
    const r1 = packSum(slots, new Map([['a', Float32Array.of(10, 20)]]), [1, 0.25, 1]);
    assert.equal(r0.length, 2 + 3 + 2 + 3);
    const summed = r0.map((x, i) => x + (r1[i] as number));
    const { values, tail } = unpackSum(slots, summed, 3);
    assert.deepEqual(
      [...values.keys()],
      ['a'],
      "'b' had no gradient on any rank: not updated, as on one rank",
    );
    assert.deepEqual(Array.from(values.get('a') as Float32Array), [11, 22]);
    assert.deepEqual(tail, [3, 0.75, 1]);
  });

  it('refuses a slot of the wrong size and a buffer of the wrong length', () => {
    assert.throws(
      () => packSum(slots, new Map([['b', Float32Array.of(1)]]), []),
      /'b' has 1 values, expected 3/,
    );
    assert.throws(() => unpackSum(slots, new Float32Array(4), 0), /expected 7/);
  });

  it('carries any UTF-8 text through float32 exactly', () => {
    const bytes = new TextEncoder().encode(JSON.stringify({ position: { index: 12 }, name: 'µm — ✓' }));
    assert.deepEqual(floatsToBytes(bytesToFloats(bytes)), bytes);
  });
});
