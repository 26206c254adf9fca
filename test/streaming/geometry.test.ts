import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { BodyBuilder } from '../../trainer/streaming/builder.ts';
import {
  axisGrid,
  axisProfile,
  axisSizes,
  forwardValid,
  GeometryError,
  gradientValid,
  minimumTile,
  tileGrid,
} from '../../trainer/streaming/geometry.ts';
import type { Body } from '../../trainer/streaming/graph.ts';
import { INPUT } from '../../trainer/streaming/graph.ts';

/** Lost margins [top, bottom] of every named node for an interior tile of length m. */
function lost(body: Body, m: number, which: 'forward' | 'gradient'): Record<string, [number, number]> {
  const sizes = axisSizes(body, 0, m);
  const iv = which === 'forward' ? forwardValid(body, 0, m) : gradientValid(body, 0, m);
  const out: Record<string, [number, number]> = {};
  for (const [name, v] of iv) out[name] = [v.lo, (sizes.get(name) as number) - 1 - v.hi];
  return out;
}

describe('geometry: worked example of streaming-algorithm.md §1.9', () => {
  const b = new BodyBuilder('worked', 3);
  const c1 = b.relu(b.conv(b.input, { filters: 4, kernel: 3, padding: 1, name: 'conv1' }));
  const p = b.maxPool(c1, { kernel: 2, name: 'pool' });
  const body = b.build(b.relu(b.conv(p, { filters: 4, kernel: 3, stride: 2, padding: 1, name: 'conv2' })));

  it('has S = 4, R = 8, P = 3', () => {
    const prof = axisProfile(body, 0);
    assert.deepEqual([prof.totalStride, prof.receptiveField, prof.offset], [4, 8, 3]);
  });

  it('has tile sizes 32, 16, 8 and full sizes 64, 32, 16', () => {
    assert.deepEqual(
      [32, 16, 8],
      ['conv1', 'pool', 'conv2'].map((n) => axisSizes(body, 0, 32).get(n)),
    );
    assert.deepEqual(
      [64, 32, 16],
      ['conv1', 'pool', 'conv2'].map((n) => axisSizes(body, 0, 64).get(n)),
    );
  });

  it('has forward-valid interior outputs 1..6', () => {
    assert.deepEqual(forwardValid(body, 0, 32).get('conv2'), { lo: 1, hi: 6 });
  });

  it('places tiles at 0, 24, 32 and owns rows 0..6, 7..12, 13..15', () => {
    const g = axisGrid(body, 0, 64, 32);
    assert.deepEqual(
      g.tiles.map((t) => t.start),
      [0, 24, 32],
    );
    assert.deepEqual(
      g.tiles.map((t) => [t.owned.lo, t.owned.hi]),
      [
        [0, 6],
        [7, 12],
        [13, 15],
      ],
    );
    assert.equal(tileGrid(body, [64, 64], [32, 32]).tiles.length, 9);
  });

  it('has gradient-valid intervals conv2 [1,6], pool [2,12], conv1 [4,25], input [5,24]', () => {
    const g = gradientValid(body, 0, 32);
    assert.deepEqual(g.get('conv2'), { lo: 1, hi: 6 });
    assert.deepEqual(g.get('pool'), { lo: 2, hi: 12 });
    assert.deepEqual(g.get('conv1'), { lo: 4, hi: 25 });
    assert.deepEqual(g.get(INPUT), { lo: 5, hi: 24 });
  });

  it('gives the 1-D sanity example of Figure 1: length 14, k=3, tiles [0:6], [4:10], [8:14]', () => {
    const one = new BodyBuilder('fig1', 1);
    const body1 = one.build(one.conv(one.input, { filters: 1, kernel: 3 }));
    const g = axisGrid(body1, 0, 14, 6);
    assert.deepEqual(
      g.tiles.map((t) => [t.start, t.owned.lo, t.owned.hi]),
      [
        [0, 0, 3],
        [4, 4, 7],
        [8, 8, 11],
      ],
    );
  });
});

