// Tensors on the error paths: an image that fails part-way (a tile that does not decode, in the
// forward or the backward pass, or a stop request between tiles) leaves no tensor behind, and the
// training loop, which carries on after a bad image, ends holding only its parameters.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { initBackend } from '../../trainer/backend/select.ts';
import { Dataset, type DatasetItem } from '../../trainer/data/dataset.ts';
import type { ImageSource } from '../../trainer/data/image.ts';
import { ImageError } from '../../trainer/data/image-error.ts';
import type { ManifestEntry } from '../../trainer/data/manifest.ts';
import { BodyBuilder } from '../../trainer/streaming/builder.ts';
import {
  streamBackward,
  streamForward,
  type TileSource,
  tensorSource,
} from '../../trainer/streaming/executor.ts';
import { tileGrid } from '../../trainer/streaming/geometry.ts';
import { initParams, type Network, scoped, streamedStep } from '../../trainer/streaming/network.ts';
import { type TrainConfig, train } from '../../trainer/train/loop.ts';
import { lossFor } from '../../trainer/train/losses.ts';

const SIDE = 64;

function smallNetwork(): Network {
  const b = new BodyBuilder('small', 1);
  const c1 = b.relu(b.conv(b.input, { filters: 4, kernel: 3, padding: 1 }));
  const p = b.maxPool(c1, { kernel: 2 });
  const body = b.build(b.relu(b.conv(p, { filters: 4, kernel: 3, stride: 2, padding: 1 })));
  return { body, pooling: 'max', outputs: 1 };
}

const net = smallNetwork();
const grid = tileGrid(net.body, [SIDE, SIDE], [32, 32]);
const TILES = grid.tiles.length;

/**
 * Fails the `failAt`-th read (0-based, counted over both passes) as a TIFF tile that does not decode.
 * Counts `read` and `readFloat32` alike: the training loop reads ahead through readFloat32.
 */
function failingReads<S extends Pick<TileSource, 'read'>>(source: S, failAt: number): S {
  let reads = 0;
  return new Proxy(source, {
    get(target, key, receiver) {
      if (key !== 'read' && key !== 'readFloat32') return Reflect.get(target, key, receiver);
      const method = Reflect.get(target, key, receiver) as (...a: number[]) => unknown;
      return (top: number, left: number, rows: number, cols: number) => {
        if (reads++ === failAt) {
          const error = new ImageError('bad.tiff', 'unreadable', `tile at ${top},${left} is corrupt`);
          if (key === 'read') throw error;
          return Promise.reject(error);
        }
        return method.call(target, top, left, rows, cols);
      };
    },
  });
}

const live = () => tf.memory().numTensors;

before(async () => {
  await initBackend('cpu');
});

describe('an image that fails part-way leaves no tensors', () => {
  let params: ReturnType<typeof initParams>;
  let image: tf.Tensor4D;
  let source: TileSource;
  const loss = lossFor('binary-cross-entropy', 1, 1);
  before(() => {
    params = initParams(net, 1);
    image = tf.randomUniform([1, SIDE, SIDE, 1], 0, 1, 'float32', 5) as tf.Tensor4D;
    source = tensorSource(image);
  });
  after(() => {
    for (const p of params.values()) p.dispose();
    image.dispose();
  });

  it(`the grid has several tiles (${TILES}), so a failure can come part-way`, () => {
    assert.ok(TILES >= 4, `${TILES} tiles`);
  });

  for (const failAt of [0, 1, TILES - 1, TILES, TILES + 2, 2 * TILES - 1]) {
    const pass = failAt < TILES ? 'forward' : 'backward';
    it(`streamedStep, read ${failAt} of ${2 * TILES} fails (${pass} pass)`, async () => {
      const before = live();
      await assert.rejects(
        streamedStep(net, params, failingReads(source, failAt), grid, loss),
        (e: unknown) => e instanceof ImageError && /is corrupt/.test(e.message),
      );
      assert.equal(live(), before, `tensors left after a ${pass}-pass failure`);
    });
  }

  it('streamForward and streamBackward alone, failing at their last tile', async () => {
    const body = scoped(params, 'body');
    const before = live();
    await assert.rejects(streamForward(net.body, body, failingReads(source, TILES - 1), grid), ImageError);
    assert.equal(live(), before, 'forward');
    const F = await streamForward(net.body, body, source, grid);
    const dF = tf.onesLike(F);
    await assert.rejects(
      streamBackward(net.body, body, failingReads(source, TILES - 1), grid, dF, { inputGrad: true }),
      ImageError,
    );
    F.dispose();
    dF.dispose();
    assert.equal(live(), before, 'backward');
  });

  it('a stop request between tiles (an error thrown by the progress callback) leaves none either', async () => {
    for (const stopAt of [1, TILES + 1]) {
      const before = live();
      let calls = 0;
      await assert.rejects(
        streamedStep(net, params, source, grid, loss, {
          progress: () => {
            if (++calls > stopAt) throw new Error('stop requested');
          },
        }),
        /stop requested/,
      );
      assert.equal(live(), before, `stop after ${stopAt} tiles`);
    }
  });
});

