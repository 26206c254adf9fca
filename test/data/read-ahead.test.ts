// Reading ahead within an image: the same tiles, in the same order, each read once, with the next
// one already on its way when it is asked for.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../trainer/backend/select.ts';
import { type Float32Source, readAhead, readAheadBytes } from '../../trainer/data/read-ahead.ts';
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
  it('reads ahead only with spare cores, unless TILESTREAM_READ_AHEAD_MIB says', () => {
    assert.equal(readAheadBytes(2, {}), 0);
    assert.equal(readAheadBytes(4, {}), 64 * 2 ** 20);
    assert.equal(readAheadBytes(2, { TILESTREAM_READ_AHEAD_MIB: '16' }), 16 * 2 ** 20);
    assert.equal(readAheadBytes(8, { TILESTREAM_READ_AHEAD_MIB: '0' }), 0);
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