describe('geometry: golden vectors of streaming-algorithm.md §2.1', () => {
  it('Imagenette notebook: output lost 1; gradient lost pool2 1, conv2 2, pool1 3, conv1 6, input 7', () => {
    const b = new BodyBuilder('imagenette', 3);
    let x = b.relu(b.conv(b.input, { filters: 8, kernel: 3, padding: 1, name: 'conv1' }));
    x = b.maxPool(x, { kernel: 2, name: 'pool1' });
    x = b.relu(b.conv(x, { filters: 8, kernel: 3, padding: 1, name: 'conv2' }));
    const body = b.build(b.maxPool(x, { kernel: 2, name: 'pool2' }));
    assert.deepEqual(lost(body, 32, 'forward').pool2, [1, 1]);
    const g = lost(body, 32, 'gradient');
    assert.deepEqual(
      ['pool2', 'conv2', 'pool1', 'conv1', INPUT].map((n) => g[n]?.[0]),
      [1, 2, 3, 6, 7],
    );
  });

  it('numerical-comparison notebook: 3×[conv,relu,conv,relu,pool], no padding, tile 512 on 1024', () => {
    const b = new BodyBuilder('numerical', 3);
    let x = b.input;
    for (let blk = 1; blk <= 3; blk++) {
      x = b.relu(b.conv(x, { filters: 4, kernel: 3, name: `conv${2 * blk - 1}` }));
      x = b.relu(b.conv(x, { filters: 4, kernel: 3, name: `conv${2 * blk}` }));
      x = b.maxPool(x, { kernel: 2, name: `maxpool${blk}` });
    }
    const body = b.build(x);
    assert.deepEqual(lost(body, 512, 'forward').maxpool3, [0, 0]);
    const g = lost(body, 512, 'gradient');
    const expected: Record<string, [number, number]> = {
      maxpool3: [0, 0],
      conv6: [0, 1],
      conv5: [2, 3],
      maxpool2: [4, 5],
      conv4: [8, 10],
      conv3: [10, 12],
      maxpool1: [12, 14],
      conv2: [24, 28],
      conv1: [26, 30],
      [INPUT]: [28, 32],
    };
    for (const [name, v] of Object.entries(expected)) assert.deepEqual(g[name], v, name);
    // The reference's per-layer-crop backward steps by (512 − 60) floored to S = 8: 448 → 3×3 tiles.
    const step = Math.floor((512 - 28 - 32) / 8) * 8;
    assert.equal(step, 448);
    assert.equal(Math.ceil((1024 - 28 - 32) / step), 3);
  });
});

describe('geometry: ResNet-34 (streaming-algorithm.md §5)', () => {
  const layer3 = builtinNetwork('resnet34', { bodyEnd: 'layer3' }).body;
  const layer40 = builtinNetwork('resnet34', { bodyEnd: 'layer4.0' }).body;

  it('conv1..layer3 has S = 16 and R = 547; conv1..layer4[0] has S = 32 and R = 643', () => {
    assert.deepEqual([axisProfile(layer3, 0).totalStride, axisProfile(layer3, 0).receptiveField], [16, 547]);
    assert.deepEqual(
      [axisProfile(layer40, 0).totalStride, axisProfile(layer40, 0).receptiveField],
      [32, 643],
    );
  });

  it('loses 18/17 output px per interior side for layer3 and 11/10 for layer4[0]', () => {
    assert.deepEqual(lost(layer3, 2048, 'forward')[layer3.output], [18, 17]);
    assert.deepEqual(lost(layer40, 2048, 'forward')[layer40.output], [11, 10]);
  });

  it('input-gradient lost is 546/545 px for layer3 (per-layer-crop method)', () => {
    assert.deepEqual(lost(layer3, 2048, 'gradient')[INPUT], [546, 545]);
  });

  for (const [tile, image, perAxis] of [
    [2048, 8192, 6],
    [2048, 16384, 11],
    [2800, 8192, 4],
    [4096, 16384, 5],
    [5120, 16384, 4],
  ] as const) {
    it(`forward tiles at T=${tile}, N=${image}: ${perAxis}×${perAxis}`, () => {
      const g = tileGrid(layer3, [image, image], [tile, tile]);
      assert.equal(g.tiles.length, perAxis * perAxis);
      assert.ok(Math.abs(g.areaFactor - (perAxis * tile) ** 2 / image ** 2) < 1e-12);
    });
  }

  it('accepts a 1024 tile, too small for the per-layer-crop backward: output partition needs only forward validity', () => {
    assert.ok(minimumTile(layer3, 0) <= 1024);
    assert.ok(axisGrid(layer3, 0, 8192, 1024).tiles.length > 8);
  });
});

