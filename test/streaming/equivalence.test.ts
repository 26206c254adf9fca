// The invariant every part of tilestream protects: streamed outputs, parameter gradients and input
// gradients equal conventional full-image training (DESIGN §1), on the wasm, cpu and native
// TensorFlow backends. Each case reports the worst relative errors it measured as a diagnostic.

import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { initBackend } from '../../trainer/backend/select.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { BodyBuilder } from '../../trainer/streaming/builder.ts';
import { compareStep, type Discrepancy, linearLoss } from '../../trainer/streaming/compare.ts';
import { tensorSource } from '../../trainer/streaming/executor.ts';
import { axisProfile, minimumTile, tileGrid } from '../../trainer/streaming/geometry.ts';
import { initParams, type Network, streamedStep } from '../../trainer/streaming/network.ts';
import { type LayerDraw, randomBody } from '../../trainer/streaming/random-body.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

const OUTPUT_TOL = 1e-5;
const PARAM_TOL = 1e-4;
const INPUT_TOL = 1e-5;

/** The worst errors seen by one test, per category, reported with t.diagnostic. */
class Worst {
  output = 0;
  paramGrad = 0;
  inputGrad = 0;
  worstParam = '';
  add(d: Discrepancy): void {
    this.output = Math.max(this.output, d.output);
    this.inputGrad = Math.max(this.inputGrad, d.inputGrad);
    if (d.paramGrad >= this.paramGrad) {
      this.paramGrad = d.paramGrad;
      this.worstParam = d.worstParam;
    }
  }
  report(t: TestContext, backend: string): void {
    t.diagnostic(
      `worst relative errors on ${backend}: output ${this.output.toExponential(2)} (tol ${OUTPUT_TOL}), ` +
        `param grad ${this.paramGrad.toExponential(2)} at ${this.worstParam || '-'} (tol ${PARAM_TOL}), ` +
        `input grad ${this.inputGrad.toExponential(2)} (tol ${INPUT_TOL})`,
    );
  }
}

function assertEquivalent(d: Discrepancy, what: string, worst?: Worst): void {
  worst?.add(d);
  assert.ok(d.output <= OUTPUT_TOL, `${what}: output differs by ${d.output} (relative)`);
  assert.ok(
    d.paramGrad <= PARAM_TOL,
    `${what}: gradient of ${d.worstParam} differs by ${d.paramGrad} (relative)`,
  );
  assert.ok(d.inputGrad <= INPUT_TOL, `${what}: input gradient differs by ${d.inputGrad} (relative)`);
}

const layerDraw = fc.record<LayerDraw>({
  kind: fc.constantFrom('conv', 'conv', 'act', 'max', 'avg', 'res', 'bottleneck', 'concat'),
  k: fc.integer({ min: 1, max: 7 }),
  s: fc.integer({ min: 1, max: 2 }),
  d: fc.integer({ min: 1, max: 2 }),
  pad: fc.boolean(),
  groups: fc.boolean(),
  fn: fc.nat(),
});

/** A drawn conv layer that is dilated for real: d = 2 with a kernel wider than one tap. */
const isDilated = (l: LayerDraw): boolean => l.kind === 'conv' && l.d > 1 && l.k > 1;

