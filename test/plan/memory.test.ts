// The memory model on its own (no backend): hand-counted cases, the bookkeeping invariants over
// random bodies, the effect of each option, and that the planner loads no TensorFlow.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import {
  dominantTerm,
  overheadFactor,
  type PlanNetwork,
  parameterCount,
  predictConventional,
  predictStreamed,
  TERMS,
} from '../../trainer/plan/memory.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { BodyBuilder } from '../../trainer/streaming/builder.ts';
import { minimumTile, tileGrid } from '../../trainer/streaming/geometry.ts';
import { parameterShapes } from '../../trainer/streaming/graph.ts';
import { drawLayers, mulberry32, randomBody } from '../../trainer/streaming/random-body.ts';

const sum = (b: Record<string, number>): number => Object.values(b).reduce((a, v) => a + v, 0);

function oneByOne(): PlanNetwork {
  const b = new BodyBuilder('one', 1);
  return {
    body: b.build(b.conv(b.input, { filters: 1, kernel: 1, bias: false })),
    pooling: 'avg',
    outputs: 1,
  };
}

describe('memory model: hand-counted cases', () => {
  it('a 1×1 conv with average pooling: image, output, and the mean gradient (ones, product, quotient)', () => {
    // Buffers at the peak, counted by hand from tfjs's code: the image x and the conv output y
    // (saved by Conv2D and Mean, shared on cpu); the Mean gradient materialises ones(y.shape),
    // their product with dy and the quotient by H·W: 5 image-sized float buffers in all.
    const H = 64;
    const W = 48;
    const p = predictConventional(oneByOne(), [H, W], { backend: 'cpu' });
    const image = 4 * H * W;
    assert.ok(p.bufferPeakBytes >= 5 * image, `${p.bufferPeakBytes} < ${5 * image}`);
    assert.ok(
      p.bufferPeakBytes <= 5 * image + 256,
      `${p.bufferPeakBytes} ≫ ${5 * image} (only scalars may add)`,
    );
    assert.equal(p.workspaceBytes, 0);
    assert.equal(p.requiredBytes, p.bufferPeakBytes);
  });

  it('conv+relu: the tape keeps the conv output for relu (the conv input is the image itself)', () => {
    const b = new BodyBuilder('cr', 1);
    const body = b.build(b.relu(b.conv(b.input, { filters: 1, kernel: 1, bias: false })));
    const net: PlanNetwork = { body, pooling: 'max', outputs: 1 };
    const N = 128;
    const p = predictConventional(net, [N, N], { backend: 'wasm' });
    // Conv2D saves x (the image, counted as the image) and the filter; Relu saves its input, the
    // conv output: one float per pixel beyond the image.
    assert.equal(p.savedBytesPerPixel, 4);
    assert.equal(p.breakdown.image, 4 * N * N);
  });

  it('optimizer state: Adam keeps two slots per parameter, momentum one, plain SGD none', () => {
    const net: PlanNetwork = { ...builtinNetwork('smallcnn', { width: 8 }), pooling: 'max', outputs: 2 };
    const paramBytes = 4 * parameterCount(net);
    for (const [optimizer, slots] of [
      ['none', 0],
      ['sgd', 0],
      ['momentum', 1],
      ['adam', 2],
    ] as const) {
      const p = predictStreamed(net, [256, 256], [128, 128], { optimizer });
      assert.equal(p.breakdown.optimizerState, slots * paramBytes, optimizer);
      assert.equal(p.breakdown.parameters, paramBytes);
    }
  });

  it('float16 halves the float tensors (the uint8 image stays)', () => {
    const net: PlanNetwork = { ...builtinNetwork('resnet18', { width: 16 }), pooling: 'max', outputs: 2 };
    const f32 = predictStreamed(net, [1024, 1024], [512, 512], { dtype: 'float32', backend: 'cpu' });
    const f16 = predictStreamed(net, [1024, 1024], [512, 512], { dtype: 'float16', backend: 'cpu' });
    const image = f32.breakdown.image;
    assert.equal(f16.breakdown.image, image);
    const ratio = (f16.bufferPeakBytes - image) / (f32.bufferPeakBytes - image);
    assert.ok(ratio > 0.49 && ratio < 0.51, `ratio ${ratio}`);
  });

  it('image storage: uint8 counts H·W·C bytes, float32 four times that, none nothing', () => {
    const net: PlanNetwork = {
      ...builtinNetwork('smallcnn', { width: 8, inputChannels: 3 }),
      pooling: 'max',
      outputs: 2,
    };
    const at = (imageStorage: 'uint8' | 'float32' | 'none') =>
      predictStreamed(net, [512, 512], [256, 256], { imageStorage, backend: 'cpu' }).breakdown.image;
    assert.equal(at('uint8'), 512 * 512 * 3);
    assert.equal(at('float32'), 4 * 512 * 512 * 3);
    assert.equal(at('none'), 0);
  });
});

