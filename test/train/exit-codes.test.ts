import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isOutOfMemory } from '../../trainer/train/exit-codes.ts';

describe('out-of-memory detection', () => {
  it('recognises what TensorFlow and the wasm backend raise when memory runs out', () => {
    for (const [name, message] of [
      ['Error', 'OOM when allocating tensor with shape[1,64,4096,4096] and type float'],
      ['Error', 'ResourceExhaustedError: failed to allocate'],
      ['RuntimeError', 'Aborted(). Build with -sASSERTIONS for more info.'],
      ['RuntimeError', 'memory access out of bounds'],
      ['RangeError', 'Invalid typed array length: 8388608'],
      ['RangeError', 'Array buffer allocation failed'],
    ] as const) {
      const e = new Error(message);
      e.name = name;
      assert.ok(isOutOfMemory(e), message);
    }
  });
  it('counts every WebAssembly trap as out of memory (the wasm heap fails that way)', () => {
    // The global WebAssembly is not in the TypeScript libs this project uses.
    const { RuntimeError } = (
      globalThis as unknown as { WebAssembly: { RuntimeError: new (m: string) => Error } }
    ).WebAssembly;
    assert.ok(isOutOfMemory(new RuntimeError('null function or function signature mismatch')));
    assert.ok(isOutOfMemory(new RuntimeError('table index is out of bounds')));
  });
  it('does not mistake other failures for out of memory', () => {
    for (const message of [
      "Cannot read properties of undefined (reading 'shape')",
      'ENOENT: no such file',
      'Aborting: bad label',
    ]) {
      assert.equal(isOutOfMemory(new Error(message)), false, message);
    }
  });
  it('counts a TypeError as out of memory only when the wasm heap had nearly reached 4 GiB', () => {
    // A failed allocation can hand tfjs nothing, which it then reads: a TypeError, not a trap.
    const e = new TypeError("Cannot read properties of undefined (reading 'shape')");
    const GiB = 1024 ** 3;
    assert.equal(isOutOfMemory(e), false);
    assert.equal(isOutOfMemory(e, { wasmHeapBytes: 1.2 * GiB }), false, 'a bug on a roomy heap stays a bug');
    assert.equal(isOutOfMemory(e, { wasmHeapBytes: 3.9 * GiB }), true);
    assert.equal(isOutOfMemory(new Error('ENOENT: no such file'), { wasmHeapBytes: 3.9 * GiB }), false);
  });
});

describe('tilestream train out of memory', () => {
  it('exits with code 3 when a tile does not fit the wasm heap', async (t) => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const sharp = (await import('sharp')).default;
    const { stringify } = await import('yaml');
    const dir = mkdtempSync(join(tmpdir(), 'oom-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const size = 4096;
    const pixels = Buffer.alloc(size * size);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
    await sharp(pixels, { raw: { width: size, height: size, channels: 1 } })
      .png({ compressionLevel: 1 })
      .toFile(join(dir, 'a.png'));
    writeFileSync(join(dir, 'train.csv'), 'path,label\na.png,1\n');
    writeFileSync(
      join(dir, 'job.yaml'),
      stringify({
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name: 'oom' },
        spec: {
          // The first convolution's output alone, 4096² × 128 channels of float32, is 8 GiB: more than
          // the whole 4 GB wasm heap, so it fails at once, before any long computation.
          model: { architecture: 'smallcnn', width: 256, head: { pooling: 'max', classes: 1 } },
          data: { root: '.', train: 'train.csv', imageSize: { height: size, width: size }, channels: 1 },
          training: { epochs: 1, batchSize: 1, loss: 'binary-cross-entropy', backend: 'wasm' },
          streaming: { tileSize: size },
        },
      }),
    );
    const bin = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
    const r = spawnSync(process.execPath, [bin, 'train', join(dir, 'job.yaml'), '--json'], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 3, r.stderr.slice(-2000));
    assert.match(r.stderr, /out of memory: .*retry with a smaller tile/);
  });
});
