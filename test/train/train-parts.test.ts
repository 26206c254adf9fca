import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../trainer/backend/select.ts';
import {
  CheckpointError,
  listCheckpoints,
  loadLatestCheckpoint,
  readCheckpoint,
  writeCheckpoint,
} from '../../trainer/train/checkpoint.ts';
import { lossFor } from '../../trainer/train/losses.ts';
import { accuracy, rocAuc } from '../../trainer/train/metrics.ts';
import { createOptimizer } from '../../trainer/train/optimizers.ts';
import { learningRateAt } from '../../trainer/train/schedule.ts';

before(async () => {
  await initBackend('cpu');
});

describe('metrics', () => {
  it('ROC AUC equals the Mann–Whitney probability, ties counted half', () => {
    assert.equal(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 0.75);
    assert.equal(rocAuc([1, 1, 1, 1], [0, 1, 0, 1]), 0.5);
    assert.equal(rocAuc([3, 2, 1], [1, 1, 0]), 1);
    assert.ok(Number.isNaN(rocAuc([1, 2], [1, 1])));
    // A diverged model scores NaN: NaN, not an endless loop over ties.
    assert.ok(Number.isNaN(rocAuc([0.2, Number.NaN, 0.7], [0, 1, 1])));
  });
  it('accuracy', () => {
    assert.equal(accuracy([1, 0, 1, 1], [1, 1, 1, 0]), 0.5);
  });
});

describe('losses', () => {
  it('softmax cross-entropy, binary cross-entropy and MSE match their formulas', () => {
    const z = tf.tensor2d([[2, -1, 0.5]]);
    const ce = lossFor('softmax-cross-entropy', 2, 3)(z).dataSync()[0] as number;
    const lse = Math.log(Math.exp(2) + Math.exp(-1) + Math.exp(0.5));
    assert.ok(Math.abs(ce - (lse - 0.5)) < 1e-6);
    const b = tf.tensor2d([[-30]]);
    const bce = lossFor('binary-cross-entropy', 1, 1)(b).dataSync()[0] as number;
    assert.ok(Math.abs(bce - 30) < 1e-4, `stable for large |z|: ${bce}`);
    const mse = lossFor('mse', 1.5, 1)(tf.tensor2d([[0.5]])).dataSync()[0] as number;
    assert.ok(Math.abs(mse - 1) < 1e-7);
  });
  it('refuses labels that do not fit the loss', () => {
    assert.throws(() => lossFor('softmax-cross-entropy', 3, 3), /class index in \[0, 2\]/);
    assert.throws(() => lossFor('binary-cross-entropy', 0.5, 1), /must be 0 or 1/);
  });
});

describe('schedules', () => {
  it('warms up linearly, then cosine decays to the floor and steps by gamma', () => {
    assert.ok(Math.abs(learningRateAt(1, { type: 'cosine', warmupEpochs: 1 }, 0.5, 11) - 0.5) < 1e-6);
    assert.ok(Math.abs(learningRateAt(1, { type: 'cosine', warmupEpochs: 1 }, 6, 11) - 0.5) < 1e-9);
    assert.ok(learningRateAt(1, { type: 'cosine' }, 10, 10) < 1e-12);
    assert.equal(learningRateAt(0.1, { type: 'step', stepEpochs: 2, gamma: 0.5 }, 4.5, 10), 0.025);
  });
});

describe('optimizers', () => {
  it('SGD with momentum follows the PyTorch update rule', () => {
    const p = tf.variable(tf.tensor1d([1, 2]));
    const opt = createOptimizer({ type: 'sgd', momentum: 0.9, weightDecay: 0 });
    const params = new Map([['w', p]]);
    opt.apply(params, new Map([['w', tf.tensor1d([1, 1])]]), 0.1);
    opt.apply(params, new Map([['w', tf.tensor1d([1, 1])]]), 0.1);
    // buffers: 1, then 1.9; weights: 1 − 0.1 − 0.19 = 0.71
    assert.ok(Math.abs((p.dataSync()[0] as number) - 0.71) < 1e-6);
  });
  it('Adam state round-trips: restoring gives the same next step', () => {
    const run = (restoreAfter: boolean): number => {
      const p = tf.variable(tf.tensor1d([0.5, -0.5]));
      const params = new Map([['w', p]]);
      let opt = createOptimizer({ type: 'adam', weightDecay: 0.01 });
      opt.apply(params, new Map([['w', tf.tensor1d([0.3, -0.2])]]), 0.01);
      if (restoreAfter) {
        const { tensors, scalars } = opt.state();
        const copies = new Map([...tensors].map(([n, t]) => [n, t.clone()]));
        opt.dispose();
        opt = createOptimizer({ type: 'adam', weightDecay: 0.01 });
        opt.restore(copies, scalars);
      }
      opt.apply(params, new Map([['w', tf.tensor1d([0.1, 0.4])]]), 0.01);
      return p.dataSync()[1] as number;
    };
    assert.equal(run(true), run(false));
  });
});

describe('checkpoints', () => {
  const tensors = new Map([
    ['a', { shape: [2, 2], values: Float32Array.from([1, 2, 3, 4]) }],
    ['b', { shape: [3], values: Float32Array.from([0.5, -1, 7]) }],
  ]);

  const work = mkdtempSync(join(tmpdir(), 'ckpt-'));
  after(() => rmSync(work, { recursive: true, force: true }));
  const folder = (name: string) => {
    mkdirSync(join(work, name));
    return join(work, name);
  };

  it('round-trips tensors and metadata and keeps only the newest K', () => {
    const dir = folder('round-trip');
    for (let step = 1; step <= 5; step++) writeCheckpoint(dir, { step, meta: { epoch: step }, tensors }, 3);
    assert.deepEqual(
      listCheckpoints(dir).map((p) => basename(p)),
      ['ckpt-000000005.tsckpt', 'ckpt-000000004.tsckpt', 'ckpt-000000003.tsckpt'],
    );
    const back = readCheckpoint(listCheckpoints(dir)[0] as string);
    assert.equal(back.step, 5);
    assert.deepEqual(back.meta, { epoch: 5 });
    assert.deepEqual([...(back.tensors.get('b')?.values ?? [])], [0.5, -1, 7]);
    assert.equal(readdirSync(dir).filter((n) => n.includes('tmp')).length, 0);
  });

  it('falls back to the one before when the newest is truncated or corrupt, with a warning', () => {
    const dir = folder('fallback');
    writeCheckpoint(dir, { step: 1, meta: {}, tensors }, 3);
    const newest = writeCheckpoint(dir, { step: 2, meta: {}, tensors }, 3);
    const bytes = readFileSync(newest);
    writeFileSync(newest, bytes.subarray(0, bytes.length - 3));
    const warnings: string[] = [];
    const loaded = loadLatestCheckpoint(dir, (w) => warnings.push(w));
    assert.equal(loaded?.step, 1);
    assert.match(warnings[0] ?? '', /truncated/);
    bytes.writeUInt8((bytes.at(-1) as number) ^ 0xff, bytes.length - 1);
    writeFileSync(newest, bytes);
    assert.throws(
      () => readCheckpoint(newest),
      (e: unknown) => e instanceof CheckpointError && /checksum/.test(e.message),
    );
    assert.equal(
      loadLatestCheckpoint(folder('empty'), () => {}),
      undefined,
    );
  });
});