describe('memory model: invariants', () => {
  const layer = fc.record({
    kind: fc.constantFrom('conv', 'conv', 'act', 'max', 'avg', 'res', 'bottleneck', 'concat'),
    k: fc.integer({ min: 1, max: 5 }),
    s: fc.integer({ min: 1, max: 2 }),
    d: fc.integer({ min: 1, max: 2 }),
    pad: fc.boolean(),
    groups: fc.boolean(),
    fn: fc.nat(),
  });

  it('breakdowns add up; tfjs accounting is never below the buffers on cpu; tiles never need more than the whole image as one tile', () => {
    fc.assert(
      fc.property(
        fc.array(layer, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 2, max: 5 }),
        fc.constantFrom('cpu' as const, 'wasm' as const, 'tensorflow' as const),
        (layers, scale, backend) => {
          const body = randomBody(layers);
          if (parameterShapes(body).size === 0) return;
          let min: number;
          try {
            min = Math.max(minimumTile(body, 0), minimumTile(body, 1));
          } catch {
            return;
          }
          const N = min * scale;
          const net: PlanNetwork = { body, pooling: 'avg', outputs: 2 };
          let s: ReturnType<typeof predictStreamed>;
          try {
            s = predictStreamed(net, [N, N], [min, min], { backend, imageStorage: 'float32' });
          } catch {
            return; // an image size the body cannot tile (geometry refuses it with its own error)
          }
          assert.equal(sum(s.breakdown), s.requiredBytes);
          assert.equal(sum(s.tfjsBreakdown), s.peakBytes);
          assert.equal(s.requiredBytes, s.bufferPeakBytes + s.workspaceBytes);
          if (backend === 'cpu') assert.ok(s.peakBytes >= s.bufferPeakBytes);
          for (const t of TERMS) assert.ok(s.breakdown[t] >= 0, `${t} negative`);
          const whole = predictStreamed(net, [N, N], [N, N], { backend, imageStorage: 'float32' });
          assert.ok(s.bufferPeakBytes <= whole.bufferPeakBytes * 1.0001 + 1024);
        },
      ),
      { numRuns: 60, seed: 4 },
    );
  });

  it('streamed memory grows with the tile and stays far below conventional on large images', () => {
    const net: PlanNetwork = { ...builtinNetwork('resnet18', {}), pooling: 'max', outputs: 2 };
    const image: [number, number] = [4096, 4096];
    let prev = 0;
    for (const t of [256, 512, 1024, 2048]) {
      const p = predictStreamed(net, image, [t, t]);
      assert.ok(p.requiredBytes > prev, `tile ${t}: ${p.requiredBytes} not above ${prev}`);
      prev = p.requiredBytes;
    }
    const conv = predictConventional(net, image);
    assert.ok(predictStreamed(net, image, [512, 512]).requiredBytes < conv.requiredBytes / 10);
  });

  it('at a huge image with a small tile, what grows with the image dominates', () => {
    const net: PlanNetwork = { ...builtinNetwork('smallcnn', { width: 16 }), pooling: 'max', outputs: 2 };
    const p = predictStreamed(net, [32768, 32768], [128, 128]);
    assert.ok(['featureMap', 'featureMapGradient', 'head', 'image'].includes(dominantTerm(p.breakdown)));
  });

  it('the per-pixel tape of a ResNet-34 body is about twice the PyTorch count (tfjs saves every Add and Multiply input)', () => {
    // streaming-algorithm.md §4.3 counts ≈628 B/px for conv1..layer3 in PyTorch (fp32).
    const net: PlanNetwork = { ...builtinNetwork('resnet34', {}), pooling: 'max', outputs: 2 };
    const p = predictStreamed(net, [4096, 4096], [2048, 2048]);
    assert.ok(p.savedBytesPerPixel > 628 && p.savedBytesPerPixel < 3 * 628, `${p.savedBytesPerPixel} B/px`);
  });

  it('overhead factor: the tile area processed over the image area, and time ≈ 4A/3', () => {
    const net: PlanNetwork = { ...builtinNetwork('smallcnn', { width: 8 }), pooling: 'max', outputs: 2 };
    const o = overheadFactor(net, [1024, 1024], [256, 256]);
    const g = tileGrid(net.body, [1024, 1024], [256, 256]);
    assert.equal(o.areaFactor, g.areaFactor);
    assert.equal(o.tiles, g.tiles.length);
    assert.ok(Math.abs(o.timeRatio - (4 * o.areaFactor) / 3) < 1e-12);
    assert.ok(o.areaFactor > 1);
    assert.equal(overheadFactor(net, [1024, 1024], [1024, 1024]).areaFactor, 1);
  });

  it('random bodies of the generator the calibration uses all simulate', () => {
    const rand = mulberry32(11);
    for (let i = 0; i < 40; i++) {
      const body = randomBody(drawLayers(rand));
      if (parameterShapes(body).size === 0) continue;
      let min: number;
      try {
        min = Math.max(minimumTile(body, 0), minimumTile(body, 1));
      } catch {
        continue;
      }
      const net: PlanNetwork = { body, pooling: 'max', outputs: 2 };
      const p = predictConventional(net, [2 * min, 2 * min], { backend: 'wasm' });
      assert.ok(p.requiredBytes > 0);
    }
  });
});

describe('the planner imports no TensorFlow', () => {
  it('loading trainer/plan (model, planner, inputs, run, report, CLI) resolves no @tensorflow module', () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(s, c, next) { if (s.includes('@tensorflow')) seen.push(s); return next(s, c); } });
      await import('./trainer/plan/planner.ts');
      await import('./trainer/plan/memory.ts');
      await import('./trainer/plan/inputs.ts');
      await import('./trainer/plan/run.ts');
      await import('./trainer/plan/format.ts');
      await import('./trainer/plan/cli.ts');
      console.log(JSON.stringify(seen));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), []);
  });
});
