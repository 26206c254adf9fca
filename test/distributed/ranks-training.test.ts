// `tilestream train` on a job of several ranks, as local processes on the CPU through the collective
// engine (TensorFlow's collective ops of the native build): 2 and 4 ranks end with the weights of
// the single-rank run accumulating the same batch; a rank SIGKILLed mid-run has the launcher restart
// every rank from the checkpoint, ending equal to an uninterrupted run; a batch that does not split
// over the ranks is refused before anything starts.
//
// Tolerance: parameters and Adam moments within 1e-5 absolute of the single-rank run (the ranks sum
// their partial gradient sums in another order than one rank accumulating them; observed ~2e-7).

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { findFreePorts } from '../../trainer/distributed/launcher.ts';
import { listCheckpoints, readCheckpoint } from '../../trainer/train/checkpoint.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'ranks-'));
const TOLERANCE = 1e-5;
/** 8 images, batch 4: 2 steps an epoch, 4 in all. */
const EPOCHS = 2;
const STEPS = 4;

function manifest(name: string, replicas: number, batchSize = 4): { file: string; checkpoints: string } {
  const checkpoints = join(work, `ckpt-${name}`);
  const job = {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name },
    spec: {
      model: { architecture: 'smallcnn', width: 4, head: { pooling: 'max', classes: 1 } },
      data: {
        root: join(work, 'data'),
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: 128, width: 128 },
        channels: 1,
        normalization: { mean: [0.5], std: [0.05] },
        synthetic: { count: 8, validationCount: 3, seed: 3, format: 'png' },
      },
      training: {
        epochs: EPOCHS,
        batchSize,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.003 },
        seed: 7,
        backend: 'wasm',
      },
      streaming: { tileSize: 80 },
      resources: { gpus: 0, replicas },
      checkpoint: { path: checkpoints, everySteps: 1, keep: 2 },
      runPolicy: { backoffLimit: 2 },
    },
  };
  const file = join(work, `${name}.yaml`);
  writeFileSync(file, stringify(job));
  return { file, checkpoints };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<Run>; stderr: () => string } {
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
  const done = new Promise<Run>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { child, done, stderr: () => stderr };
}

function finalState(dir: string): { step: number; tensors: Map<string, Float32Array> } {
  const newest = listCheckpoints(dir)[0];
  assert.ok(newest, `no checkpoint in ${dir}`);
  const ckpt = readCheckpoint(newest);
  return { step: ckpt.step, tensors: new Map([...ckpt.tensors].map(([n, t]) => [n, t.values])) };
}

function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let worst = 0;
  for (const [n, x] of a) {
    const y = b.get(n) as Float32Array;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs((x[i] as number) - (y[i] as number)));
  }
  return worst;
}

interface Summary {
  status: string;
  steps: number;
  resumedFrom?: string;
  trained: { images: number };
  history: { trainLoss: number; validationAuc: number; validationLoss: number }[];
  distributed?: { worldSize: number; allReduce: { calls: number; seconds: number } };
}

const summaryOf = (run: Run): Summary =>
  JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as Summary;

