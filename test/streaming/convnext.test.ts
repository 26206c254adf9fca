// ConvNeXt's new ops and bodies on the wasm, cpu and native TensorFlow backends: GELU and channel
// layer norm against a float64 reference (values and gradients), the variants' sizes against
// timm's, and streamed training against conventional training on the variants' depths at small
// width and on random ConvNeXt-like bodies, within the tolerances of streaming-algorithm.md §2.2.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { initBackend } from '../../trainer/backend/select.ts';
import { TOLERANCES } from '../../trainer/bench/equivalence.ts';
import { builtinNetwork, defaultBodyEnd } from '../../trainer/streaming/bodies.ts';
import { compareStep, type Discrepancy, relativeError } from '../../trainer/streaming/compare.ts';
import { CONVNEXT_SHAPES, CONVNEXT_VARIANTS, convnext } from '../../trainer/streaming/convnext.ts';
import { axisProfile, minimumTile } from '../../trainer/streaming/geometry.ts';
import { parameterShapes } from '../../trainer/streaming/graph.ts';
import type { Network } from '../../trainer/streaming/network.ts';
import { activation, layerNorm } from '../../trainer/streaming/ops.ts';
import { type LayerDraw, mulberry32, randomBody } from '../../trainer/streaming/random-body.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';
import { smallTiling } from './small-tiling.ts';

// ---------------------------------------------------------------- float64 references

