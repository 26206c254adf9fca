// The training loop: epochs of seeded image orders, streamed steps with gradient accumulation to the
// effective batch, one optimizer update per batch, validation each epoch, checkpoints at batch
// boundaries (so a resumed run repeats exactly what an uninterrupted one does), and a stop flag
// checked between tiles for SIGTERM.

import * as tf from '@tensorflow/tfjs-core';
import type { TileSource } from '../streaming/executor.ts';
import type { TileGrid } from '../streaming/geometry.ts';
import {
  accumulate,
  initParams,
  type Network,
  type NetworkParams,
  networkParameterShapes,
  streamedPredict,
  streamedStep,
} from '../streaming/network.ts';
import { type CheckpointTensor, loadLatestCheckpoint, writeCheckpoint } from './checkpoint.ts';
import { type LossName, lossFor, scoreOf } from './losses.ts';
import { accuracy, rocAuc } from './metrics.ts';
import { createOptimizer, type OptimizerConfig } from './optimizers.ts';
import { learningRateAt, type Schedule } from './schedule.ts';

/** One image of a dataset: opened only when it is used, closed right after. */
export interface Sample {
  /** A name for logs (the manifest path; never a patient identifier in metrics). */
  readonly id: string;
  readonly label: number;
  open(augmentationSeed: number): Promise<TileSource & { close(): void }>;
}