describe('tilestream train with several ranks', { skip: tensorflowSkip() }, () => {
  let reference: { step: number; tensors: Map<string, Float32Array> };
  let referenceSummary: Summary;

  before(async () => {
    // One rank accumulating the batch of 4; it also generates the dataset the other runs share.
    const { file, checkpoints } = manifest('one', 1);
    const run = await start(['train', file, '--json']).done;
    assert.equal(run.code, 0, run.stderr);
    reference = finalState(checkpoints);
    referenceSummary = summaryOf(run);
    assert.equal(reference.step, STEPS);
    assert.equal(referenceSummary.distributed, undefined, 'one rank makes no collective call');
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  for (const ranks of [2, 4]) {
    // 2 ranks as the operator's pod runs them (one replica of two ranks, its environment); 4 locally.
    const inPod = ranks === 2;
    it(`${ranks} ranks end with the single-rank weights${inPod ? ' (in a pod)' : ''}`, async () => {
      const { file, checkpoints } = manifest(`ranks-${ranks}`, ranks);
      const env: Record<string, string> = inPod
        ? {
            TILESTREAM_REPLICAS: '1',
            TILESTREAM_RANKS_PER_REPLICA: '2',
            JOB_COMPLETION_INDEX: '0',
            TILESTREAM_REPLICA_HOSTS: 'localhost',
            TILESTREAM_COLLECTIVE_PORT: String(await findFreePorts(31000, 2)),
          }
        : {};
      const run = await start(['train', file, '--json'], env).done;
      assert.equal(run.code, 0, run.stderr.slice(-4000));
      const summary = summaryOf(run);
      assert.equal(summary.status, 'completed');
      assert.equal(summary.steps, STEPS);
      assert.equal(summary.trained.images, 8 * EPOCHS, 'every image trained once an epoch, over all ranks');
      assert.equal(summary.distributed?.worldSize, ranks);
      assert.equal(summary.distributed?.allReduce.calls, STEPS, 'one all-reduce per optimizer step');
      const state = finalState(checkpoints);
      assert.equal(state.step, STEPS);
      const diff = maxAbsDiff(reference.tensors, state.tensors);
      assert.ok(diff <= TOLERANCE, `parameters and optimizer state differ by ${diff} (> ${TOLERANCE})`);
      // Validation is split over the ranks and gathered: the same metrics as one rank.
      const [a, b] = [summary.history.at(-1), referenceSummary.history.at(-1)];
      assert.ok(Math.abs((a?.validationLoss as number) - (b?.validationLoss as number)) < 1e-4);
      assert.equal(a?.validationAuc, b?.validationAuc);
      // Every line is the launcher's or labelled with its rank; rank 0 alone prints the summary on stdout.
      const lines = run.stderr.trim().split('\n');
      const unlabelled = lines.filter(
        (l) => !/^(\{"rank":\d+,|\[rank \d+\] |\{"level":"\w+","message":".*"launcher":true)/.test(l),
      );
      assert.deepEqual(unlabelled, []);
      for (let r = 1; r < ranks; r++)
        assert.match(run.stderr, new RegExp(`started rank ${r} \\(pid \\d+\\)`));
      assert.equal(run.stdout.trim().split('\n').length, 1);
    });
  }

  it('restarts every rank from the checkpoint when one is SIGKILLed mid-run, ending equal', async () => {
    const { file, checkpoints } = manifest('killed', 2);
    const run = start(['train', file, '--json']);
    // Kill rank 1 once the first step's checkpoint is there (rank 1 is then streaming step 2).
    const deadline = Date.now() + 120_000;
    let pid: number | undefined;
    while (Date.now() < deadline) {
      pid ??= Number(/started rank 1 \(pid (\d+)\)/.exec(run.stderr())?.[1]) || undefined;
      if (pid !== undefined && listCheckpoints(checkpoints).length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(pid !== undefined && existsSync(checkpoints), 'rank 1 started and a checkpoint was written');
    const killedAt = finalState(checkpoints).step;
    assert.ok(killedAt < STEPS, 'killed before the end');
    process.kill(pid, 'SIGKILL');
    const done = await run.done;
    assert.equal(done.code, 0, done.stderr.slice(-4000));
    assert.match(done.stderr, /rank 1 exited with code 137: restarting all 2 ranks from the last checkpoint/);
    const summary = summaryOf(done);
    assert.ok(summary.resumedFrom, 'the restarted ranks resumed from a checkpoint');
    assert.equal(summary.steps, STEPS);
    const diff = maxAbsDiff(reference.tensors, finalState(checkpoints).tensors);
    assert.ok(diff <= TOLERANCE, `after the restart the weights differ by ${diff} (> ${TOLERANCE})`);
  });

  it('refuses a batch that does not split over the ranks, naming both fields', async () => {
    const { file } = manifest('uneven', 4, 6);
    const run = await start(['train', file, '--json']).done;
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /batchSize/);
    assert.match(run.stderr, /replicas/);
    assert.doesNotMatch(run.stderr, /started rank/, 'no rank was started');
  });
});
