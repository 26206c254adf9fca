// The memory model against measurement: for built-in bodies and random bodies, streamed and
// conventional, on wasm and cpu, the predicted peaks must be within 15% of the measured ones —
// both tf.profile's peakBytes (tfjs's accounting, every tensor handle) and the peak of distinct
// buffers. The worst errors are reported as diagnostics.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { initBackend } from '../../trainer/backend/select.ts';
import { predictConventional, predictStreamed } from '../../trainer/plan/memory.ts';
import { builtinCases, type CalibrationCase, randomCases } from '../../trainer/plan-measure/cases.ts';
import { measureStep } from '../../trainer/plan-measure/measure.ts';
import type { Network } from '../../trainer/streaming/network.ts';

const TOLERANCE = 0.15;

const CASES: Record<'wasm' | 'cpu', CalibrationCase[]> = {
  wasm: [...builtinCases('full'), ...randomCases(8)],
  cpu: [...builtinCases('light'), ...randomCases(3)],
};

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`predicted peak memory matches measurement on ${backend}`, () => {
    let worst = { error: 0, what: 'none' };
    const record = (error: number, what: string): void => {
      if (worst.what === 'none' || Math.abs(error) > Math.abs(worst.error)) worst = { error, what };
    };

    it('initialises the backend', async () => {
      assert.equal((await initBackend(backend)).name, backend);
    });

    for (const c of CASES[backend]) {
      const kind = c.tile ? `streamed, tile ${c.tile[0]}` : 'conventional';
      it(`${c.name} ${kind}`, async () => {
        const m = await measureStep({
          net: c.net as Network,
          image: c.image,
          ...(c.tile && { tile: c.tile }),
          ...(c.inputGrad && { inputGrad: true }),
        });
        const o = { backend, imageStorage: 'float32' as const, ...(c.inputGrad && { inputGrad: true }) };
        const p = c.tile
          ? predictStreamed(c.net, c.image, c.tile, o)
          : predictConventional(c.net, c.image, o);
        const profileError = (p.peakBytes - m.peakBytes) / m.peakBytes;
        const bufferError = (p.bufferPeakBytes - m.bufferPeakBytes) / m.bufferPeakBytes;
        record(profileError, `${c.name} ${kind} (tf.profile peak ${m.peakBytes} B)`);
        record(bufferError, `${c.name} ${kind} (buffer peak ${m.bufferPeakBytes} B)`);
        assert.ok(
          Math.abs(profileError) <= TOLERANCE,
          `tf.profile peak: predicted ${p.peakBytes} B, measured ${m.peakBytes} B (${(100 * profileError).toFixed(1)}%)`,
        );
        assert.ok(
          Math.abs(bufferError) <= TOLERANCE,
          `buffer peak: predicted ${p.bufferPeakBytes} B, measured ${m.bufferPeakBytes} B (${(100 * bufferError).toFixed(1)}%)`,
        );
      });
    }

    after(() => {
      process.stdout.write(
        `# ${backend}: worst prediction error ${(100 * worst.error).toFixed(2)}% (${worst.what})\n`,
      );
    });
  });
}
