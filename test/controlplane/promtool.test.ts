// promtool built from Go modules lints Prometheus exposition text; other suites use it on the
// operator's and trainer's /metrics. Skipped with the reason when it cannot be built here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { ensureBinaries } from './binaries.ts';

const found = await ensureBinaries(['promtool']);

function checkMetrics(bin: string, text: string): { status: number | null; out: string } {
  const r = spawnSync(bin, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('promtool', () => {
  it('accepts well-formed metrics and flags a counter without _total', {
    skip: found.ok ? undefined : found.reason,
  }, () => {
    const bin = found.ok ? found.bin.promtool : undefined;
    assert.ok(bin);
    const good = checkMetrics(
      bin,
      '# HELP tilestream_tiles_processed_total Tiles processed.\n# TYPE tilestream_tiles_processed_total counter\ntilestream_tiles_processed_total 3\n',
    );
    assert.equal(good.status, 0, good.out);
    const bad = checkMetrics(bin, '# HELP tiles Tiles processed.\n# TYPE tiles counter\ntiles 3\n');
    assert.notEqual(bad.status, 0);
    assert.match(bad.out, /counter metrics should have "_total" suffix/);
  });
});