describe('geometry: edge cases of §2.2', () => {
  const net = builtinNetwork('resnet18', { bodyEnd: 'layer2', width: 8 }).body;

  it('an image no larger than the tile is one tile of its own size', () => {
    for (const n of [64, 100, 512]) {
      const g = axisGrid(net, 0, n, 512);
      assert.equal(g.tiles.length, 1);
      assert.deepEqual(g.tiles[0]?.owned, { lo: 0, hi: g.outputLength - 1 });
      assert.equal(g.tiles[0]?.length, n);
    }
  });

  it('handles non-square images with different tile counts per axis', () => {
    const g = tileGrid(net, [512, 1024], [256, 256]);
    assert.ok(g.rows.tiles.length < g.cols.tiles.length);
    assert.equal(g.tiles.length, g.rows.tiles.length * g.cols.tiles.length);
  });

  it('names the nearest valid sizes for a misaligned tile or image', () => {
    assert.throws(() => axisGrid(net, 0, 1024, 250), /tile height 250 .* total stride 8; use 248 or 256/);
    assert.throws(
      () => axisGrid(net, 1, 1020, 256),
      /image width 1020 .* crop or pad the image to 1016 or 1024/,
    );
  });

  it('says the smallest workable tile when the tile is too small', () => {
    const min = minimumTile(net, 0);
    assert.throws(
      () => axisGrid(net, 0, 1024, min - 8),
      (e: unknown) => {
        assert.ok(e instanceof GeometryError);
        assert.match(e.message, new RegExp(`smallest workable tile is ${min}`));
        return true;
      },
    );
    assert.ok(axisGrid(net, 0, 1024, min).tiles.length > 1);
  });

  it('handles stride > kernel (1×1/2) and asymmetric loss from a 7×7/2 conv on even sizes', () => {
    const b = new BodyBuilder('odd', 1);
    const x = b.conv(b.input, { filters: 2, kernel: 7, stride: 2, padding: 3 });
    const body = b.build(b.conv(x, { filters: 2, kernel: 1, stride: 2 }));
    const [top, bottom] = lost(body, 64, 'forward')[body.output] as [number, number];
    assert.ok(top >= 1 && bottom >= 0);
    checkPartition(body, 128, 64);
  });
});

/** Owned output blocks partition [0, n) and lie inside each tile's forward-valid crop. */
function checkPartition(body: Body, image: number, tile: number): void {
  const g = axisGrid(body, 0, image, tile);
  const S = axisProfile(body, 0).totalStride;
  let next = 0;
  for (const [i, t] of g.tiles.entries()) {
    assert.equal(t.owned.lo, next, `tile ${i} starts where the previous owned block ended`);
    assert.ok(t.owned.hi >= t.owned.lo, `tile ${i} owns something`);
    assert.ok(
      t.owned.lo >= t.outStart + t.valid.lo && t.owned.hi <= t.outStart + t.valid.hi,
      'owned ⊆ valid',
    );
    assert.ok(t.start >= 0 && t.start + t.length <= image, 'tile inside the image');
    if (g.tiles.length > 1) assert.equal(t.start % S, 0, 'aligned to the total stride');
    next = t.owned.hi + 1;
  }
  assert.equal(next, g.outputLength, 'the last owned block ends at the output edge');
  const last = g.tiles.at(-1);
  assert.equal((last?.start ?? 0) + (last?.length ?? 0), image, 'last tile flush with the image end');
}

describe('geometry: properties over random bodies', () => {
  const layer = fc.record({
    kind: fc.constantFrom('conv', 'conv', 'max', 'avg', 'res'),
    k: fc.integer({ min: 1, max: 7 }),
    s: fc.integer({ min: 1, max: 2 }),
    d: fc.integer({ min: 1, max: 2 }),
    pad: fc.boolean(),
  });
  it('owned blocks partition the output for any aligned image and workable tile', () => {
    fc.assert(
      fc.property(
        fc.array(layer, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 30 }),
        (layers, tileMul, extra) => {
          const b = new BodyBuilder('random', 2);
          let x = b.input;
          for (const l of layers) {
            const half = Math.floor((l.d * (l.k - 1)) / 2);
            const p = l.pad ? half : 0;
            if (l.kind === 'conv')
              x = b.conv(x, { filters: 2, kernel: l.k, stride: l.s, dilation: l.d, padding: p });
            else if (l.kind === 'res') {
              const k = l.k % 2 === 1 ? l.k : l.k + 1; // odd kernel with 'same' padding keeps the size
              const y = b.conv(x, { filters: 2, kernel: k, padding: (k - 1) / 2 });
              x = b.add([y, x]);
            } else if (l.kind === 'max')
              x = b.maxPool(x, { kernel: Math.min(l.k, 3), stride: l.s, padding: Math.min(p, 1) });
            else x = b.avgPool(x, { kernel: Math.min(l.k, 3), stride: l.s, padding: Math.min(p, 1) });
          }
          const body = b.build(x);
          const S = axisProfile(body, 0).totalStride;
          const tile = minimumTile(body, 0) + (tileMul - 1) * S;
          const image = tile + extra * S;
          checkPartition(body, image, tile);
        },
      ),
      { numRuns: 300 },
    );
  });
});
