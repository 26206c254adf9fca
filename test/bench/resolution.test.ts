// `tilestream bench resolution` without training: its --models parsing, the jobs it builds for each
// model (valid manifests, the tiles the trainer will cut), its table, and the CLI's refusals. The
// training itself (minutes per model) is the README's measurement, not a test.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { validateJob } from '../../crds/validate.ts';
import { formatResolution, type ResolutionReport } from '../../trainer/bench/resolution.ts';
import {
  BENCH_ARCHITECTURES,
  minimumTileOf,
  parseResolutionModels,
  resolutionJobs,
} from '../../trainer/bench/resolution-models.ts';
import { tileConstraints } from '../../trainer/plan/planner.ts';
import { tileGrid } from '../../trainer/streaming/geometry.ts';
import { builtinNetworkFor } from '../../trainer/train/job-setup.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'tilestream.js');
const DATA = { full: '/data', downsampled: '/data/down8' };
const SETTINGS = { epochs: 3, seed: 1, backend: 'auto' };

describe('bench resolution --models', () => {
  it('parses ARCHITECTURE-POOLING names, architectures with a dash included', () => {
    assert.deepEqual(parseResolutionModels(' smallcnn-max, convnext-atto-attention ,smallcnn-avg'), [
      { name: 'smallcnn-max', architecture: 'smallcnn', pooling: 'max' },
      { name: 'convnext-atto-attention', architecture: 'convnext-atto', pooling: 'attention' },
      { name: 'smallcnn-avg', architecture: 'smallcnn', pooling: 'avg' },
    ]);
  });

  it('refuses an unknown architecture or pooling, a missing pooling, a repeat and an empty list', () => {
    for (const bad of ['resnet18-max', 'convnext-atto-mean', 'convnext-atto', 'smallcnn']) {
      assert.throws(
        () => parseResolutionModels(`smallcnn-max,${bad}`),
        new RegExp(
          `unknown model '${bad}'.*ARCHITECTURE smallcnn, convnext-atto and POOLING max, avg, attention`,
        ),
      );
    }
    assert.throws(() => parseResolutionModels('smallcnn-max,smallcnn-max'), /smallcnn-max twice/);
    assert.throws(() => parseResolutionModels(' , '), /--models is empty/);
  });
});

