// Reading ahead within an image: the same tiles, in the same order, each read once, with the next
// one already on its way when it is asked for.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../trainer/backend/select.ts';
import {
  type Float32Source,
  MAX_READ_AHEAD_BYTES,
  planReadAhead,
  type ReadAheadMemory,
  readAhead,
} from '../../trainer/data/read-ahead.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { linearLoss, relativeError } from '../../trainer/streaming/compare.ts';
import { tileGrid } from '../../trainer/streaming/geometry.ts';
import { initParams, type Network, streamedStep } from '../../trainer/streaming/network.ts';

/** An image of known values whose reads are logged and resolve after a macrotask (like a decoder). */
function countingSource(
  height: number,
  width: number,
  fail?: { top: number; left: number },
): Float32Source & { log: string[] } {
  const channels = 3;
  const value = (y: number, x: number, c: number) => Math.sin(y * 0.37 + x * 0.11 + c);
  const log: string[] = [];
  const readFloat32 = async (
    top: number,
    left: number,
    rows: number,
    cols: number,
  ): Promise<Float32Array> => {
    log.push(`${top},${left},${rows},${cols}`);
    await new Promise((r) => setTimeout(r, 1));
    if (fail && fail.top === top && fail.left === left)
      throw new Error(`tile (${top}, ${left}) does not decode`);
    const out = new Float32Array(rows * cols * channels);
    for (let y = 0; y < rows; y++)
      for (let x = 0; x < cols; x++)
        for (let c = 0; c < channels; c++) out[(y * cols + x) * channels + c] = value(top + y, left + x, c);
    return out;
  };
  return {
    height,
    width,
    channels,
    log,
    readFloat32,
    async read(top, left, rows, cols) {
      return tf.tensor4d(await readFloat32(top, left, rows, cols), [1, rows, cols, channels]);
    },
  };
}

