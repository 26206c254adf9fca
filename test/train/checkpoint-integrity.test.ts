// Checkpoints on the error paths: a changed header is refused like a changed payload, another
// writer's temporary file survives our prune, a write that fills the disk (a file-size limit, which
// needs no mount) fails naming the file and keeps the checkpoint before it, and checkpoints of the
// first format (TSCKPT01) still load.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type CheckpointData,
  CheckpointError,
  checkpointPath,
  listCheckpoints,
  loadLatestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from '../../trainer/train/checkpoint.ts';

const CHECKPOINT_MODULE = new URL('../../trainer/train/checkpoint.ts', import.meta.url).href;
const V1_FIXTURE = fileURLToPath(new URL('../fixtures/checkpoint-v1/ckpt-000000007.tsckpt', import.meta.url));

const work = mkdtempSync(join(tmpdir(), 'ckpt-integrity-'));
after(() => rmSync(work, { recursive: true, force: true }));
let folders = 0;
const folder = (): string => {
  const dir = join(work, `d${folders++}`);
  mkdirSync(dir);
  return dir;
};

const small: CheckpointData = {
  step: 1,
  meta: { epoch: 1 },
  tensors: new Map([
    ['a', { shape: [2, 2], values: Float32Array.from([1, 2, 3, 4]) }],
    ['b', { shape: [3], values: Float32Array.from([0.5, -1, 7]) }],
  ]),
};
const temporaries = (dir: string) => readdirSync(dir).filter((n) => n.includes('.tmp-'));

/** Replaces `from` by `to` (same length) in the file's bytes. */
function patch(path: string, from: string, to: string): void {
  assert.equal(from.length, to.length);
  const bytes = readFileSync(path);
  const at = bytes.indexOf(from);
  assert.ok(at >= 0, `${from} in ${path}`);
  bytes.write(to, at, 'latin1');
  writeFileSync(path, bytes);
}

describe('checkpoint integrity', () => {
  for (const [what, from, to] of [
    ['a shape', '"shape":[2,2]', '"shape":[4,1]'],
    ['a tensor offset', '"offset":16', '"offset":12'],
    ['a tensor name', '"name":"b"', '"name":"c"'],
    ['the step', '"step":2', '"step":3'],
  ] as const) {
    it(`a changed header (${what}) is refused as a checksum mismatch and the one before is used`, () => {
      const dir = folder();
      writeCheckpoint(dir, small, 3);
      const newest = writeCheckpoint(dir, { ...small, step: 2 }, 3);
      patch(newest, from, to);
      assert.throws(
        () => readCheckpoint(newest),
        (e: unknown) => e instanceof CheckpointError && /checksum mismatch/.test(e.message),
      );
      const warnings: string[] = [];
      assert.equal(loadLatestCheckpoint(dir, (w) => warnings.push(w))?.step, 1);
      assert.match(warnings.join('\n'), /ckpt-000000002\.tsckpt: checksum mismatch/);
    });
  }

  it('a file cut anywhere, even inside the checksum itself, is reported as truncated', () => {
    const dir = folder();
    const path = writeCheckpoint(dir, small, 1);
    const bytes = readFileSync(path);
    for (const cut of [1, 20, bytes.length - 40]) {
      writeFileSync(path, bytes.subarray(0, bytes.length - cut));
      assert.throws(() => readCheckpoint(path), /truncated/);
    }
  });
});

describe('temporary files', () => {
  it("leaves another writer's temporary files alone, even one named by our PID (PID 1 in every container)", () => {
    const dir = folder();
    // The old pod writing its SIGTERM checkpoint while this attempt starts on the same volume.
    const samePid = `${checkpointPath(dir, 2)}.tmp-${process.pid}`;
    const otherHost = `${checkpointPath(dir, 3)}.tmp-trainer-abc12-1-0123456789ab-01234567`;
    writeFileSync(samePid, 'being written by another process');
    writeFileSync(otherHost, 'being written by another pod');
    writeCheckpoint(dir, { ...small, step: 2 }, 1);
    assert.equal(readFileSync(samePid, 'utf8'), 'being written by another process');
    assert.equal(readFileSync(otherHost, 'utf8'), 'being written by another pod');
    assert.equal(readCheckpoint(checkpointPath(dir, 2)).step, 2);
  });

  it('removes temporary files nobody has written to for an hour (left by a killed writer)', () => {
    const dir = folder();
    const stale = `${checkpointPath(dir, 1)}.tmp-trainer-old-1-0123456789ab-01234567`;
    writeFileSync(stale, 'half a checkpoint');
    const hourAgo = new Date(Date.now() - 3600_000);
    utimesSync(stale, hourAgo, hourAgo);
    writeCheckpoint(dir, { ...small, step: 2 }, 1);
    assert.deepEqual(temporaries(dir), []);
  });
});

