// `tilestream bench scaling`: data-parallel throughput on this machine's cores. For each rank count
// it runs `tilestream train` on the same synthetic job (replicas = ranks, gpus 0, so the launcher
// starts that many local rank processes and splits the CPUs' threads between them) and reads rank
// 0's summary: images per second of the last epoch (the first carries the warm-up), the time inside
// the all-reduce per step and its share of the step. Efficiency = speedup over 1 rank / ranks.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { cpuAllowance } from '../backend/cpu-allowance.ts';
import { BACKEND_CHOICES, type BackendChoice } from '../backend/select.ts';
import { parseIntOption } from '../cli-util.ts';
import { threadsPerRank } from '../distributed/launcher.ts';
import { formatTable } from '../text-table.ts';
import type { TrainSummary } from '../train/run.ts';

export interface ScalingOptions {
  ranks: readonly number[];
  /** spec.model.architecture, e.g. resnet18. */
  model: string;
  /** Square image side, pixels; also the tile (the bench measures ranks, not streaming). */
  image: number;
  tile: number;
  /** Training images per epoch; a multiple of batch. */
  images: number;
  batch: number;
  epochs: number;
  backend: BackendChoice;
  /** The command that starts `tilestream` (node, flags, script). */
  command: readonly string[];
  log: (line: string) => void;
}

export interface ScalingRow {
  ranks: number;
  /** TF_NUM_INTRAOP_THREADS each rank got from the launcher (the machine's CPUs shared, at least 1). */
  threadsPerRank: number;
  imagesPerSecond: number;
  /** Wall time of one optimizer step (one batch over all ranks), last epoch. */
  stepSeconds: number;
  /**
   * Time rank 0 spent inside allReduceSum per step, and its share of the step. It includes waiting
   * for the slowest rank to arrive, so uneven ranks (or other load on the machine) show up here.
   */
  allReduceSecondsPerStep: number;
  allReduceShare: number;
  /** imagesPerSecond over the 1-rank figure (when measured), and that over the rank count. */
  speedup?: number;
  efficiency?: number;
}

export interface ScalingReport {
  /** The 1-minute load average before and after the runs: other work on the machine skews the figures. */
  machine: { cpus: number; cpuSource: string; loadAverage: { before: number; after: number } };
  job: {
    model: string;
    image: number;
    tile: number;
    images: number;
    batch: number;
    epochs: number;
    backend: string;
  };
  measuredEpoch: number;
  rows: ScalingRow[];
}

/** Runs the job once per rank count; throws naming the run that failed. */
export async function benchScaling(o: ScalingOptions): Promise<ScalingReport> {
  for (const n of o.ranks) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`--ranks: ${n} is not a rank count (1 or more)`);
    if (o.batch % n !== 0) throw new Error(`--batch ${o.batch} is not a multiple of ${n} ranks`);
  }
  if (o.images % o.batch !== 0)
    throw new Error(`--images ${o.images} is not a multiple of --batch ${o.batch}`);
  if (o.epochs < 2) throw new Error('--epochs must be at least 2: the first epoch carries the warm-up');
  const work = mkdtempSync(join(tmpdir(), 'tilestream-scaling-'));
  const cpus = cpuAllowance();
  const loadBefore = loadavg()[0] as number;
  const rows: ScalingRow[] = [];
  let backend = o.backend as string;
  try {
    for (const ranks of o.ranks) {
      const file = join(work, `ranks-${ranks}.yaml`);
      writeFileSync(file, stringify(jobFor(o, ranks, join(work, 'data'))));
      o.log(
        `${ranks} rank${ranks > 1 ? 's' : ''}: tilestream train (${o.images} images × ${o.epochs} epochs)`,
      );
      const summary = await runTrain(o.command, file, join(work, `out-${ranks}`));
      backend = summary.backend;
      const last = summary.trained.epochs.at(-1);
      if (!last || last.images === 0) throw new Error(`${ranks} ranks: the run trained no images`);
      const steps = last.images / o.batch;
      const row: ScalingRow = {
        ranks,
        threadsPerRank: ranks > 1 ? threadsPerRank(cpus.cpus, ranks) : cpus.cpus,
        imagesPerSecond: last.images / last.seconds,
        stepSeconds: last.seconds / steps,
        allReduceSecondsPerStep: last.allReduceSeconds / steps,
        allReduceShare: last.allReduceSeconds / last.seconds,
      };
      rows.push(row);
      o.log(
        `  ${row.imagesPerSecond.toFixed(2)} images/s, step ${row.stepSeconds.toFixed(2)} s, ` +
          `all-reduce ${(1000 * row.allReduceSecondsPerStep).toFixed(0)} ms (${(100 * row.allReduceShare).toFixed(1)}%)`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const one = rows.find((r) => r.ranks === 1);
  if (one) {
    for (const r of rows) {
      r.speedup = r.imagesPerSecond / one.imagesPerSecond;
      r.efficiency = r.speedup / r.ranks;
    }
  }
  return {
    machine: {
      cpus: cpus.cpus,
      cpuSource: cpus.source,
      loadAverage: { before: round2(loadBefore), after: round2(loadavg()[0] as number) },
    },
    job: {
      model: o.model,
      image: o.image,
      tile: o.tile,
      images: o.images,
      batch: o.batch,
      epochs: o.epochs,
      backend,
    },
    measuredEpoch: o.epochs,
    rows,
  };
}

const round2 = (x: number): number => Math.round(100 * x) / 100;

function jobFor(o: ScalingOptions, replicas: number, dataDir: string): Record<string, unknown> {
  return {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name: `scaling-${replicas}` },
    spec: {
      model: { architecture: o.model, head: { pooling: 'max', classes: 1 } },
      data: {
        root: dataDir,
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: o.image, width: o.image },
        channels: 1,
        normalization: { mean: [0.5], std: [0.05] },
        synthetic: { count: o.images, validationCount: 2, seed: 1, format: 'png' },
      },
      training: {
        epochs: o.epochs,
        batchSize: o.batch,
        loss: 'binary-cross-entropy',
        // Small steps: the figures are timings, but a diverging model would time NaN arithmetic.
        optimizer: { type: 'sgd', learningRate: 0.001, momentum: 0.9 },
        seed: 1,
        backend: o.backend,
      },
      streaming: { tileSize: o.tile },
      resources: { gpus: 0, replicas },
    },
  };
}

