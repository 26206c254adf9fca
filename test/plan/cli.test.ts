// `tilestream plan` and `tilestream bench memory --paper / --no-measure`, run as processes:
// readable and JSON output, manifests, and refusals with their exit codes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { EXIT_DOES_NOT_FIT, EXIT_INVALID, registerPlanCommands } from '../../trainer/plan/cli.ts';
import { planAutoTile } from '../../trainer/plan/planner.ts';
import { registerBenchMemory } from '../../trainer/plan-measure/cli.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';

interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the commands in this process (commander's exitOverride turns exits into errors). */
async function run(...args: string[]): Promise<Run> {
  const r: Run = { status: 0, stdout: '', stderr: '' };
  const program = new Command('tilestream').exitOverride().configureOutput({
    writeOut: (s) => {
      r.stdout += s;
    },
    writeErr: (s) => {
      r.stderr += s;
    },
  });
  registerPlanCommands(program);
  registerBenchMemory(program.command('bench'));
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    r.status = e.exitCode;
  }
  return r;
}

/** The same, as a real process: exit codes as a shell sees them. */
const script = fileURLToPath(new URL('./plan-cli.ts', import.meta.url));
const spawnRun = (...args: string[]) =>
  spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 60_000 });

const dir = mkdtempSync(join(tmpdir(), 'tilestream-plan-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function manifest(name: string, extra = ''): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    `apiVersion: tilestream.io/v1alpha1
kind: StreamingTrainingJob
metadata:
  name: plan-test
spec:
  model:
    architecture: resnet18
    head: { pooling: avg, classes: 3 }
  data:
    root: /data
    train: train.csv
    imageSize: { height: 4096, width: 6144 }
  resources:
    gpus: 1
    minGpuMemory: 8Gi
  training:
    optimizer: { type: sgd, momentum: 0.9 }
  streaming:
    memoryHeadroom: 0.2
${extra}`,
  );
  return file;
}

describe('tilestream plan', () => {
  it('prints the tile, both peaks, the saving, the overhead and the breakdown', async () => {
    const r = await run('plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', '8Gi');
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /tile {10}\d+: \d+ tiles, area factor \d+\.\d\d, predicted time \d+\.\d\d× conventional/,
    );
    assert.match(r.stdout, /streamed {6}[\d.]+ GiB at peak/);
    assert.match(r.stdout, /conventional {2}[\d.]+ GiB at peak \(does not fit\)/);
    assert.match(r.stdout, /saving {8}[\d.]+ GiB \(\d+\.\d% less memory\)/);
    assert.match(r.stdout, /saved for backward \(tape\)/);
    assert.match(r.stdout, /^total /m);
  });

  it('--json gives the numbers, with breakdowns that add up', async () => {
    const r = await run(
      'plan',
      '--model',
      'smallcnn',
      '--image-size',
      '2048x3072',
      '--gpu-memory',
      '1Gi',
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.fits, true);
    assert.deepEqual(j.image, { height: 2048, width: 3072 });
    assert.equal(j.tile % j.stride, 0);
    assert.ok(j.streamed.requiredBytes <= j.usableBytes);
    const total = Object.values(j.streamed.breakdown as Record<string, number>).reduce((a, b) => a + b, 0);
    assert.equal(total, j.streamed.requiredBytes);
    assert.ok(j.savingsRatio > 0 && j.savingsRatio < 1);
    assert.ok(j.areaFactor >= 1);
  });

  it('plans ConvNeXt bodies cut by stage, and names the stages when the cut is unknown', async () => {
    const r = await run(
      'plan',
      '--model',
      'convnext-atto',
      '--body-end',
      'stages.3',
      '--image-size',
      '8192',
      '--gpu-memory',
      '24Gi',
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model, 'convnext-atto');
    assert.equal(j.bodyEnd, 'stages.3.blocks.1');
    assert.equal(j.stride, 32);
    assert.equal(j.minimumTile, 1184);
    assert.equal(j.fits, true);
    assert.equal(j.conventionalFits, false);
    const bad = await run(
      'plan',
      '--model',
      'convnext-tiny',
      '--body-end',
      'stages.4',
      '--image-size',
      '4096',
    );
    assert.equal(bad.status, EXIT_INVALID);
    assert.match(bad.stderr, /convnext-tiny has no layer 'stages\.4'.*stages\.0 … stages\.3/);
  });

  it('plans ResNet-50 cut by stage; at its default cut the trunk on the 8192² map needs more than 24 GiB', async () => {
    const args = ['plan', '--model', 'resnet50', '--image-size', '8192', '--gpu-memory', '24Gi', '--json'];
    const r = await run(...args, '--body-end', 'layer4');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model, 'resnet50');
    assert.equal(j.bodyEnd, 'layer4.2');
    assert.equal(j.stride, 32);
    assert.equal(j.minimumTile, 448);
    assert.equal(j.fits, true);
    assert.equal(j.conventionalFits, false);
    const layer3 = await run(...args);
    assert.equal(layer3.status, EXIT_DOES_NOT_FIT);
    assert.equal(JSON.parse(layer3.stdout).bodyEnd, 'layer3.5');
    assert.match(layer3.stdout, /the largest term is head \(trunk/);
  });

  it('plans InceptionNeXt bodies cut by stage; tiny to stages.2 does not fit 24 GiB (its stage-3 trunk on the stitched map)', async () => {
    const args = ['plan', '--image-size', '8192', '--gpu-memory', '24Gi', '--json'];
    const r = await run(...args, '--model', 'inceptionnext-atto');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model, 'inceptionnext-atto');
    assert.equal(j.bodyEnd, 'stages.2.blocks.5');
    assert.equal(j.stride, 16);
    assert.equal(j.minimumTile, 976);
    assert.equal(j.fits, true);
    const tiny = await run(...args, '--model', 'inceptionnext-tiny');
    assert.equal(tiny.status, EXIT_DOES_NOT_FIT);
    assert.equal(JSON.parse(tiny.stdout).minimumTile, 1840);
    assert.match(tiny.stdout, /the largest term is head \(trunk/);
    const bad = await run(...args, '--model', 'inceptionnext-tiny', '--body-end', 'layer3');
    assert.equal(bad.status, EXIT_INVALID);
    assert.match(bad.stderr, /inceptionnext-tiny has no layer 'layer3'.*stages\.0 … stages\.3/);
  });

  it('reads a StreamingTrainingJob; flags override it', async () => {
    const file = manifest('job.yaml');
    const r = await run('plan', file, '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model, 'resnet18');
    assert.deepEqual(j.image, { height: 4096, width: 6144 });
    assert.equal(j.budgetBytes, 8 * 2 ** 30);
    assert.equal(j.headroom, 0.2);
    assert.equal(j.optimizer, 'momentum');
    assert.equal(j.backend, 'tensorflow');
    assert.equal(j.source, file);
    const o = JSON.parse(
      (await run('plan', file, '--gpu-memory', '40Gi', '--headroom', '0.1', '--json')).stdout,
    );
    assert.equal(o.budgetBytes, 40 * 2 ** 30);
    assert.ok(o.tile > j.tile);
  });

  it('a fixed tile in the manifest is reported, not chosen', async () => {
    const r = await run('plan', manifest('fixed.yaml', '    tileSize: 1024\n'), '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).tile, 1024);
    // The trainer rounds a manifest's tileSize down to the stride (16 here).
    const rounded = await run('plan', manifest('rounded.yaml', '    tileSize: 1030\n'), '--json');
    assert.equal(rounded.status, 0, rounded.stderr);
    assert.equal(JSON.parse(rounded.stdout).tile, 1024);
  });

  it(`exits ${EXIT_DOES_NOT_FIT} with the numbers when no tile fits (as a process too)`, async () => {
    const r = spawnRun('plan', '--model', 'resnet34', '--image-size', '8192', '--gpu-memory', '512Mi');
    assert.equal(r.status, EXIT_DOES_NOT_FIT);
    assert.match(
      r.stderr,
      /no tile fits: even the smallest tile \(\d+\) needs [\d.]+ GiB but only 461 MiB of the 512 MiB/,
    );
    assert.match(r.stdout, /does not fit/);
    const j = await run(
      'plan',
      '--model',
      'resnet34',
      '--image-size',
      '8192',
      '--gpu-memory',
      '512Mi',
      '--json',
    );
    assert.equal(j.status, EXIT_DOES_NOT_FIT);
    const body = JSON.parse(j.stdout);
    assert.equal(body.fits, false);
    assert.ok(body.smallestTileNeeds > body.usableBytes);
    assert.ok(typeof body.dominantTerm === 'string');
  });

  it(`exits ${EXIT_INVALID} for tiles below the minimum, tiles off the stride, missing settings and bad manifests`, async () => {
    const cases: [string[], RegExp][] = [
      [
        ['plan', '--model', 'resnet18', '--image-size', '4096', '--tile', '64'],
        /tile 64 is below the minimum tile 224/,
      ],
      [
        ['plan', '--model', 'resnet18', '--image-size', '4096', '--tile', '1000'],
        /not a multiple of the body's total stride 16/,
      ],
      [['plan', '--image-size', '4096', '--gpu-memory', '16Gi'], /say which network to plan/],
      [['plan', '--model', 'resnet18', '--gpu-memory', '16Gi'], /say how large the images are/],
      [['plan', '--model', 'resnet18', '--image-size', '4096'], /say how much memory the GPU has/],
      [
        ['plan', '--model', 'resnet18', '--image-size', '4004', '--gpu-memory', '2Gi'],
        /crop or pad the image to 4000 or 4016/,
      ],
      [
        [
          'plan',
          '--model',
          'resnet18',
          '--body-end',
          'layer9',
          '--image-size',
          '4096',
          '--gpu-memory',
          '16Gi',
        ],
        /no layer 'layer9'/,
      ],
      [['plan', join(dir, 'missing.yaml')], /cannot read the job file: no such file/],
    ];
    for (const [args, message] of cases) {
      const r = await run(...args);
      assert.equal(r.status, EXIT_INVALID, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
  });

  it('refuses non-numeric quantities, sizes and fractions while parsing options (non-zero exit)', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', '16GB'],
        /not a Kubernetes quantity.*'16GB' is written '16G'/,
      ],
      [
        ['plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', 'lots'],
        /not a Kubernetes quantity/,
      ],
      [['plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', '0'], /more than zero/],
      [['plan', '--model', 'resnet18', '--image-size', 'big', '--gpu-memory', '16Gi'], /expected N or HxW/],
      [
        ['plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', '16Gi', '--headroom', '1.5'],
        /fraction/,
      ],
      [
        ['plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', '16Gi', '--tile', '-5'],
        /positive whole number|unknown option/,
      ],
      [
        ['plan', '--model', 'vgg16', '--image-size', '4096', '--gpu-memory', '16Gi'],
        /Allowed choices are resnet18, resnet34, resnet50, convnext-atto, convnext-femto, convnext-pico, convnext-nano, convnext-tiny, inceptionnext-atto, inceptionnext-tiny, midl2018, smallcnn/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await run(...args);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.match(r.stderr, message, args.join(' '));
    }
    const p = spawnRun('plan', '--model', 'resnet18', '--image-size', '4096', '--gpu-memory', '16GB');
    assert.equal(p.status, 1);
    assert.match(p.stderr, /not a Kubernetes quantity/);
  });
});

describe('tilestream bench memory', () => {
  it('--paper prints the paper check table', async () => {
    const r = await run('bench', 'memory', '--paper');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /MIDL 2018 network/);
    assert.match(r.stdout, /ResNet-34/);
    assert.match(r.stdout, /holds for tiles/);
  });

  it('--no-measure predicts conventional and streamed peaks for every network and size', async () => {
    const r = await run('bench', 'memory', '--no-measure', '--sizes', '1024,8192', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as {
      rows: {
        network: string;
        image: number;
        conventional: { predicted?: unknown; note?: string };
        streamed: { predicted?: { requiredBytes: number } };
      }[];
    };
    assert.equal(j.rows.length, 10);
    const midlSmall = j.rows.find((row) => row.network.startsWith('midl2018') && row.image === 1024);
    assert.match(midlSmall?.conventional.note ?? '', /too small for the layers after the streamed body/);
    for (const row of j.rows.filter((x) => x.image === 8192)) assert.ok(row.streamed.predicted, row.network);
  });

  it("--auto-tile streams with the planner's auto tile for the budget, uncapped (ConvNeXt-atto at 2048² on the wasm heap)", async () => {
    const budget = 3.8 * 2 ** 30;
    const args = ['bench', 'memory', '--no-measure', '--sizes', '2048', '--networks', 'convnext-atto'];
    const r = await run(...args, '--memory', `${budget}`, '--headroom', '0', '--auto-tile', '--json');
    assert.equal(r.status, 0, r.stderr);
    const row = (
      JSON.parse(r.stdout) as {
        rows: { tile?: number; streamed: { predicted?: { requiredBytes: number } } }[];
      }
    ).rows[0];
    const net = { ...builtinNetwork('convnext-atto'), pooling: 'max' as const, outputs: 2 };
    const plan = planAutoTile({
      net,
      image: 2048,
      budgetBytes: budget,
      headroom: 0,
      backend: 'wasm',
      imageStorage: 'float32',
      optimizer: 'none',
    });
    assert.ok(plan.fits, 'ConvNeXt-atto to stages.2 fits 2048² on the wasm heap');
    assert.equal(row?.tile, plan.tile);
    assert.ok((row?.tile ?? 0) > 1024, 'not capped by the default --tile 1024');
    assert.ok((row?.streamed.predicted?.requiredBytes ?? Infinity) <= budget);
    const bad = await run(...args, '--headroom', '1');
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /expected a fraction from 0 to below 1/);
  });
});