/** Why an image was skipped, as the data layer reports it. */
export class SkippedImage extends Error {
  override name = 'SkippedImage';
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

export interface TrainConfig {
  readonly network: Network;
  readonly image: readonly [number, number];
  readonly grid: TileGrid;
  readonly epochs: number;
  /** Effective batch: gradients of this many images are averaged before one update. */
  readonly batchSize: number;
  readonly learningRate: number;
  readonly schedule: Schedule;
  readonly optimizer: OptimizerConfig;
  readonly loss: LossName;
  readonly seed: number;
  readonly checkpoint?: { dir: string; everySteps: number; keep: number };
  /** Fail when more than this fraction of the images seen so far were unreadable. */
  readonly maxBadImageFraction: number;
  /** Initial weights to start from instead of random ones (e.g. an imported model). */
  readonly initialWeights?: ReadonlyMap<string, CheckpointTensor>;
}

export interface EpochMetrics {
  epoch: number;
  trainLoss: number;
  validationLoss: number;
  validationAuc: number;
  validationAccuracy: number;
}

/** What the loop tells the outside world: logs, metrics, progress, status reports. */
export interface TrainEvents {
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
  /** After each training image; peakBytes is measured (tf.profile) on the first image of an epoch, else NaN. */
  imageDone?(info: {
    epoch: number;
    step: number;
    loss: number;
    pixels: number;
    tiles: number;
    seconds: number;
    peakBytes: number;
  }): void;
  progress?(info: {
    epoch: number;
    epochs: number;
    step: number;
    steps: number;
    index: number;
    count: number;
    loss: number;
  }): void;
  skipped?(id: string, reason: string): void;
  checkpointed?(info: { path: string; step: number; time: Date }): void;
  epochDone?(m: EpochMetrics): void;
  /** Called between tiles and images; return true to stop (SIGTERM): the loop checkpoints and returns. */
  shouldStop?(): boolean;
}

export interface TrainResult {
  readonly status: 'completed' | 'stopped';
  readonly step: number;
  readonly epoch: number;
  readonly resumedFrom?: string;
  readonly history: EpochMetrics[];
  readonly skippedImages: number;
  readonly params: NetworkParams;
}

class StopRequested extends Error {}

/** A seeded permutation of 0..n−1 for one epoch (counter-based, so resuming needs only seed and epoch). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let state = (seed * 0x9e3779b1 + epoch * 0x85ebca6b + 1) >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return order;
}

/** A fingerprint of the parameter shapes: a checkpoint of another network is refused, not half-loaded. */
function fingerprint(net: Network): string {
  return [...networkParameterShapes(net)].map(([n, s]) => `${n}:${s.join('x')}`).join(',');
}

interface Position {
  epoch: number;
  index: number;
  step: number;
  history: EpochMetrics[];
  skipped: number;
  seen: number;
}

export async function train(
  config: TrainConfig,
  trainSet: readonly Sample[],
  validationSet: readonly Sample[],
  events: TrainEvents,
): Promise<TrainResult> {
  if (trainSet.length === 0)
    throw new Error('the training set is empty; check the manifest and its split column');
  const net = config.network;
  const params = initParams(net, config.seed);
  const optimizer = createOptimizer(config.optimizer);
  const pos: Position = { epoch: 0, index: 0, step: 0, history: [], skipped: 0, seen: 0 };
  const stepsPerEpoch = Math.ceil(trainSet.length / config.batchSize);
  let resumedFrom: string | undefined;

  const setParams = (tensors: ReadonlyMap<string, CheckpointTensor>, what: string): void => {
    for (const [name, p] of params) {
      const t = tensors.get(name);
      if (!t) throw new Error(`${what} has no tensor '${name}'`);
      if (t.shape.join('x') !== p.shape.join('x')) {
        throw new Error(
          `${what}: '${name}' has shape ${t.shape.join('x')}, the network needs ${p.shape.join('x')}`,
        );
      }
      p.assign(tf.tensor(t.values, p.shape));
    }
  };
  if (config.initialWeights) setParams(config.initialWeights, 'the initial weights');

  if (config.checkpoint) {
    const ckpt = loadLatestCheckpoint(config.checkpoint.dir, (m) => events.log('warn', m));
    if (ckpt) {
      if (ckpt.meta.fingerprint !== fingerprint(net)) {
        throw new Error(
          `checkpoint ${ckpt.path} was written for a different network; point spec.checkpoint.path at a new folder ` +
            'or delete the old checkpoints',
        );
      }
      const own = new Map([...ckpt.tensors].filter(([n]) => !n.startsWith('optimizer/')));
      setParams(own, `checkpoint ${ckpt.path}`);
      const slots = new Map<string, tf.Tensor>();
      for (const [n, t] of ckpt.tensors)
        if (n.startsWith('optimizer/')) slots.set(n.slice(10), tf.tensor(t.values, [...t.shape]));
      optimizer.restore(slots, ckpt.meta.optimizer as Record<string, number>);
      for (const t of slots.values()) t.dispose();
      Object.assign(pos, ckpt.meta.position as Position);
      resumedFrom = ckpt.path;
      events.log('info', `resumed from ${ckpt.path}`, { step: pos.step, epoch: pos.epoch, index: pos.index });
    }
  }

  const save = (): void => {
    if (!config.checkpoint) return;
    const tensors = new Map<string, CheckpointTensor>();
    for (const [n, p] of params) tensors.set(n, { shape: p.shape, values: Float32Array.from(p.dataSync()) });
    const st = optimizer.state();
    for (const [n, t] of st.tensors)
      tensors.set(`optimizer/${n}`, { shape: t.shape, values: Float32Array.from(t.dataSync()) });
    const path = writeCheckpoint(
      config.checkpoint.dir,
      {
        step: pos.step,
        meta: {
          fingerprint: fingerprint(net),
          optimizer: st.scalars,
          position: { ...pos },
          // The RNG is counter-based: the seed and the position above determine every later draw.
          rng: { seed: config.seed, algorithm: 'mulberry32(seed, epoch, index)' },
        },
        tensors,
      },
      config.checkpoint.keep,
    );
    events.checkpointed?.({ path, step: pos.step, time: new Date() });
  };

  const stopCheck = (): void => {
    if (events.shouldStop?.()) throw new StopRequested();
  };

  try {
    while (pos.epoch < config.epochs) {
      const order = epochOrder(trainSet.length, config.seed, pos.epoch);
      let lossSum = 0;
      let lossCount = 0;
      while (pos.index < order.length) {
        // One batch: accumulate, then update. A stop abandons the batch; the checkpoint holds its start.
        const batchStart = pos.index;
        const batchEnd = Math.min(batchStart + config.batchSize, order.length);
        const grads = new Map<string, tf.Tensor>();
        let used = 0;
        let batchLoss = 0;
        try {
          for (let i = batchStart; i < batchEnd; i++) {
            stopCheck();
            const sample = trainSet[order[i] as number] as Sample;
            const r = await runImage(config, params, sample, i, pos, events, stopCheck, i === 0);
            if (r === null) continue;
            accumulate(grads, r.grads);
            batchLoss += r.loss;
            used++;
          }
        } catch (e) {
          for (const g of grads.values()) g.dispose();
          throw e;
        }
        if (used > 0) {
          const t = pos.epoch + batchStart / order.length;
          const lr = learningRateAt(config.learningRate, config.schedule, t, config.epochs);
          const averaged = new Map([...grads].map(([n, g]) => [n, tf.div(g, used)]));
          optimizer.apply(params, averaged, lr);
          for (const g of [...grads.values(), ...averaged.values()]) g.dispose();
          lossSum += batchLoss;
          lossCount += used;
        }
        pos.step++;
        pos.index = batchEnd;
        events.progress?.({
          epoch: pos.epoch,
          epochs: config.epochs,
          step: pos.step,
          steps: stepsPerEpoch * config.epochs,
          index: pos.index,
          count: order.length,
          loss: used > 0 ? batchLoss / used : Number.NaN,
        });
        if (config.checkpoint && pos.step % config.checkpoint.everySteps === 0 && pos.index < order.length)
          save();
      }
      const m = await validate(config, params, validationSet, pos, events, stopCheck);
      m.trainLoss = lossCount > 0 ? lossSum / lossCount : Number.NaN;
      pos.history.push(m);
      events.epochDone?.(m);
      pos.epoch++;
      pos.index = 0;
      save();
    }
  } catch (e) {
    if (!(e instanceof StopRequested)) throw e;
    events.log('info', 'stop requested: writing a checkpoint at the last completed batch', {
      step: pos.step,
    });
    save();
    optimizer.dispose();
    return {
      status: 'stopped',
      step: pos.step,
      epoch: pos.epoch,
      history: pos.history,
      skippedImages: pos.skipped,
      params,
      ...(resumedFrom && { resumedFrom }),
    };
  }
  optimizer.dispose();
  return {
    status: 'completed',
    step: pos.step,
    epoch: pos.epoch,
    history: pos.history,
    skippedImages: pos.skipped,
    params,
    ...(resumedFrom && { resumedFrom }),
  };
}

/** Opens a sample, reporting and counting it when it cannot be read; fails past the bad-image threshold. */
async function openSample(
  config: TrainConfig,
  sample: Sample,
  augmentationSeed: number,
  pos: Position,
  events: TrainEvents,
): Promise<(TileSource & { close(): void }) | null> {
  pos.seen++;
  try {
    return await sample.open(augmentationSeed);
  } catch (e) {
    if (!(e instanceof SkippedImage)) throw e;
    pos.skipped++;
    events.skipped?.(sample.id, e.reason);
    events.log('warn', `skipping image ${sample.id}: ${e.message}`, { reason: e.reason });
    if (pos.skipped > config.maxBadImageFraction * pos.seen && pos.seen >= 10) {
      throw new Error(
        `${pos.skipped} of ${pos.seen} images could not be read, more than maxBadImageFraction ` +
          `${config.maxBadImageFraction}; fix the dataset or raise spec.data.maxBadImageFraction`,
      );
    }
    return null;
  }
}

async function runImage(
  config: TrainConfig,
  params: NetworkParams,
  sample: Sample,
  index: number,
  pos: Position,
  events: TrainEvents,
  stopCheck: () => void,
  measure: boolean,
): Promise<{ loss: number; grads: Map<string, tf.Tensor> } | null> {
  const source = await openSample(
    config,
    sample,
    config.seed * 1_000_003 + pos.epoch * 65_537 + index,
    pos,
    events,
  );
  if (!source) return null;
  const t0 = performance.now();
  try {
    const lossFn = lossFor(config.loss, sample.label, config.network.outputs);
    const run = () =>
      streamedStep(config.network, params, source, config.grid, lossFn, { progress: () => stopCheck() });
    let step: Awaited<ReturnType<typeof run>>;
    let peakBytes = Number.NaN;
    if (measure) {
      // tf.profile reads every kernel output to check it, which is too slow to do on every step.
      let result: Awaited<ReturnType<typeof run>> | undefined;
      const info = await tf.profile(async () => {
        result = await run();
        return [];
      });
      step = result as Awaited<ReturnType<typeof run>>;
      peakBytes = info.peakBytes;
    } else {
      step = await run();
    }
    events.imageDone?.({
      epoch: pos.epoch,
      step: pos.step,
      loss: step.loss,
      pixels: config.image[0] * config.image[1],
      tiles: 2 * config.grid.tiles.length,
      seconds: (performance.now() - t0) / 1000,
      peakBytes,
    });
    return { loss: step.loss, grads: step.grads };
  } finally {
    source.close();
  }
}

async function validate(
  config: TrainConfig,
  params: NetworkParams,
  samples: readonly Sample[],
  pos: Position,
  events: TrainEvents,
  stopCheck: () => void,
): Promise<EpochMetrics> {
  const scores: number[] = [];
  const labels: number[] = [];
  const predicted: number[] = [];
  let lossSum = 0;
  for (const sample of samples) {
    stopCheck();
    // Validation images are never augmented: seed −1 means "no augmentation".
    const source = await openSample(config, sample, -1, pos, events);
    if (!source) continue;
    try {
      const logits = await streamedPredict(config.network, params, source, config.grid);
      const loss = tf.tidy(
        () =>
          lossFor(
            config.loss,
            sample.label,
            config.network.outputs,
          )(tf.tensor2d([Array.from(logits)])).dataSync()[0] as number,
      );
      const s = scoreOf(config.loss, logits);
      lossSum += loss;
      scores.push(s.score);
      predicted.push(s.predicted);
      labels.push(sample.label);
    } finally {
      source.close();
    }
  }
  return {
    epoch: pos.epoch + 1,
    trainLoss: Number.NaN,
    validationLoss: labels.length ? lossSum / labels.length : Number.NaN,
    validationAuc: rocAuc(scores, labels),
    validationAccuracy: config.loss === 'mse' ? Number.NaN : accuracy(predicted, labels),
  };
}
