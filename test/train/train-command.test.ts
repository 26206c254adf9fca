// `tilestream train` as a user runs it: a real process on real image files. Reliability: killed with
// SIGKILL five times it resumes to the same weights as an uninterrupted run; SIGTERM checkpoints and
// exits 143; corrupt images are skipped and counted; a bad manifest is refused naming its fields.
// On the native tensorflow backend: a short run, and a resume after SIGKILL to the same weights.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { stringify } from 'yaml';
import { listCheckpoints, readCheckpoint } from '../../trainer/train/checkpoint.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'train-cmd-'));
const dataDir = join(work, 'data');

function manifest(
  name: string,
  checkpoints: string,
  overrides: Record<string, unknown> = {},
  folder = work,
): string {
  const job = {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name },
    spec: {
      model: {
        architecture: 'smallcnn',
        width: 4,
        head: { pooling: 'max', classes: 1 },
        ...(overrides.model as object),
      },
      data: {
        root: dataDir,
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: 192, width: 192 },
        channels: 1,
        normalization: { mean: [0.5], std: [0.05] },
        synthetic: { count: 16, validationCount: 4, seed: 3, format: 'png' },
        ...(overrides.data as object),
      },
      training: {
        epochs: 2,
        batchSize: 2,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.003 },
        seed: 7,
        backend: 'wasm',
        ...(overrides.training as object),
      },
      streaming: { tileSize: 96, ...(overrides.streaming as object) },
      checkpoint: { path: checkpoints, everySteps: 1, keep: 2 },
    },
  };
  const file = join(folder, `${name}.yaml`);
  writeFileSync(file, stringify(job));
  return file;
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<Run>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

function finalWeights(dir: string): Map<string, Float32Array> {
  const newest = listCheckpoints(dir)[0];
  assert.ok(newest, `no checkpoint in ${dir}`);
  const ckpt = readCheckpoint(newest);
  return new Map([...ckpt.tensors].map(([n, t]) => [n, t.values]));
}

function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [n, x] of a) {
    const y = b.get(n) as Float32Array;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs((x[i] as number) - (y[i] as number)));
  }
  return worst;
}

