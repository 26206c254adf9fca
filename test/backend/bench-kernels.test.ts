import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { benchKernels } from '../../trainer/backend/bench-kernels.ts';

describe('benchKernels', () => {
  it('times a training step on each backend and reports JSON-able speed-ups', async () => {
    const r = await benchKernels({ size: 16, repeats: 1, backends: ['wasm', 'cpu'] });
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r, 'plain JSON');
    assert.deepEqual(
      r.timings.map((t) => t.backend),
      ['wasm', 'cpu'],
    );
    for (const t of r.timings) {
      assert.ok(t.trainMs > 0 && t.forwardMs > 0 && t.trainCpuMs >= 0, JSON.stringify(t));
      assert.ok((t.topKernels?.length ?? 0) > 0, 'profiled kernels listed');
    }
    const s = r.speedups['wasm/cpu'];
    assert.ok(s !== undefined && s.train > 0 && s.forward > 0);
    assert.ok(Math.abs(r.forwardGflop - 0.00177) < 1e-4, `forward GFLOP at 16² is ${r.forwardGflop}`);
  });

  it('refuses sizes the two 2x2 pools cannot divide', async () => {
    await assert.rejects(benchKernels({ size: 30 }), /size must be a multiple of 4/);
  });
});
