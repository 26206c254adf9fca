// The tile planner: the largest aligned tile that fits, explanations when none does, refusals of
// bad input, and the paper check the README quotes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type PlanNetwork, predictStreamed } from '../../trainer/plan/memory.ts';
import { paperCheck } from '../../trainer/plan/paper.ts';
import {
  checkTile,
  formatBytes,
  PlanError,
  planAutoTile,
  planTile,
  tileConstraints,
} from '../../trainer/plan/planner.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';

const GiB = 2 ** 30;
const resnet18: PlanNetwork = { ...builtinNetwork('resnet18', {}), pooling: 'max', outputs: 2 };
const smallcnn: PlanNetwork = { ...builtinNetwork('smallcnn', { width: 16 }), pooling: 'max', outputs: 2 };

describe('planTile', () => {
  it('returns the largest aligned tile that fits: that tile fits, the next multiple of the stride does not', () => {
    const plan = planTile({ net: resnet18, image: 8192, budgetBytes: 8 * GiB, headroom: 0.1 });
    assert.ok(plan.fits, plan.fits ? '' : plan.reason);
    const { stride, minimum } = tileConstraints(resnet18);
    assert.equal(plan.tile % stride, 0);
    assert.ok(plan.tile >= minimum && plan.tile <= 8192);
    assert.ok(plan.streamed.requiredBytes <= 8 * GiB * 0.9);
    const next = predictStreamed(resnet18, [8192, 8192], [plan.tile + stride, plan.tile + stride]);
    assert.ok(next.requiredBytes > 8 * GiB * 0.9, `tile ${plan.tile + stride} also fits`);
    assert.ok(plan.savingsRatio > 0.8 && plan.savingsRatio < 1);
    assert.equal(plan.savedBytes, plan.conventional.requiredBytes - plan.streamed.requiredBytes);
    assert.equal(plan.conventionalFits, false);
  });

  it('a larger budget never gives a smaller tile, and every chosen tile fits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 }), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const p = (g: number) => planTile({ net: smallcnn, image: 2048, budgetBytes: (g * GiB) / 64 });
        const small = p(lo);
        const large = p(hi);
        if (!small.fits) return;
        assert.ok(large.fits);
        assert.ok(large.tile >= small.tile, `${hi}/64 GiB → ${large.tile} < ${lo}/64 GiB → ${small.tile}`);
        assert.ok(small.streamed.requiredBytes <= small.usableBytes);
      }),
      { numRuns: 10, seed: 3 },
    );
  });

  it('names the smallest tile that needs as few tiles (less overlap, less compute)', () => {
    // ResNet-34 at 8192²: 2416 and 2096 both cut the image into 5×5 tiles; 2096 overlaps less.
    const net: PlanNetwork = { ...builtinNetwork('resnet34', {}), pooling: 'max', outputs: 2 };
    const plan = planTile({ net, image: 8192, budgetBytes: 16 * GiB, optimizer: 'adam' });
    assert.ok(plan.fits);
    assert.equal(plan.tile, 2416);
    assert.equal(plan.leanTile.tiles, plan.streamed.tiles);
    assert.equal(plan.leanTile.tile, 2096);
    assert.ok(plan.leanTile.areaFactor < plan.streamed.areaFactor * 0.8);
    const { stride } = tileConstraints(net);
    const smaller = predictStreamed(net, [8192, 8192], [2096 - stride, 2096 - stride]);
    assert.ok(smaller.tiles > plan.streamed.tiles);
  });

  it('auto: as few tiles as the largest fitting tile, made by its lean tile, never above maxTile', () => {
    const net: PlanNetwork = { ...builtinNetwork('resnet34', {}), pooling: 'max', outputs: 2 };
    const req = { net, image: 8192, budgetBytes: 16 * GiB, optimizer: 'adam' as const };
    const largest = planTile(req);
    const auto = planAutoTile(req);
    assert.ok(largest.fits && auto.fits);
    assert.deepEqual(
      [auto.tile, auto.largestTile, auto.streamed.tiles],
      [2096, 2416, largest.streamed.tiles],
    );
    assert.ok(auto.streamed.requiredBytes < largest.streamed.requiredBytes);
    assert.ok(auto.streamed.areaFactor < largest.streamed.areaFactor);
    // Capped (after an out-of-memory exit): the largest tile under the cap sets the count.
    const capped = planAutoTile({ ...req, maxTile: 2000 });
    assert.ok(capped.fits && capped.tile <= 2000 && capped.streamed.tiles > auto.streamed.tiles);
    assert.equal(capped.tile % tileConstraints(net).stride, 0);
    // Already lean (one tile of the whole image): nothing to say.
    const whole = planAutoTile({ net: smallcnn, image: [512, 768], budgetBytes: 64 * GiB });
    assert.ok(whole.fits && whole.largestTile === undefined && whole.streamed.tiles === 1);
  });

  it('a budget that holds the whole image gives one tile of the whole image', () => {
    const plan = planTile({ net: smallcnn, image: [512, 768], budgetBytes: 64 * GiB });
    assert.ok(plan.fits);
    assert.deepEqual(plan.streamed.tile, [512, 768]);
    assert.equal(plan.streamed.tiles, 1);
    assert.ok(plan.conventionalFits);
  });

  it('respects the minimum tile of the caller, rounded up to the stride', () => {
    const plan = planTile({ net: resnet18, image: 8192, budgetBytes: 40 * GiB, minTile: 1000 });
    assert.ok(plan.fits);
    assert.equal(plan.minimumTile, 1008);
    const tight = planTile({ net: resnet18, image: 8192, budgetBytes: 2 * GiB, minTile: 3000 });
    assert.equal(tight.fits, false);
    if (!tight.fits) assert.equal(tight.smallestTile, 3008);
  });

  it('explains an impossible budget with the numbers and the largest term', () => {
    const plan = planTile({ net: resnet18, image: 8192, budgetBytes: 256 * 2 ** 20 });
    assert.equal(plan.fits, false);
    if (plan.fits) return;
    assert.equal(plan.smallestTile, tileConstraints(resnet18).minimum);
    assert.ok(plan.smallestTileNeeds > plan.usableBytes);
    assert.match(plan.reason, new RegExp(formatBytes(plan.smallestTileNeeds).replace('.', '\\.')));
    assert.match(plan.reason, /230 MiB of the 256 MiB budget/);
    assert.equal(plan.dominantBytes, plan.breakdown[plan.dominantTerm]);
  });

  it('names the image-bound terms when they, not the tile, exhaust the memory', () => {
    // A 32768² image: its bytes alone (1 GiB as uint8) and the stitched feature map outgrow 1 GiB.
    const plan = planTile({ net: smallcnn, image: 32768, budgetBytes: GiB, minTile: 1024 });
    assert.equal(plan.fits, false);
    if (plan.fits) return;
    assert.ok(
      ['featureMap', 'featureMapGradient', 'head', 'image'].includes(plan.dominantTerm),
      plan.dominantTerm,
    );
    assert.ok(plan.imageBoundBytes > plan.smallestTileNeeds / 2);
    assert.match(plan.reason, /grows with the image/);
  });

  it('refuses nonsense budgets, headrooms and images', () => {
    for (const budgetBytes of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => planTile({ net: smallcnn, image: 1024, budgetBytes }), PlanError);
    }
    for (const headroom of [-0.1, 1, 1.5, Number.NaN]) {
      assert.throws(() => planTile({ net: smallcnn, image: 1024, budgetBytes: GiB, headroom }), /headroom/);
    }
    assert.throws(() => planTile({ net: smallcnn, image: 0, budgetBytes: GiB }), /image height/);
    assert.throws(() => planTile({ net: smallcnn, image: [1024, 1.5], budgetBytes: GiB }), /image width/);
    // 1000 is not a multiple of the stride 16: tiles cannot be aligned, and the error says what would work.
    assert.throws(
      () => planTile({ net: smallcnn, image: 1000, budgetBytes: GiB }),
      /crop or pad the image to 992 or 1008/,
    );
  });
});

