// InceptionNeXt (atto, tiny) on the wasm, cpu and native TensorFlow backends: the token mixer's
// layout and the variants' sizes against timm's, and streamed training against conventional
// training on each variant at small width and on random InceptionNeXt-like bodies, within the
// tolerances of streaming-algorithm.md §2.2.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { initBackend } from '../../trainer/backend/select.ts';
import { TOLERANCES } from '../../trainer/bench/equivalence.ts';
import { builtinNetwork, defaultBodyEnd } from '../../trainer/streaming/bodies.ts';
import { compareStep, type Discrepancy } from '../../trainer/streaming/compare.ts';
import { axisProfile, minimumTile } from '../../trainer/streaming/geometry.ts';
import { BodyError, inferChannels, parameterShapes } from '../../trainer/streaming/graph.ts';
import { INCEPTIONNEXT_VARIANTS, inceptionnext } from '../../trainer/streaming/inceptionnext.ts';
import type { Network } from '../../trainer/streaming/network.ts';
import { type LayerDraw, randomBody } from '../../trainer/streaming/random-body.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';
import { smallTiling } from './small-tiling.ts';

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

const count = (shapes: Map<string, number[]>): number =>
  [...shapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);

/** Draws of InceptionNeXt-like layers: blocks (some downsampling), convs and activations. */
const inceptionDraw = fc.record<LayerDraw>({
  kind: fc.constantFrom('inception', 'inception', 'conv', 'act'),
  k: fc.integer({ min: 1, max: 5 }),
  s: fc.integer({ min: 1, max: 2 }),
  d: fc.constant(1),
  pad: fc.boolean(),
  groups: fc.boolean(),
  fn: fc.nat({ max: 100 }),
});

describe('InceptionNeXt variants', () => {
  it('have timm’s parameter counts with timm’s MLP head (atto 4,156,520; tiny 28,055,680)', () => {
    // timm's MlpClassifierHead: fc1 c → 3c, GELU, layer norm over 3c, fc2 3c → 1000.
    const head = (c: number): number => c * 3 * c + 3 * c + 2 * 3 * c + 3 * c * 1000 + 1000;
    assert.equal(count(parameterShapes(inceptionnext('atto'))) + head(320), 4_156_520);
    assert.equal(count(parameterShapes(inceptionnext('tiny'))) + head(768), 28_055_680);
  });

  it('split the channels as timm: identity, k×k, 1×band, band×1 (atto: a quarter each; tiny: 1/8)', () => {
    const atto = parameterShapes(inceptionnext('atto'));
    assert.deepEqual(atto.get('stages.0.blocks.0.token_mixer.dwconv_hw/kernel'), [3, 3, 1, 10]);
    assert.deepEqual(atto.get('stages.0.blocks.0.token_mixer.dwconv_w/kernel'), [1, 9, 1, 10]);
    assert.deepEqual(atto.get('stages.0.blocks.0.token_mixer.dwconv_h/kernel'), [9, 1, 1, 10]);
    const tiny = inceptionnext('tiny');
    const channels = inferChannels(tiny);
    assert.equal(channels.get('stages.0.blocks.0.token_mixer.x_id'), 96 - 3 * 12);
    assert.deepEqual(
      parameterShapes(tiny).get('stages.3.blocks.0.token_mixer.dwconv_w/kernel'),
      [1, 11, 1, 96],
    );
    // The last stage's MLP expands 3×, the others 4×.
    assert.deepEqual(parameterShapes(tiny).get('stages.3.blocks.0.mlp.fc1/kernel'), [1, 1, 768, 2304]);
    assert.deepEqual(parameterShapes(tiny).get('stages.2.blocks.0.mlp.fc1/kernel'), [1, 1, 384, 1536]);
    assert.throws(() => inceptionnext('tiny', { width: 4 }), {
      name: BodyError.name,
      message: /width 4 leaves its convolution branches no channel.*at least 8/,
    });
  });

  it('cut at a stage’s last block; the default keeps stage 3 in the trunk', () => {
    assert.equal(defaultBodyEnd('inceptionnext-atto'), 'stages.2');
    const split = builtinNetwork('inceptionnext-atto');
    assert.equal(split.body.output, 'stages.2.blocks.5');
    assert.equal(split.trunk?.nodes.at(-1)?.name, 'stages.3.blocks.1');
    assert.equal(
      builtinNetwork('inceptionnext-tiny', { bodyEnd: 'stages.0' }).body.output,
      'stages.0.blocks.2',
    );
    assert.equal(
      axisProfile(builtinNetwork('inceptionnext-tiny', { bodyEnd: 'stages.3' }).body, 0).totalStride,
      32,
    );
    assert.throws(() => builtinNetwork('inceptionnext-atto', { bodyEnd: 'layer3' }), /stages\.0 … stages\.3/);
  });
});

for (const backend of ['wasm', 'cpu', 'tensorflow'] as const) {
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`InceptionNeXt bodies on ${backend}`, { skip }, () => {
    it('initialises the backend', async () => {
      assert.equal((await initBackend(backend)).name, backend);
    });

    it('each variant at width 8, body to stages.1 with a stages 2–3 trunk: streamed equals conventional', async (t) => {
      // cpu, slow at convolutions, checks atto.
      const variants = backend === 'cpu' ? (['atto'] as const) : INCEPTIONNEXT_VARIANTS;
      for (const v of variants) {
        const net: Network = {
          ...builtinNetwork(`inceptionnext-${v}`, { bodyEnd: 'stages.1', width: 8, layerScaleInit: 0.5 }),
          pooling: 'avg',
          outputs: 2,
        };
        // Four tiles a little above the minimum (at the minimum each tile owns one output pixel).
        const tile = minimumTile(net.body, 0) + 32;
        const d = await compareStep(net, [tile + 32, tile + 24], [tile, tile], 23);
        assert.equal(d.tiles, 4, `inceptionnext-${v}`);
        assertEquivalent(d, `inceptionnext-${v} tile ${tile}`);
        t.diagnostic(
          `inceptionnext-${v} tile ${tile}: output ${d.output.toExponential(2)}, param grad ` +
            `${d.paramGrad.toExponential(2)} (${d.worstParam}), input grad ${d.inputGrad.toExponential(2)}`,
        );
      }
    });

    it('random InceptionNeXt-like bodies (split, square and band depthwise branches, concat, downsampling) and sizes', async (t) => {
      let compared = 0;
      let downsampling = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(inceptionDraw, { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 0, max: 2 }),
          fc.integer({ min: 1, max: 1000 }),
          async (layers, extra, seed) => {
            const body = randomBody(layers);
            const sized = smallTiling(body, extra);
            if (sized === undefined) return;
            const { tile, image } = sized;
            compared++;
            if (layers.some((l) => l.kind === 'inception' && l.s === 2)) downsampling++;
            const d = await compareStep({ body, pooling: 'avg', outputs: 2 }, image, [tile, tile], seed);
            assertEquivalent(d, `body ${JSON.stringify(layers)} image ${image} tile ${tile}`);
          },
        ),
        { numRuns: backend === 'cpu' ? 5 : 10, seed: 1719 },
      );
      t.diagnostic(
        `${compared} random bodies compared, ${downsampling} with a downsampling InceptionNeXt block`,
      );
      assert.ok(compared >= (backend === 'cpu' ? 3 : 6), `only ${compared} random cases were small enough`);
      assert.ok(downsampling > 0, 'no compared body had a downsampling InceptionNeXt block');
    });
  });
}