describe('tilestream train', () => {
  let reference: Map<string, Float32Array>;

  before(async () => {
    // The uninterrupted run; it also generates the dataset the other runs share.
    const run = await start(['train', manifest('reference', join(work, 'ckpt-reference')), '--json']).done;
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as {
      status: string;
      steps: number;
    };
    assert.equal(summary.status, 'completed');
    assert.equal(summary.steps, 16);
    reference = finalWeights(join(work, 'ckpt-reference'));
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  it('refuses an invalid manifest, naming every bad field, with exit code 2', async () => {
    const file = join(work, 'bad.yaml');
    writeFileSync(
      file,
      stringify({
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name: 'bad' },
        spec: { model: { architecture: 'vgg' }, training: { epochs: -1 } },
      }),
    );
    const run = await start(['train', file]).done;
    assert.equal(run.code, 2);
    assert.match(run.stderr, /spec\.model\.architecture/);
    assert.match(run.stderr, /spec\.training\.epochs/);
    assert.match(run.stderr, /spec\.data/);
  });

  it('fails at once with exit code 5 (data not found) when the data root or its manifest is missing', async () => {
    const noRoot = await start([
      'train',
      manifest('missing', join(work, 'ckpt-missing'), {
        data: { root: join(work, 'nowhere'), synthetic: undefined },
      }),
    ]).done;
    assert.equal(noRoot.code, 5, noRoot.stderr);
    assert.match(noRoot.stderr, /spec\.data\.root: \S*nowhere does not exist/);
    const noManifest = await start([
      'train',
      manifest('missing', join(work, 'ckpt-missing'), {
        data: { root: work, train: 'absent.csv', synthetic: undefined },
      }),
    ]).done;
    assert.equal(noManifest.code, 5, noManifest.stderr);
    assert.match(noManifest.stderr, /spec\.data\.train: no manifest at \S*absent\.csv/);
  });

  it('fails at once with exit code 2 when the tile is off the stride or too small', async () => {
    const offStride = await start([
      'train',
      manifest('stride', join(work, 'ckpt-stride')),
      '--tile-size',
      '100',
    ]).done;
    assert.equal(offStride.code, 2, offStride.stderr);
    assert.match(offStride.stderr, /not a multiple of the body's total stride 16; use 96 or 112/);
    const tooSmall = await start(['train', manifest('small', join(work, 'ckpt-small')), '--tile-size', '64'])
      .done;
    assert.equal(tooSmall.code, 2, tooSmall.stderr);
    assert.match(tooSmall.stderr, /tile 64 is below the minimum tile 80/);
  });

  it('starts from spec.model.initialWeights: body weights taken, a head of another size starts fresh', async () => {
    const [newest] = listCheckpoints(join(work, 'ckpt-reference'));
    const lr = 0.003;
    const file = manifest('finetune', join(work, 'ckpt-finetune'), {
      // Two softmax classes: the head's shape differs from the binary reference, so it starts fresh.
      model: { head: { pooling: 'max', classes: 2 }, initialWeights: newest },
      training: {
        epochs: 1,
        seed: 8,
        loss: 'softmax-cross-entropy',
        optimizer: { type: 'adam', learningRate: lr },
      },
    });
    const run = await start(['train', file, '--json']).done;
    assert.equal(run.code, 0, run.stderr);
    const log = run.stderr
      .split('\n')
      .flatMap((l) => (l.startsWith('{') ? [JSON.parse(l) as { message?: string; fresh?: string[] }] : []));
    const loaded = log.find((e) => e.message?.startsWith('initial weights from'));
    assert.ok(loaded, `no initial-weights log line in:\n${run.stderr.slice(-2000)}`);
    assert.deepEqual(loaded.fresh, ['head/dense/kernel', 'head/dense/bias']);
    // An Adam step moves a weight by at most about lr: after 8 the body is within 8·lr of the
    // reference's (a fresh start from another seed would be ~0.2 away).
    const tuned = finalWeights(join(work, 'ckpt-finetune'));
    let worst = 0;
    for (const [name, ref] of reference) {
      if (!name.startsWith('body/')) continue;
      const x = tuned.get(name) as Float32Array;
      for (let i = 0; i < ref.length; i++)
        worst = Math.max(worst, Math.abs((x[i] as number) - (ref[i] as number)));
    }
    assert.ok(worst < 1.5 * 8 * lr, `body weights moved ${worst} from the initial weights`);

    const missing = await start([
      'train',
      manifest('nofile', join(work, 'ckpt-nofile'), { model: { initialWeights: 'pretrained/none.tsckpt' } }),
    ]).done;
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(
      missing.stderr,
      /spec\.model\.initialWeights: cannot read .*pretrained\/none\.tsckpt \(no such file\)/,
    );
  });

  it('resumes after SIGKILL at five random points to the same weights as an uninterrupted run', async () => {
    const dir = join(work, 'ckpt-killed');
    const file = manifest('killed', dir);
    // Kill points in optimizer steps (16 in all), random and rising, plus a random delay so the
    // kill lands anywhere inside the following step: mid-tile, mid-backward, mid-checkpoint.
    const targets = new Set<number>();
    while (targets.size < 5) targets.add(2 + Math.floor(Math.random() * 13));
    let kills = 0;
    for (const target of [...targets].sort((a, b) => a - b)) {
      const run = start(['train', file, '--json'], { TILESTREAM_LOG_LEVEL: 'debug' });
      const onData = (d: Buffer): void => {
        for (const m of d
          .toString()
          .matchAll(
            /"message":"optimizer step","step":(\d+)|"step":(\d+)[^\n]*"message":"optimizer step"/g,
          )) {
          if (Number(m[1] ?? m[2]) >= target) {
            run.child.stderr?.off('data', onData);
            setTimeout(() => run.child.kill('SIGKILL'), Math.floor(Math.random() * 300));
          }
        }
      };
      run.child.stderr?.on('data', onData);
      const r = await run.done;
      if (r.signal === 'SIGKILL') kills++;
      else assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(kills, 5, 'every run was killed mid-run');
    const last = await start(['train', file, '--json']).done;
    assert.equal(last.code, 0, last.stderr);
    const diff = maxAbsDiff(finalWeights(dir), reference);
    assert.ok(diff <= 1e-6, `weights differ by ${diff} after ${kills} kills`);
  });

  it('on SIGTERM writes a checkpoint and exits 143; the next run resumes from it', async () => {
    const dir = join(work, 'ckpt-term');
    const file = manifest('term', dir);
    const run = start(['train', file, '--json'], { TILESTREAM_LOG_LEVEL: 'debug' });
    // Signal once training is under way (before that there is nothing to checkpoint, and Node's
    // default action ends the process): right after the third optimizer step.
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer): void => {
        if (!/"message":"optimizer step","step":3\b/.test(d.toString())) return;
        run.child.stderr?.off('data', onData);
        resolve();
      };
      run.child.stderr?.on('data', onData);
    });
    run.child.kill('SIGTERM');
    const r = await run.done;
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr, /SIGTERM received/);
    assert.ok(listCheckpoints(dir).length > 0);
    const again = await start(['train', file, '--json']).done;
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /resumed from/);
    assert.ok(maxAbsDiff(finalWeights(dir), reference) <= 1e-6);
  });

  it('a second signal exits at once with 143, keeping the last checkpoint', async () => {
    const dir = join(work, 'ckpt-term2');
    const run = start(['train', manifest('term2', dir), '--json'], { TILESTREAM_LOG_LEVEL: 'debug' });
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer): void => {
        if (!/"message":"optimizer step","step":2\b/.test(d.toString())) return;
        run.child.stderr?.off('data', onData);
        resolve();
      };
      run.child.stderr?.on('data', onData);
    });
    // Both signals must be pending at once so their handlers run back to back, whatever the timing:
    // stop the process, queue SIGTERM and SIGINT (distinct signals are never merged), continue it.
    run.child.kill('SIGSTOP');
    run.child.kill('SIGTERM');
    run.child.kill('SIGINT');
    run.child.kill('SIGCONT');
    const r = await run.done;
    assert.equal(r.code, 143, r.stderr);
    assert.match(r.stderr, /(SIGTERM|SIGINT) received again: exiting without a new checkpoint/);
    const ckpt = readCheckpoint(listCheckpoints(dir)[0] as string);
    assert.ok(ckpt.step >= 1, 'the checkpoints written before the signals are still there');
  });

  it('exits 4 naming the volume when the checkpoint volume is full, instead of a retryable failure', async () => {
    // A file-size limit (ulimit -f, KiB) below one checkpoint (~10 KB here) makes every save fail
    // with EFBIG as a full volume would; Node ignores SIGXFSZ, and the trap makes sure of it. The
    // logs go to pipes, which the limit does not cover.
    const dir = join(work, 'ckpt-full');
    const term = join(work, 'full-termination');
    const file = manifest('full', dir);
    const r = spawnSync(
      'bash',
      ['-c', `trap '' XFSZ; ulimit -f 4; exec "$0" "$1" train "$2" --json`, process.execPath, BIN, file],
      { encoding: 'utf8', env: { ...process.env, TILESTREAM_TERMINATION_MESSAGE_PATH: term } },
    );
    assert.equal(r.status, 4, r.stderr);
    assert.match(
      r.stderr,
      /cannot write checkpoint .*ckpt-000000001\.tsckpt: the file exceeds the largest size this process or volume allows \(EFBIG\); there is no earlier checkpoint/,
    );
    assert.match(readFileSync(term, 'utf8'), /^checkpoint volume full: cannot write checkpoint /);
    assert.deepEqual(listCheckpoints(dir), []);
  });

  it('skips and counts corrupt, missing and wrongly sized images and still completes', async () => {
    const copy = join(work, 'corrupt-data');
    cpSync(dataDir, copy, { recursive: true });
    const train = readdirSync(join(copy, 'train')).sort();
    writeFileSync(join(copy, 'train', train[0] as string), Buffer.from('not an image at all'));
    rmSync(join(copy, 'train', train[1] as string));
    const file = manifest('corrupt', join(work, 'ckpt-corrupt'), {
      data: { root: copy, synthetic: undefined, maxBadImageFraction: 0.2 },
      streaming: { saliency: true },
    });
    const r = await start(['train', file, '--json']).done;
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { skippedImages: number };
    assert.equal(summary.skippedImages, 4, 'two bad files, seen in each of two epochs');
    assert.match(r.stderr, /skipping image train\/\S+: .*(unreadable|not an image|format)/i);
    assert.match(r.stderr, /skipping image train\/\S+: .*missing/i);
    // saliency: true writes one heatmap per validation image into the checkpoint folder (in a pod,
    // the writable volume), beside the checkpoints it leaves alone.
    const saliency = join(work, 'ckpt-corrupt', 'saliency');
    const maps = readdirSync(saliency);
    assert.equal(maps.length, 4);
    assert.ok(listCheckpoints(join(work, 'ckpt-corrupt')).length > 0);
    const meta = await sharp(join(saliency, maps[0] as string)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 192, 192, 3]);
  });
});

