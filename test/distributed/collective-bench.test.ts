// `tilestream bench allreduce`: the gradient sizes it sums, the figures it derives, and one real
// all-reduce between 2 local rank processes with small buffers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AllreduceReport,
  benchRanks,
  formatAllreduce,
  gradientSizes,
  median,
} from '../../trainer/bench/allreduce.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

describe('bench allreduce', () => {
  it("sums ResNet-34's parameter gradients: 110 tensors, 21.3 M floats", () => {
    const sizes = gradientSizes();
    assert.equal(sizes.length, 110);
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      21_285_698,
    );
  });

  it('takes the median of the repeats', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 2, 3]), 2.5);
  });

  it('prints the ratio to the streamed step, or a dash without one', () => {
    const r: AllreduceReport = {
      network: 'ResNet-34',
      tensors: 2,
      floats: 3e6,
      bytes: 12e6,
      engine: 'TensorFlow',
      streamedStep: { skipped: 'no build' },
      results: [
        {
          ranks: 2,
          subdivs: 0,
          seconds: 0.5,
          repeats: [0.5],
          executeShare: 0.9,
          perBufferSeconds: 1,
          busGigabytesPerSecond: 0.024,
          openSeconds: 2,
          ratioToStreamedStep: null,
        },
      ],
      cpus: '2',
      loadAverage: { start: 1, end: 2 },
    };
    const text = formatAllreduce(r);
    assert.match(text, /streamed step not measured: no build/);
    assert.match(text, /^2 +TF +0\.500 +90% +1\.000 +0\.02 +–$/m);
  });

  it('times an all-reduce between 2 rank processes', {
    skip: tensorflowSkip(),
    timeout: 120_000,
  }, async () => {
    const r = await benchRanks(2, [1000, 3, 50_000], 2, 60_000, 4);
    assert.equal(r.ranks, 2);
    assert.equal(r.subdivs, 4);
    assert.equal(r.repeats.length, 2);
    assert.ok(r.seconds > 0 && r.perBufferSeconds > 0 && r.openSeconds > 0);
    assert.ok(r.executeShare > 0 && r.executeShare <= 1, `share in the op ${r.executeShare}`);
    // 2(n−1)/n × bytes / seconds, in GB/s.
    assert.ok(Math.abs(r.busGigabytesPerSecond - (4 * 51_003) / r.seconds / 1e9) < 1e-9);
  });
});
