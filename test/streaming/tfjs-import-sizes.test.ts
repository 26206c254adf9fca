// Image sizes for an imported model with TF 'same' layers: checkInputSize refuses exactly the
// sizes on which a 'same' layer's fixed explicit padding differs from TF's (or a layer vanishes),
// and every size it suggests instead passes it and tiles (a multiple of the body's total stride);
// when it says none exists, none does. Pure: the models are hand-written model.json documents.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { axisProfile, GeometryError, minimumTile, tileGrid } from '../../trainer/streaming/geometry.ts';
import { samePadding, tfSamePadding } from '../../trainer/streaming/tfjs-import/same-padding.ts';
import { checkInputSize, importTfjsLayersTopology } from '../../trainer/streaming/tfjs-import.ts';

/** One layer of a chain: a conv or a max pool, square window and stride, 'same' or 'valid'. */
interface LayerSpec {
  readonly kind: 'conv' | 'pool';
  readonly k: number;
  readonly s: number;
  readonly d: number;
  readonly same: boolean;
}

/** image → layers l0, l1, … one after another; returns the model.json document. */
function chainDoc(layers: readonly LayerSpec[]): Record<string, unknown> {
  const ref = (name: string) => [[[name, 0, 0, {}]]];
  const weights: { name: string; shape: number[]; dtype: string }[] = [];
  const keras = layers.map((l, i) => {
    const name = `l${i}`;
    const inbound_nodes = ref(i === 0 ? 'image' : `l${i - 1}`);
    const padding = l.same ? 'same' : 'valid';
    if (l.kind === 'pool') {
      return {
        name,
        class_name: 'MaxPooling2D',
        config: { name, pool_size: [l.k, l.k], strides: [l.s, l.s], padding },
        inbound_nodes,
      };
    }
    weights.push({ name: `${name}/kernel`, shape: [l.k, l.k, 1, 1], dtype: 'float32' });
    return {
      name,
      class_name: 'Conv2D',
      config: {
        name,
        filters: 1,
        kernel_size: [l.k, l.k],
        strides: [l.s, l.s],
        dilation_rate: [l.d, l.d],
        padding,
        use_bias: false,
      },
      inbound_nodes,
    };
  });
  return {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Model',
      config: {
        name: 'chain',
        layers: [
          {
            name: 'image',
            class_name: 'InputLayer',
            config: { batch_input_shape: [null, null, null, 1], name: 'image' },
            inbound_nodes: [],
          },
          ...keras,
        ],
        input_layers: [['image', 0, 0]],
        output_layers: [[`l${layers.length - 1}`, 0, 0]],
      },
    },
    weightsManifest: [{ paths: ['w.bin'], weights }],
  };
}

/**
 * TF's own verdict, computed independently of the importer: walk TF's lengths ('same' gives ⌈n/s⌉,
 * 'valid' ⌊(n − k)/s⌋ + 1) and compare each 'same' layer's padding at its real input length with
 * the fixed explicit padding the importer uses. 'vanishes' when a layer has no output.
 */
function tfVerdict(layers: readonly LayerSpec[], n: number): 'exact' | 'inexact' | 'vanishes' {
  let len = n;
  let exact = true;
  for (const l of layers) {
    const k = l.d * (l.k - 1) + 1;
    if (l.same) {
      const [lo, hi] = tfSamePadding(len, k, l.s);
      const [flo, fhi] = samePadding([k, k], [l.s, l.s]);
      if (lo !== flo || hi !== fhi) exact = false;
      len = Math.ceil(len / l.s);
    } else {
      len = Math.floor((len - k) / l.s) + 1;
      if (len < 1) return 'vanishes';
    }
  }
  return exact ? 'exact' : 'inexact';
}

const layerSpec: fc.Arbitrary<LayerSpec> = fc.oneof(
  fc.record({
    kind: fc.constant('conv' as const),
    k: fc.integer({ min: 1, max: 4 }),
    s: fc.integer({ min: 1, max: 3 }),
    d: fc.integer({ min: 1, max: 2 }),
    same: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('pool' as const),
    k: fc.integer({ min: 1, max: 3 }),
    s: fc.integer({ min: 1, max: 3 }),
    d: fc.constant(1),
    same: fc.boolean(),
  }),
);

/** A chain, where its body ends (the rest is the trunk), and an image length. */
const chainCase = fc.array(layerSpec, { minLength: 1, maxLength: 6 }).chain((layers) =>
  fc.record({
    layers: fc.constant(layers),
    cut: fc.integer({ min: 0, max: layers.length - 1 }),
    n: fc.integer({ min: 1, max: 200 }),
  }),
);

/** checkInputSize's refusal of an h × w image for the chain cut at bodyEnd, or undefined when it accepts it. */
function refusal(
  doc: Record<string, unknown>,
  bodyEnd: string,
  h: number,
  w: number,
): GeometryError | undefined {
  const model = importTfjsLayersTopology(doc, { bodyEnd });
  try {
    checkInputSize(model, h, w);
    return undefined;
  } catch (err) {
    if (err instanceof GeometryError) return err;
    throw err;
  }
}

function suggested(err: GeometryError): number[] {
  const m = /heights that work nearby: ([\d, ]+)$/.exec(err.message);
  return m ? (m[1] as string).split(', ').map(Number) : [];
}