/** erf by its Maclaurin series, in float64: exact to ~1e-11 for |x| <= 4. */
function erf64(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 120; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
const gelu64 = (x: number): number => 0.5 * x * (1 + erf64(x / Math.SQRT2));
const geluGrad64 = (x: number): number =>
  0.5 * (1 + erf64(x / Math.SQRT2)) + (x * Math.exp((-x * x) / 2)) / Math.sqrt(2 * Math.PI);

/**
 * Layer norm of each row of x [pixels, C] and the gradients of Σ y·w, in float64:
 * dx = r·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) with dx̂ = w·γ.
 */
function layerNorm64(x: number[][], gamma: number[], beta: number[], w: number[][], eps: number) {
  const c = gamma.length;
  const y: number[] = [];
  const dx: number[] = [];
  const dGamma = Array<number>(c).fill(0);
  const dBeta = Array<number>(c).fill(0);
  x.forEach((row, p) => {
    const mu = row.reduce((a, v) => a + v, 0) / c;
    const variance = row.reduce((a, v) => a + (v - mu) ** 2, 0) / c;
    const r = 1 / Math.sqrt(variance + eps);
    const xhat = row.map((v) => (v - mu) * r);
    const wp = w[p] as number[];
    const dxhat = xhat.map((_, i) => (wp[i] as number) * (gamma[i] as number));
    const m1 = dxhat.reduce((a, v) => a + v, 0) / c;
    const m2 = dxhat.reduce((a, v, i) => a + v * (xhat[i] as number), 0) / c;
    xhat.forEach((h, i) => {
      y.push(h * (gamma[i] as number) + (beta[i] as number));
      dx.push(r * ((dxhat[i] as number) - m1 - h * m2));
      dGamma[i] = (dGamma[i] as number) + (wp[i] as number) * h;
      dBeta[i] = (dBeta[i] as number) + (wp[i] as number);
    });
  });
  return { y, dx, dGamma, dBeta };
}

// ---------------------------------------------------------------- equivalence helpers

function assertEquivalent(d: Discrepancy, what: string): void {
  assert.ok(d.output <= TOLERANCES.output, `${what}: output differs by ${d.output} (relative)`);
  assert.ok(
    d.paramGrad <= TOLERANCES.paramGrad,
    `${what}: gradient of ${d.worstParam} differs by ${d.paramGrad} (relative)`,
  );
  assert.ok(
    d.inputGrad <= TOLERANCES.inputGrad,
    `${what}: input gradient differs by ${d.inputGrad} (relative)`,
  );
}

/** Draws of ConvNeXt-like layers: blocks (some downsampling), convs and activations (GELU among them). */
const convnextDraw = fc.record<LayerDraw>({
  kind: fc.constantFrom('convnext', 'convnext', 'conv', 'act'),
  k: fc.integer({ min: 1, max: 7 }),
  s: fc.integer({ min: 1, max: 2 }),
  d: fc.constant(1),
  pad: fc.boolean(),
  groups: fc.boolean(),
  fn: fc.nat({ max: 100 }),
});

describe('ConvNeXt variants', () => {
  it('have timm’s parameter counts (with timm’s head: a layer norm and a 1000-class fc)', () => {
    // timm's model table, in millions: the body's count plus its head's must round to it.
    const timmMillions = { atto: 3.7, femto: 5.22, pico: 9.05, nano: 15.59, tiny: 28.59 };
    for (const v of CONVNEXT_VARIANTS) {
      const body = convnext(v);
      let n = 0;
      for (const s of parameterShapes(body).values()) n += s.reduce((a, b) => a * b, 1);
      const c = parameterShapes(body).get(`${body.output}.gamma/gamma`)?.[0] as number;
      const head = 2 * c + c * 1000 + 1000;
      assert.equal(Math.round((n + head) / 1e4) / 100, timmMillions[v], v);
    }
    // convnext_tiny's exact count (torchvision and timm agree): 28,589,128.
    let tiny = 0;
    for (const s of parameterShapes(convnext('tiny')).values()) tiny += s.reduce((a, b) => a * b, 1);
    assert.equal(tiny + 2 * 768 + 768 * 1000 + 1000, 28_589_128);
  });

  it('cut at a stage’s last block; the default keeps stage 3 in the trunk', () => {
    const depths = (v: (typeof CONVNEXT_VARIANTS)[number]) => CONVNEXT_SHAPES[v].depths.join();
    assert.deepEqual(
      CONVNEXT_VARIANTS.map(depths),
      ['2,2,6,2', '2,2,6,2', '2,2,6,2', '2,2,8,2', '3,3,9,3'],
      'the variants whose depths the equivalence tests cover',
    );
    const split = builtinNetwork('convnext-atto');
    assert.equal(defaultBodyEnd('convnext-atto'), 'stages.2');
    assert.equal(split.body.output, 'stages.2.blocks.5');
    assert.equal(split.trunk?.nodes.at(-1)?.name, 'stages.3.blocks.1');
    assert.equal(builtinNetwork('convnext-tiny', { bodyEnd: 'stages.0' }).body.output, 'stages.0.blocks.2');
    assert.equal(
      axisProfile(builtinNetwork('convnext-atto', { bodyEnd: 'stages.3' }).body, 0).totalStride,
      32,
    );
  });
});

for (const backend of ['wasm', 'cpu', 'tensorflow'] as const) {
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`ConvNeXt ops and bodies on ${backend}`, { skip }, () => {
    it('initialises the backend', async () => {
      assert.equal((await initBackend(backend)).name, backend);
    });

    it('GELU (exact, erf) and its gradient match a float64 reference on [-4, 4]', () => {
      const xs = Array.from({ length: 81 }, (_, i) => -4 + i / 10);
      const x = tf.tensor4d(xs, [1, 9, 9, 1]);
      const [y, g] = tf.tidy(() => [
        activation(x, 'gelu'),
        tf.grad((t: tf.Tensor) => tf.sum(activation(t as tf.Tensor4D, 'gelu')))(x),
      ]) as [tf.Tensor, tf.Tensor];
      assert.ok(relativeError(y.dataSync(), xs.map(gelu64)) < 1e-6, 'GELU values');
      assert.ok(relativeError(g.dataSync(), xs.map(geluGrad64)) < 1e-5, 'GELU gradient');
      tf.dispose([x, y, g]);
    });

    it('the fused GELU and layer norm keep only their inputs on the tape', () => {
      // Inside tf.grad the forward's new tensors are its output and the tape's kept clones: GELU
      // keeps x; layer norm keeps x and gamma (its gradient recomputes the statistics). Composed
      // of tfjs ops, the same forwards made 10 and 17 tensors here.
      const x = tf.randomNormal([1, 4, 4, 8]) as tf.Tensor4D;
      const gamma = tf.randomNormal([8]);
      const beta = tf.randomNormal([8]);
      const newTensors = (f: (t: tf.Tensor4D) => tf.Tensor): number => {
        let made = -1;
        const g = tf.grad((t: tf.Tensor) => {
          const before = tf.memory().numTensors;
          const y = f(t as tf.Tensor4D);
          made = tf.memory().numTensors - before;
          return tf.sum(y);
        })(x);
        g.dispose();
        return made;
      };
      assert.equal(
        newTensors((t) => activation(t, 'gelu')),
        2,
        'GELU: its output and x',
      );
      assert.equal(
        newTensors((t) => layerNorm(t, gamma, beta, 1e-6)),
        3,
        'layer norm: its output, x and gamma',
      );
      tf.dispose([x, gamma, beta]);
    });

    for (const [c, offset] of [
      [5, 0],
      [40, 50],
    ] as const)
      it(`channel layer norm and its gradients (input, gamma, beta) match a float64 reference (${c} channels, mean ${offset})`, () => {
        const rand = mulberry32(3);
        const [n, h, w] = [2, 3, 4];
        const rows = Array.from({ length: n * h * w }, () =>
          Array.from({ length: c }, () => offset + 3 * rand() - 1),
        );
        const ws = Array.from({ length: n * h * w }, () => Array.from({ length: c }, () => rand() - 0.5));
        const gamma = Array.from({ length: c }, () => 0.5 + rand());
        const beta = Array.from({ length: c }, () => rand() - 0.5);
        const want = layerNorm64(rows, gamma, beta, ws, 1e-6);
        const x = tf.tensor4d(rows.flat(), [n, h, w, c]);
        const wt = tf.tensor4d(ws.flat(), [n, h, w, c]);
        const gt = tf.tensor1d(gamma);
        const bt = tf.tensor1d(beta);
        const y = layerNorm(x, gt, bt, 1e-6);
        const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
          tf.sum(tf.mul(layerNorm(a as tf.Tensor4D, b, d, 1e-6), wt)),
        )([x, gt, bt]);
        assert.ok(relativeError(y.dataSync(), want.y) < 1e-5, 'values');
        assert.ok(relativeError((grads[0] as tf.Tensor).dataSync(), want.dx) < 1e-4, 'input gradient');
        assert.ok(relativeError((grads[1] as tf.Tensor).dataSync(), want.dGamma) < 1e-5, 'gamma gradient');
        assert.ok(relativeError((grads[2] as tf.Tensor).dataSync(), want.dBeta) < 1e-5, 'beta gradient');
        tf.dispose([x, wt, gt, bt, y, ...grads]);
      });

    it('layer norm refuses parameters of the wrong size, naming them', () => {
      const x = tf.zeros([1, 2, 2, 3]) as tf.Tensor4D;
      const g = tf.ones([4]);
      assert.throws(() => layerNorm(x, g, g, 1e-6), {
        message: /layerNorm: gamma must be \[3\] for 3 channels/,
      });
      tf.dispose([x, g]);
    });

    it('the variants’ depths at width 4, body to stages.1 with a stages 2–3 trunk: streamed equals conventional', async (t) => {
      // At one width the variants differ only in depths: atto, femto and pico share theirs, and
      // nano's differ from them in stage 2 only, which runs in the trunk here (conventionally on
      // both sides). So atto and tiny cover every streamed body of this cut; cpu, slow at
      // convolutions, checks atto.
      const variants = backend === 'cpu' ? (['atto'] as const) : (['atto', 'tiny'] as const);
      for (const v of variants) {
        const net: Network = {
          ...builtinNetwork(`convnext-${v}`, { bodyEnd: 'stages.1', width: 4, layerScaleInit: 0.5 }),
          pooling: 'avg',
          outputs: 2,
        };
        // Four tiles a little above the minimum (at the minimum each tile owns one output pixel).
        const tile = minimumTile(net.body, 0) + 32;
        const d = await compareStep(net, [tile + 32, tile + 24], [tile, tile], 21);
        assert.equal(d.tiles, 4, `convnext-${v}`);
        assertEquivalent(d, `convnext-${v} tile ${tile}`);
        t.diagnostic(
          `convnext-${v} tile ${tile}: output ${d.output.toExponential(2)}, param grad ` +
            `${d.paramGrad.toExponential(2)} (${d.worstParam}), input grad ${d.inputGrad.toExponential(2)}`,
        );
      }
    });

    it('convnext-atto with its own layer-scale start (1e-6) to stages.0', async () => {
      const net: Network = {
        ...builtinNetwork('convnext-atto', { bodyEnd: 'stages.0', width: 8 }),
        pooling: 'max',
        outputs: 2,
      };
      assertEquivalent(await compareStep(net, [128, 96], [64, 64], 5), 'convnext-atto stages.0');
    });

    it('random ConvNeXt-like bodies (blocks, downsampling, GELU, layer norm, layer scale) and sizes', async (t) => {
      let compared = 0;
      let downsampling = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(convnextDraw, { minLength: 1, maxLength: 5 }),
          fc.integer({ min: 0, max: 2 }),
          fc.integer({ min: 1, max: 1000 }),
          async (layers, extra, seed) => {
            const body = randomBody(layers);
            const sized = smallTiling(body, extra);
            if (sized === undefined) return;
            const { tile, image } = sized;
            compared++;
            if (layers.some((l) => l.kind === 'convnext' && l.s === 2)) downsampling++;
            const d = await compareStep({ body, pooling: 'avg', outputs: 2 }, image, [tile, tile], seed);
            assertEquivalent(d, `body ${JSON.stringify(layers)} image ${image} tile ${tile}`);
          },
        ),
        { numRuns: backend === 'cpu' ? 6 : 12, seed: 1717 },
      );
      t.diagnostic(`${compared} random bodies compared, ${downsampling} with a downsampling ConvNeXt block`);
      assert.ok(compared >= (backend === 'cpu' ? 3 : 6), `only ${compared} random cases were small enough`);
      assert.ok(downsampling > 0, 'no compared body had a downsampling ConvNeXt block');
    });
  });
}
