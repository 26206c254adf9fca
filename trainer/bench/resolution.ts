// `tilestream bench resolution`: the paper's finding that resolution matters, at small scale. The
// same network trains on the synthetic lesion task at full resolution (streamed) and on an 8×
// box-downsampled copy, where the 8–16 px lesions vanish; reports the validation AUC of each.
// Each training is a `tilestream train` process, so this measures exactly what users run.

import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ensureSyntheticDataset } from '../data/synthetic.ts';

export interface ResolutionOptions {
  out: string;
  size: number;
  count: number;
  validationCount: number;
  epochs: number;
  tile: number;
  factor: number;
  seed: number;
  backend: string;
  log: (line: string) => void;
}

export interface ResolutionRun {
  resolution: string;
  image: number;
  tile: number;
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
  full: ResolutionRun;
  downsampled: ResolutionRun;
  /** The anchor: CAMELYON17 slide-level AUC at 4 MP vs 66 MP (TPAMI abstract). */
  paper: { lowResolutionAuc: number; highResolutionAuc: number };
}

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));

function jobFor(name: string, root: string, size: number, tile: number, o: ResolutionOptions): object {
  return {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name },
    spec: {
      model: { architecture: 'smallcnn', width: 16, head: { pooling: 'max', classes: 1 } },
      data: {
        root,
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: size, width: size },
        channels: 1,
        normalization: { mean: [0.5], std: [0.05] },
      },
      training: {
        epochs: o.epochs,
        batchSize: 8,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.003 },
        seed: o.seed,
        backend: o.backend,
      },
      streaming: { tileSize: tile },
    },
  };
}

async function trainOnce(
  name: string,
  file: string,
  o: ResolutionOptions,
): Promise<ResolutionRun & { raw: unknown }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'train', file, '--json'], {
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
      if (line.includes('epoch ')) o.log(`${name}: ${line.slice(0, 300)}`);
  });
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  if (code !== 0) throw new Error(`training ${name} failed with exit code ${code}:\n${stderr.slice(-2000)}`);
  const summary = JSON.parse(stdout.trim().split('\n').at(-1) as string) as {
    image: [number, number];
    tile: [number, number];
    validation: { auc: number; accuracy: number };
    history: { validationAuc: number }[];
  };
  return {
    resolution: name,
    image: summary.image[0],
    tile: summary.tile[0],
    validationAuc: summary.validation.auc,
    validationAccuracy: summary.validation.accuracy,
    seconds: (performance.now() - t0) / 1000,
    aucPerEpoch: summary.history.map((h) => h.validationAuc),
    raw: summary,
  };
}

export async function benchResolution(o: ResolutionOptions): Promise<ResolutionReport> {
  const dir = resolve(o.out);
  mkdirSync(dir, { recursive: true });
  o.log(
    `resolution: generating ${o.count}+${o.validationCount} images of ${o.size}² and the ${o.factor}× copy in ${dir}`,
  );
  const data = join(dir, 'data');
  await ensureSyntheticDataset(data, {
    height: o.size,
    width: o.size,
    count: o.count,
    validationCount: o.validationCount,
    seed: o.seed,
    format: 'png',
    downsample: o.factor,
  });
  const small = o.size / o.factor;
  const fullFile = join(dir, 'full.yaml');
  const downFile = join(dir, 'downsampled.yaml');
  writeFileSync(fullFile, stringify(jobFor('full', data, o.size, o.tile, o)));
  writeFileSync(downFile, stringify(jobFor('downsampled', join(data, `down${o.factor}`), small, small, o)));
  o.log(`resolution: training at ${o.size}² streamed with ${o.tile}² tiles`);
  const { raw: _f, ...full } = await trainOnce('full', fullFile, o);
  o.log(`resolution: training at ${small}² (${o.factor}× downsampled)`);
  const { raw: _d, ...downsampled } = await trainOnce('downsampled', downFile, o);
  return {
    task: 'synthetic lesions (8–16 px checkerboards in tissue-like texture)',
    trainImages: o.count,
    validationImages: o.validationCount,
    epochs: o.epochs,
    full,
    downsampled,
    paper: { lowResolutionAuc: 0.58, highResolutionAuc: 0.706 },
  };
}