describe('the training loop carries on after bad images and ends with only its parameters', () => {
  const work = mkdtempSync(join(tmpdir(), 'error-path-tensors-'));
  after(() => rmSync(work, { recursive: true, force: true }));
  const entries: ManifestEntry[] = [];
  // Which images fail, and at which read: two in the forward pass, two in the backward pass.
  const failures = new Map([
    ['img1.png', 1],
    ['img2.png', TILES + 1],
    ['img4.png', TILES - 1],
    ['img6.png', 2 * TILES - 1],
  ]);

  before(async () => {
    for (let i = 0; i < 8; i++) {
      const px = Buffer.alloc(SIDE * SIDE);
      for (let j = 0; j < px.length; j++) px[j] = (j * (i + 3)) % 251;
      const path = join(work, `img${i}.png`);
      await sharp(px, { raw: { width: SIDE, height: SIDE, channels: 1 } })
        .png()
        .toFile(path);
      entries.push({ path, relativePath: `img${i}.png`, label: i % 2, line: i + 2 });
    }
  });

  /** The real dataset, with some images' reads failing part-way (as a corrupt TIFF tile does). */
  class FlakyDataset extends Dataset {
    bad = 0;
    override async *items(epoch: number): AsyncGenerator<DatasetItem> {
      for await (const item of super.items(epoch)) {
        const failAt = failures.get(item.entry.relativePath);
        if (failAt !== undefined) item.image = failingReads<ImageSource>(item.image, failAt);
        yield item;
      }
    }
    override reportBad(item: DatasetItem, error: ImageError): void {
      this.bad++;
      super.reportBad(item, error);
    }
  }

  const config = (over: Partial<TrainConfig> = {}): TrainConfig => ({
    network: net,
    image: [SIDE, SIDE],
    grid,
    epochs: 2,
    batchSize: 3,
    learningRate: 0.01,
    schedule: { type: 'constant' },
    optimizer: { type: 'adam', weightDecay: 0 },
    loss: 'binary-cross-entropy',
    seed: 3,
    ...over,
  });
  const dataset = () =>
    new FlakyDataset({
      entries,
      image: { height: SIDE, width: SIDE, channels: 1 },
      seed: 3,
      maxBadFraction: 0.5,
    });
  const quiet = { log: () => {} };

  it('fresh run, resumed run and a run from initial weights: live tensors return to the baseline', async () => {
    const dir = join(work, 'checkpoints');
    const before = live();

    const first = dataset();
    const r1 = await train(config({ checkpoint: { dir, everySteps: 1, keep: 2 } }), first, undefined, quiet);
    assert.equal(r1.status, 'completed');
    assert.equal(first.bad, 2 * failures.size, 'every bad image was met and skipped, in both epochs');
    const weights = new Map(
      [...r1.params].map(([n, p]) => [n, { shape: p.shape, values: p.dataSync() as Float32Array }]),
    );
    for (const p of r1.params.values()) p.dispose();
    assert.equal(live(), before, 'after a fresh run with bad images');

    // One more epoch from the checkpoint: the parameters and optimizer slots are loaded by assign.
    const r2 = await train(
      config({ epochs: 3, checkpoint: { dir, everySteps: 1, keep: 2 } }),
      dataset(),
      undefined,
      quiet,
    );
    assert.ok(r2.resumedFrom);
    for (const p of r2.params.values()) p.dispose();
    assert.equal(live(), before, 'after a resumed run');

    const r3 = await train(config({ epochs: 1, initialWeights: weights }), dataset(), undefined, quiet);
    for (const p of r3.params.values()) p.dispose();
    assert.equal(live(), before, 'after a run from initial weights');
  });
});