function runTrain(command: readonly string[], file: string, outputDir: string): Promise<TrainSummary> {
  const [cmd, ...args] = command as [string, ...string[]];
  const child = spawn(cmd, [...args, 'train', file, '--json', '--output-dir', outputDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const last = stdout.trim().split('\n').at(-1);
      if (code !== 0 || !last) {
        reject(new Error(`tilestream train ${file} exited with ${code}:\n${stderr.slice(-3000)}`));
        return;
      }
      resolve(JSON.parse(last) as TrainSummary);
    });
  });
}

const list = (s: string): number[] =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map((x) => parseIntOption(x));

function formatScaling(r: ScalingReport): string {
  const pct = (x: number | undefined): string => (x === undefined ? '' : `${(100 * x).toFixed(0)}%`);
  return (
    `${r.job.model} ${r.job.image}² (tile ${r.job.tile}), batch ${r.job.batch}, ${r.job.backend}, ` +
    `${r.machine.cpus} CPUs (${r.machine.cpuSource}), load average ${r.machine.loadAverage.before} → ` +
    `${r.machine.loadAverage.after}; epoch ${r.measuredEpoch} of ${r.job.epochs}\n` +
    formatTable(
      [
        'ranks',
        'threads/rank',
        'images/s',
        'step s',
        'all-reduce ms/step',
        'all-reduce share',
        'speedup',
        'efficiency',
      ],
      r.rows.map((x) => [
        String(x.ranks),
        String(x.threadsPerRank),
        x.imagesPerSecond.toFixed(2),
        x.stepSeconds.toFixed(2),
        (1000 * x.allReduceSecondsPerStep).toFixed(0),
        pct(x.allReduceShare),
        x.speedup === undefined ? '' : x.speedup.toFixed(2),
        pct(x.efficiency),
      ]),
    )
  );
}

export function registerScalingBench(bench: Command): void {
  bench
    .command('scaling')
    .description(
      "images per second with 1, 2 and 4 local ranks (tilestream train's launcher on this machine's cores) and the all-reduce share of each step",
    )
    .option('--ranks <list>', 'rank counts, comma-separated', '1,2,4')
    .option('--model <architecture>', 'spec.model.architecture', 'resnet18')
    .option('--image <px>', 'square image side', parseIntOption, 256)
    .option('--tile <px>', 'tile side', parseIntOption, 256)
    .option('--images <n>', 'training images per epoch (a multiple of --batch)', parseIntOption, 16)
    .option('--batch <n>', 'spec.training.batchSize (a multiple of every rank count)', parseIntOption, 4)
    .option('--epochs <n>', 'epochs; the last is measured (the first carries the warm-up)', parseIntOption, 2)
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend of the ranks')
        .choices(BACKEND_CHOICES)
        .default('auto'),
    )
    .option('--json', 'print JSON')
    .action(
      async (o: {
        ranks: string;
        model: string;
        image: number;
        tile: number;
        images: number;
        batch: number;
        epochs: number;
        backend: BackendChoice;
        json?: boolean;
      }) => {
        const report = await benchScaling({
          ...o,
          ranks: list(o.ranks),
          command: [process.execPath, ...process.execArgv, ...process.argv.slice(1, 2)],
          log: (line) => process.stderr.write(`${line}\n`),
        });
        process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatScaling(report));
      },
    );
}