describe('reading ahead within an image', () => {
  const MiB = 2 ** 20;
  const GiB = 2 ** 30;
  /** A pod with a 16 GiB limit, 1 GiB resident, a 6 GiB predicted step, slides (32 MiB to open). */
  const pod: ReadAheadMemory = {
    allowanceBytes: 16 * GiB,
    residentBytes: 1 * GiB,
    stepBytes: 6 * GiB,
    openedImageBytes: 32 * MiB,
  };
  const cases: [string, Partial<ReadAheadMemory>, number, Record<string, string>, number, boolean][] = [
    // name, memory, cpus, env → tile bytes, open ahead
    ['2 CPUs: nothing, whatever is left', {}, 2, {}, 0, false],
    ['9 GiB left: a quarter, capped at 512 MiB', {}, 8, {}, MAX_READ_AHEAD_BYTES - 32 * MiB, true],
    ['1 GiB left: 256 MiB, the next slide first', { stepBytes: 14 * GiB }, 8, {}, 224 * MiB, true],
    [
      '100 MiB left: 25 MiB, too little to open a slide ahead',
      { stepBytes: 15 * GiB - 100 * MiB },
      8,
      {},
      25 * MiB,
      false,
    ],
    ['the step takes it all: nothing', { stepBytes: 15.5 * GiB }, 8, {}, 0, false],
    [
      'on a GPU the step is not in RAM (stepBytes 0)',
      { allowanceBytes: 2 * GiB, stepBytes: 0 },
      8,
      {},
      224 * MiB,
      true,
    ],
    [
      'TILESTREAM_READ_AHEAD_MIB=16 on 2 CPUs: 16 MiB of tiles',
      {},
      2,
      { TILESTREAM_READ_AHEAD_MIB: '16' },
      16 * MiB,
      false,
    ],
    ['TILESTREAM_READ_AHEAD_MIB=0 on 8 CPUs: off', {}, 8, { TILESTREAM_READ_AHEAD_MIB: '0' }, 0, false],
    [
      'an RGBA PNG job of 8192×9600: 300 MiB to open, more than the 256 MiB budget',
      { stepBytes: 14 * GiB, openedImageBytes: 300 * MiB },
      8,
      {},
      256 * MiB,
      false,
    ],
  ];
  for (const [name, memory, cpus, env, tileBytes, openAhead] of cases) {
    it(`plans the read-ahead budget: ${name}`, () => {
      const m = { ...pod, ...memory };
      const got = planReadAhead(m, cpus, env);
      assert.deepEqual(
        { tileBytes: got.tileBytes, openAhead: got.openAhead },
        { tileBytes, openAhead },
        `planReadAhead(${JSON.stringify(m)}, ${cpus}, ${JSON.stringify(env)}): ${got.reason}`,
      );
    });
  }

  it('says where the budget came from', () => {
    assert.match(
      planReadAhead({ ...pod, stepBytes: 14 * GiB }, 8, {}).reason,
      /^read-ahead budget 256 MiB \(25% of the 1024 MiB left of 16384 MiB after 1024 MiB resident and the predicted step's 14336 MiB\): the next image opened ahead \(32 MiB\), 224 MiB of tiles$/,
    );
    assert.match(planReadAhead(pod, 2, {}).reason, /no read-ahead: 2 CPUs/);
  });

  const net: Network = {
    ...builtinNetwork('smallcnn', { width: 4, inputChannels: 3 }),
    pooling: 'max',
    outputs: 2,
  };

  it('a streamed step reads every tile once per pass, in order, ahead of use, with the same gradients', async () => {
    await initBackend('cpu');
    const grid = tileGrid(net.body, [192, 256], [96, 96]);
    const params = initParams(net, 5);
    const loss = linearLoss(2, 5);
    const direct = countingSource(192, 256);
    const plain = await streamedStep(net, params, direct, grid, loss);
    const ahead = countingSource(192, 256);
    const source = readAhead(ahead, grid, { maxBytes: 64 * 2 ** 20 });
    const streamed = await streamedStep(net, params, source, grid, loss);
    await source.settle();
    assert.deepEqual(ahead.log, direct.log, 'the same reads in the same order');
    assert.equal(ahead.log.length, 2 * grid.tiles.length);
    assert.equal(source.hits, 2 * grid.tiles.length - 1, 'every read but the first was already under way');
    for (const [name, g] of plain.grads) {
      assert.equal(relativeError((streamed.grads.get(name) as tf.Tensor).dataSync(), g.dataSync()), 0, name);
    }
    tf.dispose([...plain.grads.values(), ...streamed.grads.values(), ...params.values()]);
  });

  it('reads out of order are served directly; a budget below one tile reads nothing ahead', async () => {
    const grid = tileGrid(net.body, [192, 256], [96, 96]);
    const src = countingSource(192, 256);
    const source = readAhead(src, grid, { maxBytes: 1000 });
    const t = await source.read(10, 20, 5, 6);
    assert.deepEqual(
      Array.from(t.dataSync().slice(0, 3)),
      Array.from((await src.readFloat32(10, 20, 1, 1)).slice(0, 3)),
    );
    t.dispose();
    const first = grid.tiles[0];
    assert.ok(first);
    (await source.read(first.row.start, first.col.start, first.row.length, first.col.length)).dispose();
    assert.equal(source.hits, 0);
    assert.equal(src.log.length, 3, 'no read beyond the ones asked for');
  });

  it('a tile that fails to read fails the read that asks for it, and nothing is left unhandled', async () => {
    const grid = tileGrid(net.body, [192, 256], [96, 96]);
    const second = grid.tiles[1];
    assert.ok(second);
    const src = countingSource(192, 256, { top: second.row.start, left: second.col.start });
    const source = readAhead(src, grid, { maxBytes: 64 * 2 ** 20 });
    const first = grid.tiles[0];
    assert.ok(first);
    (await source.read(first.row.start, first.col.start, first.row.length, first.col.length)).dispose();
    await assert.rejects(
      async () => source.read(second.row.start, second.col.start, second.row.length, second.col.length),
      /does not decode/,
    );
    await source.settle();
  });
});
