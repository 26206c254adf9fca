// `tilestream bench gpu` on a machine without a GPU (this one): it says so and exits 2; the parts it
// is built from — nvidia-smi parsing, the planner's figures, one measurement child on the CPU build
// of TensorFlow — are checked here. On a GPU it has not run yet (README: GPU notes).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CACHE_ENV } from '../../trainer/backend/native/builds.ts';
import { parseComputeApps, parseGpuList, planBenchStep, runChild } from '../../trainer/bench/gpu.ts';
import { EXIT_NO_GPU } from '../../trainer/bench/gpu-cli.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'tilestream.js');
const GiB = 2 ** 30;

function benchGpu(env: Record<string, string | undefined>) {
  return spawnSync(process.execPath, [cli, 'bench', 'gpu', '--json'], { env, encoding: 'utf8' });
}

describe('tilestream bench gpu', () => {
  it('says there is no GPU and exits 2 where nvidia-smi is absent', () => {
    const r = benchGpu({ ...process.env, PATH: '/nonexistent' });
    assert.equal(r.status, EXIT_NO_GPU, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      gpu: false,
      reason: 'no NVIDIA GPU here: nvidia-smi is not installed',
    });
  });

  it('with a GPU but no GPU build, names the setup command and exits 2', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-gpu-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin', 'nvidia-smi'), '#!/bin/sh\necho "0, NVIDIA L4, 23034, 570.86.15"\n', {
      mode: 0o755,
    });
    const r = benchGpu({ ...process.env, PATH: `${join(dir, 'bin')}:/usr/bin:/bin`, [CACHE_ENV]: dir });
    assert.equal(r.status, EXIT_NO_GPU, r.stderr);
    assert.match(JSON.parse(r.stdout).reason, /tilestream setup tensorflow --gpu/);
  });

  it('parses nvidia-smi lists of GPUs and of per-process memory', () => {
    assert.deepEqual(
      parseGpuList('0, NVIDIA H100 80GB HBM3, 81559, 570.86.15\n1, NVIDIA L4, 23034, 570.86.15\n'),
      [
        { index: 0, name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559, driver: '570.86.15' },
        { index: 1, name: 'NVIDIA L4', memoryMiB: 23034, driver: '570.86.15' },
      ],
    );
    assert.deepEqual(parseGpuList('No devices were found\n'), []);
    assert.deepEqual([...parseComputeApps('4242, 1536\n17, [N/A]\n')], [[4242, 1536]]);
  });

  it('plans each size with the planner: a smaller GPU gets a smaller or equal tile, streamed below conventional', () => {
    const big = planBenchStep(8192, 80 * GiB);
    const small = planBenchStep(8192, 16 * GiB);
    assert.ok(small.tile <= big.tile, `${small.tile} > ${big.tile}`);
    for (const p of [big, small]) assert.ok(p.predictedStreamedBytes < p.predictedConventionalBytes);
  });

  it('measures a step in a child process (here on the CPU build: no GPU, no device memory)', {
    skip: tensorflowSkip(),
  }, async () => {
    const devices = await runChild({ task: 'devices' }, 60_000);
    assert.ok(devices.ok, JSON.stringify(devices));
    assert.equal(devices.gpu, false);
    assert.equal(devices.tensorflowVersion, '2.21.0');
    const step = await runChild(
      {
        task: 'step',
        mode: 'streamed',
        image: 512,
        tile: 256,
        repeats: 1,
        small: { width: 4, bodyEnd: 'layer1' },
      },
      120_000,
    );
    assert.ok(step.ok, JSON.stringify(step));
    assert.ok((step.seconds as number) > 0);
    assert.ok((step.tiles as number) > 1);
    assert.equal(step.deviceMiB, undefined);
  });
});