describe('bench resolution jobs', () => {
  const expected = {
    'smallcnn-max': { full: { tile: 256, tiles: 9 }, lr: 0.003 },
    'convnext-atto-attention': { full: { tile: 328, tiles: 4 }, lr: 0.001 },
  } as const;
  for (const model of parseResolutionModels('smallcnn-max,convnext-atto-attention')) {
    it(`${model.name}: valid jobs, streamed at 512², one whole-image tile at 64²`, () => {
      const jobs = resolutionJobs(model, DATA, 512, 8, SETTINGS);
      assert.deepEqual(
        jobs.map((j) => [j.name, j.resolution, j.image, j.tile, j.streamed]),
        [
          [`${model.name}-full`, 'full', 512, expected[model.name as keyof typeof expected].full.tile, true],
          [`${model.name}-downsampled`, 'downsampled', 64, 64, false],
        ],
      );
      for (const j of jobs) {
        const v = validateJob(j.job);
        assert.ok(v.ok, v.ok ? '' : JSON.stringify(v.problems));
        const spec = v.job.spec;
        assert.equal(spec.model.architecture, BENCH_ARCHITECTURES[model.architecture]?.model.architecture);
        assert.equal(spec.model.head.pooling, model.pooling);
        assert.equal(spec.training.optimizer.learningRate, expected[model.name as keyof typeof expected].lr);
        assert.equal(spec.data.root, j.resolution === 'full' ? DATA.full : DATA.downsampled);
        // The tiles the trainer cuts, from the network the trainer builds.
        const net = builtinNetworkFor(spec);
        const grid = tileGrid(net.body, [j.image, j.image], [j.tile, j.tile]);
        const tiles = j.resolution === 'full' ? expected[model.name as keyof typeof expected].full.tiles : 1;
        assert.equal(grid.tiles.length, tiles);
        if (j.streamed) {
          const { stride, minimum } = tileConstraints(net, 0);
          assert.equal(minimum, minimumTileOf(model.architecture));
          assert.ok(
            j.tile >= minimum && j.tile % stride === 0,
            `tile ${j.tile}, minimum ${minimum}, stride ${stride}`,
          );
        } else {
          assert.match(
            j.note,
            new RegExp(`64² is below the minimum tile ${minimumTileOf(model.architecture)}`),
          );
        }
      }
    });
  }

  it('takes --tile and --learning-rate for every model, and refuses a tile below the minimum', () => {
    const [convnext] = parseResolutionModels('convnext-atto-attention');
    assert.ok(convnext);
    const [full] = resolutionJobs(convnext, DATA, 512, 8, { ...SETTINGS, tile: 160, learningRate: 0.0005 });
    assert.equal(full?.tile, 160);
    assert.equal(full?.learningRate, 0.0005);
    assert.throws(
      () => resolutionJobs(convnext, DATA, 512, 8, { ...SETTINGS, tile: 128 }),
      /--tile 128 is below the minimum tile of convnext-atto \(152 px/,
    );
    // A tile as large as the image is one tile: conventional, allowed.
    const [whole] = resolutionJobs(convnext, DATA, 128, 2, SETTINGS);
    assert.deepEqual([whole?.tile, whole?.streamed], [128, false]);
    assert.throws(() => resolutionJobs(convnext, DATA, 512, 3, SETTINGS), /not a multiple of --factor 3/);
  });
});

describe('bench resolution table', () => {
  it('prints one row per run with its tiles, and how each run was tiled', () => {
    const run = {
      architecture: 'convnext-atto',
      pooling: 'attention',
      learningRate: 0.001,
      backend: 'tensorflow',
      validationAccuracy: 0.5,
      seconds: 12.4,
    };
    const report: ResolutionReport = {
      task: 't',
      trainImages: 160,
      validationImages: 200,
      epochs: 2,
      runs: [
        {
          ...run,
          model: 'convnext-atto-attention',
          resolution: 'full',
          image: 512,
          tile: 328,
          tiles: 4,
          note: 'streamed with 328² tiles (minimum 152)',
          validationAuc: 0.91,
          aucPerEpoch: [0.8, 0.91],
        },
        {
          ...run,
          model: 'convnext-atto-attention',
          resolution: 'downsampled',
          image: 64,
          tile: 64,
          tiles: 1,
          note: 'one tile (conventional): 64² is below the minimum tile 152',
          validationAuc: 0.5,
          aucPerEpoch: [0.5, 0.5],
        },
      ],
      paper: { lowResolutionAuc: 0.58, highResolutionAuc: 0.706 },
    };
    const text = formatResolution(report);
    assert.match(text, /convnext-atto +attention +full +512² +328² ×4 +0\.910 +0\.500 +0\.80 0\.91 +12/);
    assert.match(text, /convnext-atto +attention +downsampled +64² +64² \(whole\) +0\.500/);
    assert.match(text, /downsampled: one tile \(conventional\): 64² is below the minimum tile 152/);
    assert.match(text, /2 epochs per run/);
  });
});

describe('tilestream bench resolution (CLI)', () => {
  const bench = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'bench', 'resolution', ...args], { encoding: 'utf8', timeout: 60_000 });

  it('lists the models in its help', () => {
    const r = bench('--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--models <list>/);
    assert.match(r.stdout, /smallcnn-max,convnext-atto-attention/);
  });

  it('refuses a wrong --models or --learning-rate before generating data (exit 1, naming the value)', () => {
    const wrong = bench('--models', 'smallcnn-max,convnext-atto-gated', '--out', '/nonexistent/never');
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stderr, /unknown model 'convnext-atto-gated'/);
    const lr = bench('--learning-rate', '0', '--out', '/nonexistent/never');
    assert.notEqual(lr.status, 0);
    assert.match(lr.stderr, /learning rate above 0.*got '0'/);
  });
});