describe("imported 'same' layers: which image sizes are refused, and which are suggested", () => {
  it("a 'same' layer is refused exactly where TF's padding differs from its explicit padding, or a layer vanishes", () => {
    fc.assert(
      fc.property(chainCase, ({ layers, cut, n }) => {
        const doc = chainDoc(layers);
        const err = refusal(doc, `l${cut}`, n, n);
        const verdict = tfVerdict(layers, n);
        assert.equal(
          err === undefined,
          verdict === 'exact',
          `n=${n} ${JSON.stringify(layers)} cut l${cut}: TF says ${verdict}, the importer ${err?.message ?? 'accepts'}`,
        );
      }),
      { numRuns: 400 },
    );
  });

  it('every suggested size passes every check and tiles, none nearer is skipped, and "none" means none', () => {
    fc.assert(
      fc.property(chainCase, ({ layers, cut, n }) => {
        const doc = chainDoc(layers);
        const bodyEnd = `l${cut}`;
        const err = refusal(doc, bodyEnd, n, n);
        if (err === undefined || tfVerdict(layers, n) === 'vanishes') return;
        const model = importTfjsLayersTopology(doc, { bodyEnd });
        const S = axisProfile(model.network.body, 0).totalStride;
        const works = (m: number): boolean =>
          m % S === 0 && refusal(doc, bodyEnd, m, m) === undefined && tfVerdict(layers, m) === 'exact';
        const sizes = suggested(err);
        for (const m of sizes) {
          assert.ok(works(m), `suggested ${m} for ${n} (S=${S}) does not work: ${err.message}`);
          // It tiles: with the smallest workable tile, when the image is larger, the grid is made.
          const t = minimumTile(model.network.body, 0);
          if (m > t) tileGrid(model.network.body, [m, m], [t, t]);
        }
        const below = sizes.filter((m) => m < n);
        const above = sizes.filter((m) => m > n);
        assert.ok(below.length <= 1 && above.length <= 1 && below.length + above.length === sizes.length);
        // Nothing nearer works, and with no suggestion above nothing works up to far beyond n.
        const from = below[0] ?? 1;
        const to = above[0] ?? n + 4096;
        for (let m = from + 1; m < to; m++) {
          if (m !== n)
            assert.ok(!works(m), `${m} works and lies between ${from} and ${to} (n=${n}): ${err.message}`);
        }
        if (sizes.length === 0) assert.match(err.message, /no image height that tiles .* suits every layer/);
      }),
      { numRuns: 300 },
    );
  });

  it("a 1×1 'same' conv and pool with stride 2 take odd inputs (TF pads 0 at every length)", () => {
    const layers: LayerSpec[] = [
      { kind: 'conv', k: 3, s: 1, d: 1, same: true },
      { kind: 'conv', k: 1, s: 2, d: 1, same: true },
      { kind: 'pool', k: 1, s: 2, d: 1, same: true },
    ];
    const doc = chainDoc(layers);
    for (const n of [33, 35, 37, 50]) {
      assert.equal(tfVerdict(layers, n), 'exact');
      assert.equal(refusal(doc, 'l2', n, n + 2), undefined, `${n}×${n + 2}`);
    }
    assert.deepEqual(importTfjsLayersTopology(doc, { bodyEnd: 'l2' }).sameAlignment, []);
  });

  it('a window that fits in the remainder is exact too: kernel 2, stride 3 on 3q + 2 but not on 3q + 1', () => {
    const doc = chainDoc([{ kind: 'conv', k: 2, s: 3, d: 1, same: true }]);
    assert.equal(refusal(doc, 'l0', 3 * 9 + 2, 27), undefined);
    assert.match(
      refusal(doc, 'l0', 3 * 9 + 1, 27)?.message ?? '',
      /height of 28 .*layer 'l0' \(Conv2D, padding 'same', stride 3\) would see an input of 28, .*heights that work nearby: 27, 30$/,
    );
  });

  it('suggestions are multiples of the total stride: a valid 3×3 conv then a same 3×3 stride-2 conv', () => {
    // S = 2: the 'same' conv sees n − 2, which must be even (a remainder of 1 is overhung by the
    // 3-wide window), so n must be even, as tiling wants too: 44 works, 45 is refused.
    const doc = chainDoc([
      { kind: 'conv', k: 3, s: 1, d: 1, same: false },
      { kind: 'conv', k: 3, s: 2, d: 1, same: true },
    ]);
    assert.equal(refusal(doc, 'l1', 44, 44), undefined);
    assert.match(refusal(doc, 'l1', 45, 44)?.message ?? '', /heights that work nearby: 44, 46$/);
  });

  it('says so when no size that tiles suits every layer', () => {
    // S = 2 (the body's stride-2 conv), and the 'same' stride-2 conv sees n − 1: odd for every even n.
    const doc = chainDoc([
      { kind: 'conv', k: 2, s: 1, d: 1, same: false },
      { kind: 'conv', k: 3, s: 2, d: 1, same: true },
    ]);
    const err = refusal(doc, 'l1', 40, 40);
    assert.ok(err);
    assert.match(
      err.message,
      /height of 40 .*layer 'l1' .*would see an input of 39.*; no image height that tiles \(a multiple of the body's total stride 2\) suits every layer, so change the model/,
    );
  });
});
