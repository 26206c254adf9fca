// Before the first step, a tile the planner predicts to exceed a backend's hard memory limit exits
// 3 (retry smaller) instead of crashing: the wasm heap, and on TensorFlow's CPU build the process's
// memory allowance (oneDNN convolutions segfault on a failed allocation, exit 139, which the
// operator could not tell from a bug). On a GPU, TensorFlow reports OOM itself.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseJobText, validateJob } from '../../crds/index.ts';
import {
  cgroupMemoryLimit,
  memoryAllowance,
  parseMemoryLimit,
} from '../../trainer/backend/memory-allowance.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import {
  checkTileFitsBackend,
  hardMemoryLimit,
  PredictedOutOfMemoryError,
  WASM_HEAP_BYTES,
} from '../../trainer/train/tile-choice.ts';

const GiB = 1024 ** 3;

function reader(files: Record<string, string>) {
  return (path: string): string | undefined => files[path];
}

describe('memory allowance', () => {
  it('reads cgroup v2 memory.max up the hierarchy, the tightest winning', () => {
    const read = reader({
      '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
      '/sys/fs/cgroup/kubepods/pod1/ctr/memory.max': 'max\n',
      '/sys/fs/cgroup/kubepods/pod1/memory.max': `${8 * GiB}\n`,
      '/sys/fs/cgroup/kubepods/memory.max': `${64 * GiB}\n`,
    });
    assert.equal(cgroupMemoryLimit(read), 8 * GiB);
    assert.deepEqual(memoryAllowance(read, 32 * GiB), { bytes: 8 * GiB, source: 'the cgroup memory limit' });
  });
  it('reads cgroup v1 memory.limit_in_bytes; the unlimited page-rounded 2^63 is no limit', () => {
    const v1 = (limit: string) =>
      reader({
        '/proc/self/cgroup': '4:memory:/kubepods/pod2\n1:cpu,cpuacct:/kubepods/pod2\n',
        '/sys/fs/cgroup/memory/kubepods/pod2/memory.limit_in_bytes': limit,
      });
    assert.equal(cgroupMemoryLimit(v1(`${2 * GiB}\n`)), 2 * GiB);
    assert.equal(cgroupMemoryLimit(v1('9223372036854771712\n')), undefined);
    assert.deepEqual(memoryAllowance(v1('9223372036854771712\n'), 24 * GiB), {
      bytes: 24 * GiB,
      source: 'the machine RAM',
    });
    assert.equal(parseMemoryLimit('max'), undefined);
  });
  it('does not let a limit above the RAM raise the allowance', () => {
    const read = reader({ '/proc/self/cgroup': '0::/x\n', '/sys/fs/cgroup/x/memory.max': `${100 * GiB}` });
    assert.equal(memoryAllowance(read, 16 * GiB).bytes, 16 * GiB);
  });
});

describe('hard memory limits checked before training', () => {
  const file = join(import.meta.dirname, '..', '..', 'examples', 'synthetic-local.yaml');
  const parsed = parseJobText(readFileSync(file, 'utf8'), file);
  assert.ok(parsed.ok, 'the example parses');
  const job = validateJob(parsed.value);
  assert.ok(job.ok, 'the example validates');
  const spec = job.job.spec;
  const net = { ...builtinNetwork('resnet18', { width: 64 }), pooling: 'max' as const, outputs: 2 };
  const image: [number, number] = [8192, 8192];

  it('are the wasm heap, the memory allowance on TensorFlow without a GPU, none on a GPU', () => {
    const allowance = () => ({ bytes: 3 * GiB, source: 'the cgroup memory limit' });
    assert.deepEqual(hardMemoryLimit('wasm', false, allowance), {
      bytes: WASM_HEAP_BYTES,
      what: 'the wasm backend can address',
    });
    assert.deepEqual(hardMemoryLimit('tensorflow', false, allowance), {
      bytes: 3 * GiB,
      what: 'the cgroup memory limit allows (TensorFlow on the CPU)',
    });
    assert.equal(hardMemoryLimit('tensorflow', true, allowance), undefined);
    assert.equal(hardMemoryLimit('cpu', false, allowance), undefined);
    assert.deepEqual(hardMemoryLimit('tensorflow', false, allowance, 64 * GiB), {
      bytes: 64 * GiB,
      what: 'the --memory-budget allows',
    });
  });

  it('refuse a tile predicted over the limit with PredictedOutOfMemoryError (exit 3), naming a tile that fits', () => {
    const limit = { bytes: 8 * GiB, what: 'the cgroup memory limit allows (TensorFlow on the CPU)' };
    assert.throws(
      () => checkTileFitsBackend(spec, net, image, 'tensorflow', 4096, limit),
      (err: Error) =>
        err instanceof PredictedOutOfMemoryError &&
        /tile 4096 needs about .* more than the 8\.0 GiB the cgroup memory limit allows \(TensorFlow on the CPU\); tile \d+ fits/.test(
          err.message,
        ),
    );
    assert.doesNotThrow(() => checkTileFitsBackend(spec, net, image, 'tensorflow', 4096, undefined));
    assert.doesNotThrow(() =>
      checkTileFitsBackend(spec, net, image, 'tensorflow', 1024, { ...limit, bytes: 64 * GiB }),
    );
  });
});