/** Resolves once the child's debug log reports optimizer step `step` or later. */
function reachedStep(child: ChildProcess, step: number): Promise<void> {
  return new Promise((resolve) => {
    const onData = (d: Buffer): void => {
      for (const m of d.toString().matchAll(/"message":"optimizer step","step":(\d+)/g)) {
        if (Number(m[1]) < step) continue;
        child.stderr?.off('data', onData);
        resolve();
        return;
      }
    };
    child.stderr?.on('data', onData);
  });
}

describe('tilestream train on the tensorflow backend', { skip: tensorflowSkip() }, () => {
  // Its own folder: the suite above removes `work` when it ends. 8 images of 128² (2×2 tiles of 96),
  // batch 2, one epoch: 4 steps.
  const tfWork = mkdtempSync(join(tmpdir(), 'train-cmd-tf-'));
  const tfJob = (name: string) =>
    manifest(
      name,
      join(tfWork, `ckpt-${name}`),
      {
        data: {
          root: join(tfWork, 'data'),
          imageSize: { height: 128, width: 128 },
          synthetic: { count: 8, validationCount: 2, seed: 3, format: 'png' },
        },
        training: { backend: 'tensorflow', epochs: 1 },
      },
      tfWork,
    );
  let reference: Map<string, Float32Array>;
  let referenceLog = '';

  before(async () => {
    const run = await start(['train', tfJob('reference'), '--json']).done;
    referenceLog = run.stderr;
    assert.equal(run.code, 0, run.stderr.slice(-3000));
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as {
      status: string;
      backend: string;
      steps: number;
    };
    assert.deepEqual([summary.status, summary.backend, summary.steps], ['completed', 'tensorflow', 4]);
    reference = finalWeights(join(tfWork, 'ckpt-reference'));
  });

  after(() => rmSync(tfWork, { recursive: true, force: true }));

  it('logs which TensorFlow build it trains on', () => {
    assert.match(referenceLog, /@tensorflow\/tfjs-node loaded \(cpu build, TensorFlow 2\.21\.0, on the CPU/);
  });

  it('resumes after SIGKILL to the same weights as an uninterrupted run', async () => {
    const dir = join(tfWork, 'ckpt-killed');
    const file = tfJob('killed');
    const run = start(['train', file, '--json'], { TILESTREAM_LOG_LEVEL: 'debug' });
    await reachedStep(run.child, 2);
    run.child.kill('SIGKILL');
    const killed = await run.done;
    assert.equal(killed.signal, 'SIGKILL', 'the run was killed mid-run');
    const ckpt = readCheckpoint(listCheckpoints(dir)[0] as string);
    assert.ok(ckpt.step >= 1 && ckpt.step < 4, `killed after step ${ckpt.step} of 4`);
    const resumed = await start(['train', file, '--json']).done;
    assert.equal(resumed.code, 0, resumed.stderr.slice(-3000));
    assert.match(resumed.stderr, /resumed from/);
    const diff = maxAbsDiff(finalWeights(dir), reference);
    assert.ok(diff <= 1e-6, `weights differ by ${diff} after the kill`);
  });
});
