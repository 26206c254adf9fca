// `tilestream bench resolution`: the paper's finding that resolution matters, at small scale. Each
// model (`--models`, e.g. the small CNN with max pooling and ConvNeXt-atto with the attention-MIL
// head) trains on the synthetic lesion task at full resolution (streamed) and on an 8×
// box-downsampled copy, where the 8–16 px lesions vanish; reports the validation AUC of each run.
// Each training is a `tilestream train` process, so this measures exactly what users run.

import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { formatProblems, validateJob } from '../../crds/validate.ts';
import { ensureSyntheticDataset } from '../data/synthetic.ts';
import { formatTable } from '../text-table.ts';
import { type ResolutionJob, type ResolutionModel, resolutionJobs } from './resolution-models.ts';

export interface ResolutionOptions {
  out: string;
  size: number;
  count: number;
  validationCount: number;
  epochs: number;
  /** Tile of every full-resolution run; default each architecture's own. */
  tile?: number;
  /** Adam's learning rate of every run; default each architecture's own. */
  learningRate?: number;
  factor: number;
  seed: number;
  backend: string;
  models: ResolutionModel[];
  log: (line: string) => void;
}

export interface ResolutionRun {
  model: string;
  architecture: string;
  pooling: string;
  resolution: 'full' | 'downsampled';
  image: number;
  tile: number;
  /** Tiles per image; 1 is conventional training. */
  tiles: number;
  note: string;
  backend: string;
  learningRate: number;
  validationAuc: number;
  validationAccuracy: number;
  seconds: number;
  aucPerEpoch: number[];
}

export interface ResolutionReport {
  task: string;
  trainImages: number;
  validationImages: number;
  epochs: number;
  runs: ResolutionRun[];
  /** The anchor: CAMELYON17 slide-level AUC at 4 MP vs 66 MP (TPAMI abstract). */
  paper: { lowResolutionAuc: number; highResolutionAuc: number };
}

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));

async function trainOnce(
  r: ResolutionJob,
  file: string,
  outputDir: string,
  o: ResolutionOptions,
): Promise<ResolutionRun> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'train', file, '--json', '--output-dir', outputDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
    for (const line of d.toString().split('\n'))
      if (line.includes('epoch ')) o.log(`${r.name}: ${line.slice(0, 300)}`);
  });
  const code = await new Promise<number | null>((done) => child.on('exit', (c) => done(c)));
  if (code !== 0)
    throw new Error(`training ${r.name} failed with exit code ${code}:\n${stderr.slice(-2000)}`);
  const summary = JSON.parse(stdout.trim().split('\n').at(-1) as string) as {
    backend: string;
    image: [number, number];
    tile: [number, number];
    tiles: number;
    validation: { auc: number; accuracy: number };
    history: { validationAuc: number }[];
  };
  return {
    model: r.model.name,
    architecture: r.model.architecture,
    pooling: r.model.pooling,
    resolution: r.resolution,
    image: summary.image[0],
    tile: summary.tile[0],
    tiles: summary.tiles,
    note: r.note,
    backend: summary.backend,
    learningRate: r.learningRate,
    validationAuc: summary.validation.auc,
    validationAccuracy: summary.validation.accuracy,
    seconds: (performance.now() - t0) / 1000,
    aucPerEpoch: summary.history.map((h) => h.validationAuc),
  };
}

export async function benchResolution(o: ResolutionOptions): Promise<ResolutionReport> {
  const dir = resolve(o.out);
  const data = join(dir, 'data');
  // Every job is built and validated before the first (long) training starts.
  const jobs = o.models.flatMap((m) =>
    resolutionJobs(m, { full: data, downsampled: join(data, `down${o.factor}`) }, o.size, o.factor, o),
  );
  for (const j of jobs) {
    const v = validateJob(j.job);
    if (!v.ok) throw new Error(`the bench built an invalid job ${j.name}:\n${formatProblems(v.problems)}`);
  }
  mkdirSync(dir, { recursive: true });
  o.log(
    `resolution: generating ${o.count}+${o.validationCount} images of ${o.size}² and the ${o.factor}× copy in ${dir}`,
  );
  await ensureSyntheticDataset(data, {
    height: o.size,
    width: o.size,
    count: o.count,
    validationCount: o.validationCount,
    seed: o.seed,
    format: 'png',
    downsample: o.factor,
  });
  const runs: ResolutionRun[] = [];
  for (const j of jobs) {
    const file = join(dir, `${j.name}.yaml`);
    writeFileSync(file, stringify(j.job));
    // Checkpoints and attention maps go to runs/<name>; an earlier run's are removed, since resuming
    // from them would not measure a training.
    const outputDir = join(dir, 'runs', j.name);
    rmSync(outputDir, { recursive: true, force: true });
    o.log(`resolution: training ${j.model.name} at ${j.image}², ${j.note}, learning rate ${j.learningRate}`);
    runs.push(await trainOnce(j, file, outputDir, o));
  }
  return {
    task: 'synthetic lesions (8–16 px checkerboards in tissue-like texture)',
    trainImages: o.count,
    validationImages: o.validationCount,
    epochs: o.epochs,
    runs,
    paper: { lowResolutionAuc: 0.58, highResolutionAuc: 0.706 },
  };
}

/** The report as one table, a row per run, then the notes that say how each run was tiled. */
export function formatResolution(r: ResolutionReport): string {
  const rows = r.runs.map((x) => [
    x.architecture,
    x.pooling,
    x.resolution,
    `${x.image}²`,
    x.tiles > 1 ? `${x.tile}² ×${x.tiles}` : `${x.tile}² (whole)`,
    x.validationAuc.toFixed(3),
    x.validationAccuracy.toFixed(3),
    x.aucPerEpoch.map((a) => a.toFixed(2)).join(' '),
    x.seconds.toFixed(0),
  ]);
  const notes = r.runs.map(
    (x) => `${x.model} ${x.resolution}: ${x.note}, learning rate ${x.learningRate}, ${x.backend}`,
  );
  return (
    formatTable(
      [
        'architecture',
        'pooling',
        'resolution',
        'image',
        'tile',
        'validation AUC',
        'accuracy',
        'AUC per epoch',
        'seconds',
      ],
      rows,
    ) +
    `${notes.join('\n')}\n` +
    `${r.trainImages} training and ${r.validationImages} validation images, ${r.epochs} epoch${r.epochs === 1 ? '' : 's'} per run\n` +
    `paper (CAMELYON17, TPAMI abstract): AUC ${r.paper.lowResolutionAuc} at 4 MP vs ${r.paper.highResolutionAuc} at 66 MP\n`
  );
}