describe('a write that fills the disk', () => {
  // A file-size limit (ulimit -f, in KiB) makes write(2) stop at the limit like a full volume: the
  // write that crosses it is short, the next one fails with EFBIG (Node ignores SIGXFSZ, and the
  // trap makes sure of it). No mount needed, so this runs anywhere bash does.
  const LIMIT_BYTES = 16 * 1024;

  const big = (values: number, pad: number): CheckpointData => ({
    step: 2,
    meta: { pad: 'x'.repeat(pad) },
    tensors: new Map([['w', { shape: [values], values: new Float32Array(values).fill(0.25) }]]),
  });
  const sizeOf = (values: number, pad: number): number => {
    const dir = folder();
    const size = statSync(writeCheckpoint(dir, big(values, pad), 1)).size;
    rmSync(dir, { recursive: true });
    return size;
  };
  /** Tensor length and padding that make the file exactly `bytes` long. */
  const fit = (bytes: number): { values: number; pad: number } => {
    let values = 1000;
    values += Math.floor((bytes - sizeOf(values, 0)) / 4) - 1;
    const pad = bytes - sizeOf(values, 0);
    assert.ok(pad >= 0 && pad < 16, `padding ${pad}`);
    assert.equal(sizeOf(values, pad), bytes);
    return { values, pad };
  };

  function writeUnderLimit(dir: string, values: number, pad: number) {
    const script = `
      import { writeCheckpoint } from ${JSON.stringify(CHECKPOINT_MODULE)};
      const [dir, values, pad] = process.argv.slice(1);
      const data = {
        step: 2,
        meta: { pad: 'x'.repeat(Number(pad)) },
        tensors: new Map([['w', { shape: [Number(values)], values: new Float32Array(Number(values)).fill(0.25) }]]),
      };
      try {
        writeCheckpoint(dir, data, 1);
        console.log(JSON.stringify({ written: true }));
      } catch (e) {
        console.log(JSON.stringify({ name: e.name, message: e.message, volumeFull: e.volumeFull }));
      }`;
    const r = spawnSync(
      'bash',
      [
        '-c',
        `trap '' XFSZ; ulimit -f ${LIMIT_BYTES / 1024}; exec "$0" --input-type=module -e "$1" "$2" "$3" "$4"`,
        process.execPath,
        script,
        dir,
        String(values),
        String(pad),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim()) as {
      written?: true;
      name?: string;
      message?: string;
      volumeFull?: boolean;
    };
  }

  for (const [where, overshoot] of [
    ['in the middle of the tensors', 20_000],
    ['16 bytes before the end of the file', 16],
  ] as const) {
    it(`fails naming the file and keeps the previous checkpoint when the disk fills ${where}`, () => {
      const { values, pad } = fit(LIMIT_BYTES + overshoot - (overshoot % 4 === 0 ? 0 : overshoot % 4));
      const dir = folder();
      const previous = writeCheckpoint(dir, small, 1);
      const r = writeUnderLimit(dir, values, pad);
      assert.equal(r.name, 'CheckpointError', `the write should fail, got ${JSON.stringify(r)}`);
      assert.match(r.message ?? '', /cannot write checkpoint .*ckpt-000000002\.tsckpt/);
      assert.match(r.message ?? '', /EFBIG/);
      assert.equal(r.volumeFull, true, 'a full volume is told apart from other write errors');
      assert.match(r.message ?? '', /the previous checkpoint .*ckpt-000000001\.tsckpt is kept/);
      assert.match(r.message ?? '', /free space on the checkpoint volume/i);
      assert.deepEqual(
        listCheckpoints(dir).map((p) => basename(p)),
        [basename(previous)],
      );
      assert.equal(readCheckpoint(previous).step, 1);
      assert.deepEqual(temporaries(dir), [], 'the failed temporary file is removed');
    });
  }
});

describe('checkpoints of the first format (TSCKPT01)', () => {
  it('still load, with a warning that their header is not covered by the checksum', () => {
    const dir = folder();
    copyFileSync(V1_FIXTURE, join(dir, basename(V1_FIXTURE)));
    const warnings: string[] = [];
    const loaded = loadLatestCheckpoint(dir, (w) => warnings.push(w));
    assert.equal(loaded?.step, 7);
    assert.deepEqual([...(loaded?.tensors.get('b')?.values ?? [])], [0.5, -1, 7]);
    assert.deepEqual(loaded?.tensors.get('a')?.shape, [2, 2]);
    assert.match(
      warnings.join('\n'),
      /ckpt-000000007\.tsckpt is in the first checkpoint format \(TSCKPT01\)/,
    );
  });

  it('are refused, naming the file and what to do, when their header does not match their payload', () => {
    const dir = folder();
    const path = join(dir, basename(V1_FIXTURE));
    copyFileSync(V1_FIXTURE, path);
    patch(path, '"shape":[2,2]', '"shape":[4,2]');
    assert.throws(
      () => readCheckpoint(path),
      (e: unknown) =>
        e instanceof CheckpointError &&
        e.message.includes(path) &&
        /'a' has shape 4x2 \(8 values\) but 4 stored/.test(e.message) &&
        /delete it/.test(e.message),
    );
  });

  it('are replaced by the current format at the next save', () => {
    const dir = folder();
    copyFileSync(V1_FIXTURE, join(dir, basename(V1_FIXTURE)));
    const next = writeCheckpoint(dir, { ...small, step: 8 }, 1);
    assert.equal(readFileSync(next).subarray(0, 8).toString('latin1'), 'TSCKPT02');
    assert.deepEqual(
      listCheckpoints(dir).map((p) => basename(p)),
      ['ckpt-000000008.tsckpt'],
    );
  });
});