for (const backend of ['wasm', 'cpu', 'tensorflow'] as const) {
  // The tensorflow suite skips (with the reason) when no `tilestream setup tensorflow` build is
  // present, and fails instead under TILESTREAM_REQUIRE_ALL=1.
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`streaming equals conventional training on ${backend}`, { skip }, () => {
    it('initialises the backend', async (t) => {
      const info = await initBackend(backend);
      assert.equal(info.name, backend);
      t.diagnostic(info.reason);
    });

    it('worked example (§1.9): 64² image, 32² tiles, 9 tiles', async (t) => {
      const worst = new Worst();
      const b = new BodyBuilder('worked', 3);
      const c1 = b.relu(b.conv(b.input, { filters: 4, kernel: 3, padding: 1 }));
      const p = b.maxPool(c1, { kernel: 2 });
      const body = b.build(b.relu(b.conv(p, { filters: 4, kernel: 3, stride: 2, padding: 1 })));
      const d = await compareStep({ body, pooling: 'max', outputs: 3 }, [64, 64], [32, 32], 1);
      assert.equal(d.tiles, 9);
      assertEquivalent(d, 'worked example', worst);
      worst.report(t, backend);
    });

    it('non-square image, single-tile image and image smaller than the tile', async (t) => {
      const worst = new Worst();
      const net: Network = {
        ...builtinNetwork('smallcnn', { width: 4, inputChannels: 3 }),
        pooling: 'avg',
        outputs: 2,
      };
      assertEquivalent(await compareStep(net, [192, 320], [96, 96], 2), 'non-square', worst);
      assertEquivalent(await compareStep(net, [96, 96], [96, 96], 3), 'N = T', worst);
      assertEquivalent(await compareStep(net, [48, 80], [128, 128], 4), 'N < T', worst);
      worst.report(t, backend);
    });

    it('ResNet-18 body (to layer2) with a layer3 trunk: 256² image, tiles 128 and 160', async (t) => {
      const worst = new Worst();
      const width = backend === 'cpu' ? 4 : 16; // cpu convolutions are ~20x slower than wasm
      const net: Network = {
        ...builtinNetwork('resnet18', { bodyEnd: 'layer2', width }),
        pooling: 'max',
        outputs: 2,
      };
      for (const tile of backend === 'cpu' ? [160] : [128, 160]) {
        const d = await compareStep(net, [256, 256], [tile, tile], 5);
        assert.ok(d.tiles > 1);
        assertEquivalent(d, `resnet18 tile ${tile}`, worst);
      }
      worst.report(t, backend);
    });

    it('random bodies (depth 1–8, kernels 1–7, strides, dilations, pools, residual blocks) and sizes', async (t) => {
      const worst = new Worst();
      let compared = 0;
      let dilated = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(layerDraw, { minLength: 1, maxLength: 8 }),
          fc.integer({ min: 0, max: 3 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 1000 }),
          async (layers, tileExtra, imageExtra, seed) => {
            const body = randomBody(layers);
            const S = [axisProfile(body, 0).totalStride, axisProfile(body, 1).totalStride];
            const t0 = minimumTile(body, 0) + tileExtra * (S[0] as number);
            const t1 = minimumTile(body, 1) + tileExtra * (S[1] as number);
            const image: [number, number] = [
              t0 + imageExtra * (S[0] as number),
              t1 + (imageExtra + 1) * (S[1] as number),
            ];
            if (image[0] * image[1] > 200 * 200) return; // keep the conventional baseline cheap
            compared++;
            if (layers.some(isDilated)) dilated++;
            const d = await compareStep({ body, pooling: 'avg', outputs: 2 }, image, [t0, t1], seed);
            assertEquivalent(d, `body ${JSON.stringify(layers)} image ${image} tile ${[t0, t1]}`, worst);
          },
        ),
        { numRuns: backend === 'cpu' ? 15 : 30, seed: 4242 },
      );
      t.diagnostic(
        `${compared} random bodies compared, ${dilated} with a dilated (d = 2, k > 1) convolution`,
      );
      worst.report(t, backend);
      assert.ok(
        compared >= (backend === 'cpu' ? 10 : 20),
        `only ${compared} random cases were small enough to compare`,
      );
      // Dilated kernels stream on every backend by zero-dilating the kernel (ops.dilateKernel).
      assert.ok(dilated > 0, 'no compared body had a dilated convolution');
    });

    it('a body without parameters (pools and activations only)', async (t) => {
      const worst = new Worst();
      const b = new BodyBuilder('pools', 2);
      const body = b.build(
        b.activation(
          b.maxPool(b.avgPool(b.input, { kernel: 2 }), { kernel: 3, stride: 2, padding: 1 }),
          'tanh',
        ),
      );
      assertEquivalent(
        await compareStep({ body, pooling: 'avg', outputs: 2 }, [64, 96], [32, 32], 11),
        'pools, input gradient',
        worst,
      );
      assertEquivalent(
        await compareStep({ body, pooling: 'avg', outputs: 2 }, [64, 96], [32, 32], 12, false),
        'pools',
        worst,
      );
      worst.report(t, backend);
    });

    it('returns the live tensor count to its baseline after a training step', async () => {
      const net: Network = { ...builtinNetwork('smallcnn', { width: 4 }), pooling: 'max', outputs: 1 };
      const params = initParams(net, 9);
      const x = tf.randomNormal([1, 192, 192, 1], 0, 1, 'float32', 10) as tf.Tensor4D;
      const grid = tileGrid(net.body, [192, 192], [96, 96]);
      const before = tf.memory().numTensors;
      const step = await streamedStep(net, params, tensorSource(x), grid, linearLoss(1, 1), {
        inputGrad: true,
      });
      for (const g of step.grads.values()) g.dispose();
      assert.equal(tf.memory().numTensors, before);
      x.dispose();
      for (const p of params.values()) p.dispose();
    });
  });
}
