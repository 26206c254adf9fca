import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import { isOutOfMemory } from '../../trainer/train/exit-codes.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

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

/** One size² grey PNG of hash noise (so PNG cannot shrink it) and a train.csv naming it, in dir. */
async function writeNoiseDataset(dir: string, size: number): Promise<void> {
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const sharp = (await import('sharp')).default;
  const pixels = Buffer.alloc(size * size);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  await sharp(pixels, { raw: { width: size, height: size, channels: 1 } })
    .png({ compressionLevel: 1 })
    .toFile(join(dir, 'a.png'));
  writeFileSync(join(dir, 'train.csv'), 'path,label\na.png,1\n');
}

describe('tilestream train out of memory', () => {
  it('exits with code 3 when a tile does not fit the wasm heap', async (t) => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const { stringify } = await import('yaml');
    const dir = mkdtempSync(join(tmpdir(), 'oom-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const size = 4096;
    await writeNoiseDataset(dir, size);
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

describe('tilestream train out of memory on the tensorflow backend', { skip: tensorflowSkip() }, () => {
  it('exits with code 3 when TensorFlow cannot allocate a tensor', async (t) => {
    const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const { stringify } = await import('yaml');
    const tfl = await import('@tensorflow/tfjs-layers');
    const { initBackend } = await import('../../trainer/backend/select.ts');
    const { modelJsonDoc } = await import('../fixtures/tfjs/save-layers-model.ts');
    const dir = mkdtempSync(join(tmpdir(), 'oom-tf-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));

    // The failing allocation must come from an op that reports it: TensorFlow 2.21's oneDNN
    // convolutions log "OOM when allocating tensor" and then segfault (mkl_util.h:848, exit 139),
    // as does the depthwise one. So the body is one Concatenate of 2048 copies of the 1-channel
    // input: 2048² × 2048 float32 = 32 GiB in ConcatV2, which reports RESOURCE_EXHAUSTED. Under a
    // 16 GiB address-space limit (the process starts at about 11 GiB of reservations) it fails at
    // once, without touching memory; TensorFlow's allocator then waits 10 s for memory to free up.
    await initBackend('cpu');
    const input = tfl.input({ shape: [null, null, 1], name: 'image' });
    const copies = Array.from({ length: 2048 }, () => input);
    const wide = tfl.layers.concatenate({ name: 'wide' }).apply(copies) as SymbolicTensor;
    writeFileSync(
      join(dir, 'model.json'),
      JSON.stringify(await modelJsonDoc(tfl.model({ inputs: input, outputs: wide }))),
    );
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(0));
    const size = 2048;
    await writeNoiseDataset(dir, size);
    writeFileSync(
      join(dir, 'job.yaml'),
      stringify({
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name: 'oom-tf' },
        spec: {
          model: {
            architecture: 'tfjs',
            tfjsModel: 'model.json',
            bodyEnd: 'wide',
            head: { pooling: 'max', classes: 1 },
          },
          data: { root: '.', train: 'train.csv', imageSize: { height: size, width: size }, channels: 1 },
          training: { epochs: 1, batchSize: 1, loss: 'binary-cross-entropy', backend: 'tensorflow' },
          streaming: { tileSize: size },
        },
      }),
    );
    const bin = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
    const limitKiB = 16 * 1024 * 1024;
    // `&&`: without the limit the child must not run (it would really try to take 32 GiB).
    const r = spawnSync(
      'bash',
      [
        '-c',
        `ulimit -v ${limitKiB} && exec "$@"`,
        'bash',
        process.execPath,
        bin,
        'train',
        join(dir, 'job.yaml'),
        '--json',
        // Past the planner's check against the memory allowance (which alone would exit 3 before
        // training, test/train/memory-limit.test.ts), so that TensorFlow's own OOM is what is tested.
        '--memory-budget',
        '1Ti',
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(r.status, 3, `signal ${r.signal}\n${r.stderr.slice(-3000)}`);
    assert.match(
      r.stderr,
      /out of memory: .*OOM when allocating tensor with shape\[1,2048,2048,2048\].*retry with a smaller tile/,
    );
  });
});
