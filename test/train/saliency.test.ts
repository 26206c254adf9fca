import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { colour, heatmap } from '../../trainer/train/saliency.ts';

describe('saliency heatmap', () => {
  it('keeps a single strong pixel visible after block reduction and scales to [0, 1]', () => {
    const h = 64;
    const w = 32;
    const grad = new Float32Array(h * w * 3).fill(0.001);
    grad[(40 * w + 20) * 3 + 1] = -5; // a strong negative gradient in one channel of one pixel
    const map = heatmap(grad, h, w, 3, 8);
    assert.deepEqual([map.height, map.width], [8, 4]);
    const i = Math.floor(40 / 8) * 4 + Math.floor(20 / 8);
    assert.equal(map.values[i], 1);
    assert.ok(Math.max(...Array.from(map.values).filter((_, j) => j !== i)) <= 1);
    assert.ok((map.values[0] as number) < 0.01);
  });
  it('maps 0 to dark blue and 1 to red', () => {
    assert.deepEqual(colour(0), [0, 0, 130]);
    assert.deepEqual(colour(1), [220, 0, 0]);
  });
});