describe('checkTile', () => {
  it('reports a tile the caller chose', () => {
    const plan = checkTile({ net: resnet18, image: 4096, budgetBytes: 16 * GiB, tile: 1024 });
    assert.ok(plan.fits);
    assert.equal(plan.tile, 1024);
  });

  it('refuses tiles below the minimum and tiles off the stride, naming what would work', () => {
    const { minimum } = tileConstraints(resnet18);
    assert.throws(
      () => checkTile({ net: resnet18, image: 4096, budgetBytes: 16 * GiB, tile: 64 }),
      new RegExp(`tile 64 is below the minimum tile ${minimum}`),
    );
    assert.throws(
      () => checkTile({ net: resnet18, image: 4096, budgetBytes: 16 * GiB, tile: 1000 }),
      /not a multiple of the body's total stride 16; use 992 or 1008/,
    );
  });

  it('says when the chosen tile does not fit', () => {
    const plan = checkTile({ net: resnet18, image: 8192, budgetBytes: GiB, tile: 4096 });
    assert.equal(plan.fits, false);
    if (!plan.fits) assert.match(plan.reason, /^tile 4096 needs/);
  });
});

describe('paper check (README)', () => {
  const report = paperCheck();
  it('MIDL 2018 network at 64 megapixels: at least 97% less memory with the notebook-sized tiles', () => {
    const midl = report.claims[0];
    assert.ok(midl);
    const best = Math.max(...midl.rows.map((r) => r.savingsRatio));
    assert.ok(best >= 0.97, `best saving ${best}`);
  });

  it('ResNet-34 at 8192²: tens of gigabytes saved, at least the ~50 GB the TPAMI abstract reports', () => {
    const r34 = report.claims[1];
    assert.ok(r34);
    for (const row of r34.rows) assert.ok(row.savedBytes > 40e9, `${row.tile}: ${row.savedBytes}`);
  });
});
