// spec.model.initialWeights: which tensors of a checkpoint a network takes, and the errors that name
// what does not fit (the full run from a checkpoint is in train-command.test.ts).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { networkParameterShapes } from '../../trainer/streaming/network-shape.ts';
import { type CheckpointTensor, writeCheckpoint } from '../../trainer/train/checkpoint.ts';
import {
  InitialWeightsError,
  matchInitialWeights,
  readInitialWeights,
} from '../../trainer/train/initial-weights.ts';

const work = mkdtempSync(join(tmpdir(), 'initial-weights-'));
after(() => rmSync(work, { recursive: true, force: true }));

function shapesOf(outputs: number, width = 4): Map<string, number[]> {
  const split = builtinNetwork('smallcnn', { inputChannels: 1, width });
  return networkParameterShapes({ ...split, pooling: 'max', outputs });
}

function tensorsFor(shapes: ReadonlyMap<string, readonly number[]>): Map<string, CheckpointTensor> {
  return new Map(
    [...shapes].map(([n, s], i) => [
      n,
      { shape: s, values: new Float32Array(s.reduce((a, b) => a * b, 1)).fill(i) },
    ]),
  );
}

describe('initial weights', () => {
  it('takes every weight of the same network', () => {
    const shapes = shapesOf(1);
    const source = tensorsFor(shapes);
    assert.deepEqual([...matchInitialWeights(source, shapes, 'w').keys()], [...shapes.keys()]);
  });

  it('leaves out a head of another size (new classes) and ignores extra tensors', () => {
    const source = tensorsFor(shapesOf(1));
    source.set('optimizer/body/conv1/kernel/m', { shape: [1], values: new Float32Array(1) });
    const taken = matchInitialWeights(source, shapesOf(3), 'w');
    assert.ok(taken.size > 0);
    assert.ok(![...taken.keys()].some((n) => n.startsWith('head/') || n.startsWith('optimizer/')));
    assert.equal(taken.size, [...shapesOf(3).keys()].filter((n) => !n.startsWith('head/')).length);
  });

  it('refuses weights of another width, naming the first mis-shaped body weight', () => {
    const source = tensorsFor(shapesOf(1, 8));
    assert.throws(
      () => matchInitialWeights(source, shapesOf(1, 4), 'pretrained.tsckpt'),
      (e: Error) =>
        e instanceof InitialWeightsError &&
        /pretrained\.tsckpt: 'body\/[^']+' has shape [\dx]+, the network needs [\dx]+/.test(e.message),
    );
  });

  it('refuses a checkpoint without the body weights', () => {
    const source = new Map([...tensorsFor(shapesOf(1))].filter(([n]) => n.startsWith('head/')));
    assert.throws(() => matchInitialWeights(source, shapesOf(1), 'w'), /w has no weight 'body\//);
  });

  it('reads a real checkpoint and names the file when it is missing or not a checkpoint', () => {
    const shapes = shapesOf(1);
    const file = writeCheckpoint(join(work, 'ok'), { step: 3, meta: {}, tensors: tensorsFor(shapes) }, 1);
    assert.equal(readInitialWeights(file, shapes).size, shapes.size);
    assert.throws(
      () => readInitialWeights(join(work, 'none.tsckpt'), shapes),
      /spec\.model\.initialWeights: cannot read .*none\.tsckpt \(no such file\)/,
    );
    const junk = join(work, 'junk.tsckpt');
    writeFileSync(junk, 'not weights');
    assert.throws(() => readInitialWeights(junk, shapes), /not a tilestream checkpoint/);
  });
});
