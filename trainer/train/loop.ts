// The training loop: epochs of seeded image orders, streamed steps with gradient accumulation to the
// effective batch, one optimizer update per batch, validation each epoch, checkpoints at batch
// boundaries (so a resumed run repeats exactly what an uninterrupted one does), and a stop flag
// checked between tiles for SIGTERM. With a collective (world size > 1) the loop is one rank of a
// data-parallel job: it streams positions r, r + N, … of every batch, sums the gradients over the
// ranks before the same update, and takes its starting state from rank 0 (see trainDistributed notes
// in the functions below). World size 1 makes no collective call at all.

import * as tf from '@tensorflow/tfjs-core';
import type { DataPosition, Dataset, DatasetItem } from '../data/dataset.ts';
import { ImageError } from '../data/image-error.ts';
import { readAhead } from '../data/read-ahead.ts';
import type { Collective } from '../distributed/collective.ts';
import {
  type AllReduceTiming,
  broadcastJson,
  broadcastSlots,
  newAllReduceTiming,
  packSum,
  type Slot,
  timedAllReduce,
  unpackSum,
} from '../distributed/rank-sync.ts';
import { isRankPosition } from '../distributed/topology.ts';
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
  /** Initial weights to start from instead of random ones (e.g. an imported model). */
  readonly initialWeights?: ReadonlyMap<string, CheckpointTensor>;
  /** Bytes of tiles read ahead within an image (planReadAhead's tileBytes); default 0, none. */
  readonly readAheadBytes?: number;
  /**
   * The job's ranks when there are several (unset or world size 1: a single-rank run, no collective
   * calls). Only rank 0 reads and writes checkpoints; the others receive its state.
   */
  readonly collective?: Collective;
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
  log(level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
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
  checkpointed?(info: { path: string; step: number; time: Date }): void;
  /**
   * After each optimizer step of a rank of several: its own images so far, the training seconds so
   * far and the part of them spent in the all-reduce (for its status.ranks entry).
   */
  rankStep?(info: { step: number; images: number; seconds: number; allReduceSeconds: number }): void;
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
  readonly params: NetworkParams;
  /**
   * Images trained on by all ranks together and the wall time of the training passes (validation
   * excluded), in all and per epoch of this run (with the all-reduce's part): what `bench scaling` reads.
   */
  readonly trained: {
    images: number;
    seconds: number;
    epochs: { epoch: number; images: number; seconds: number; allReduceSeconds: number }[];
  };
  /** Time inside the collective's all-reduce of the training steps; undefined on a single rank. */
  readonly allReduce?: AllReduceTiming;
}

class StopRequested extends Error {}

/** A fingerprint of the parameter shapes: a checkpoint of another network is refused, not half-loaded. */
function fingerprint(net: Network): string {
  return [...networkParameterShapes(net)].map(([n, s]) => `${n}:${s.join('x')}`).join(',');
}

/** Where training stands; saved in every checkpoint. */
interface Position {
  /** Optimizer steps taken. */
  step: number;
  /** Epochs completed. */
  epoch: number;
  /** The training data's position after the last applied batch. */
  data?: DataPosition;
  history: EpochMetrics[];
}

/**
 * Trains `trainData` for the configured epochs. A batch is `batchSize` consecutive positions of the
 * epoch's order (bad images included), so batch boundaries, and with them every update, are the
 * same whether or not the run was interrupted.
 */
export async function train(
  config: TrainConfig,
  trainData: Dataset,
  validationData: Dataset | undefined,
  events: TrainEvents,
): Promise<TrainResult> {
  const net = config.network;
  const dist = config.collective && config.collective.worldSize > 1 ? config.collective : undefined;
  const rank = dist?.rank ?? 0;
  const worldSize = dist?.worldSize ?? 1;
  const timing = dist ? newAllReduceTiming() : undefined;
  const trained: TrainResult['trained'] = { images: 0, seconds: 0, epochs: [] };
  let localImages = 0;
  const params = initParams(net, config.seed);
  const optimizer = createOptimizer(config.optimizer);
  const pos: Position = { step: 0, epoch: 0, history: [] };
  const stepsPerEpoch = Math.ceil(trainData.size / config.batchSize);
  let resumedFrom: string | undefined;

  const setParams = (
    tensors: ReadonlyMap<string, CheckpointTensor>,
    what: string,
    partial: boolean,
  ): void => {
    for (const [name, p] of params) {
      const t = tensors.get(name);
      if (!t) {
        if (partial) continue;
        throw new Error(`${what} has no tensor '${name}'`);
      }
      if (t.shape.join('x') !== p.shape.join('x')) {
        throw new Error(
          `${what}: '${name}' has shape ${t.shape.join('x')}, the network needs ${p.shape.join('x')}`,
        );
      }
      // assign copies the value into the variable; the temporary tensor is freed with the tidy.
      tf.tidy(() => p.assign(tf.tensor(t.values, p.shape)));
    }
  };
  if (config.initialWeights) setParams(config.initialWeights, 'the initial weights', true);

  if (config.checkpoint && rank === 0) {
    const ckpt = loadLatestCheckpoint(config.checkpoint.dir, (m) => events.log('warn', m));
    if (ckpt) {
      if (ckpt.meta.fingerprint !== fingerprint(net)) {
        throw new Error(
          `checkpoint ${ckpt.path} was written for a different network; point spec.checkpoint.path at a new folder ` +
            'or delete the old checkpoints',
        );
      }
      setParams(
        new Map([...ckpt.tensors].filter(([n]) => !n.startsWith('optimizer/'))),
        `checkpoint ${ckpt.path}`,
        false,
      );
      const slots = new Map<string, tf.Tensor>();
      for (const [n, t] of ckpt.tensors)
        if (n.startsWith('optimizer/')) slots.set(n.slice(10), tf.tensor(t.values, [...t.shape]));
      optimizer.restore(slots, ckpt.meta.optimizer as Record<string, number>);
      for (const t of slots.values()) t.dispose();
      Object.assign(pos, ckpt.meta.position as Position);
      resumedFrom = ckpt.path;
      events.log('info', `resumed from ${ckpt.path}`, {
        step: pos.step,
        epoch: pos.epoch,
        index: pos.data?.index ?? 0,
      });
    }
  }
  if (dist) resumedFrom = await receiveStartingState(dist, params, optimizer, pos, resumedFrom);
  if (pos.data) trainData.restore(pos.data);
  // Rank r's share of every batch: positions r, r + N, … (the same rule splits a short last batch).
  const take = dist
    ? (index: number): boolean => isRankPosition(index, config.batchSize, rank, worldSize)
    : undefined;
  const slots: Slot[] = [...params].map(([name, p]) => ({ name, size: p.size }));

  const save = (): void => {
    if (!config.checkpoint || rank !== 0) return;
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
          position: pos,
          // The data's randomness is counter-based: seed and position determine every later draw.
          rng: { seed: config.seed, algorithm: 'mulberry32(deriveSeed(seed, purpose, epoch, index))' },
        },
        tensors,
      },
      config.checkpoint.keep,
    );
    events.checkpointed?.({ path, step: pos.step, time: new Date() });
  };

  // On several ranks a stop is agreed at the next batch's all-reduce instead (sumOverRanks): a rank
  // leaving mid-batch would leave the others waiting in the collective.
  const localStopCheck = (): void => {
    if (!dist && events.shouldStop?.()) throw new StopRequested();
  };

  try {
    while (pos.epoch < config.epochs) {
      const epoch = pos.epoch;
      let lossSum = 0;
      let lossCount = 0;
      let batch:
        | { index: number; grads: Map<string, tf.Tensor>; used: number; loss: number; after?: DataPosition }
        | undefined;
      // On several ranks every rank applies every batch of the epoch, also those it has no image of.
      let nextBatch =
        pos.data && pos.data.epoch === epoch ? Math.floor(pos.data.index / config.batchSize) : 0;
      let stopAll = false;
      const apply = async (): Promise<void> => {
        if (!batch && !dist) return;
        const b = batch ?? { index: nextBatch, grads: new Map<string, tf.Tensor>(), used: 0, loss: 0 };
        const localUsed = b.used;
        batch = undefined;
        nextBatch = b.index + 1;
        if (dist && timing) {
          const summed = await sumOverRanks(dist, params, slots, b, events.shouldStop?.() === true, timing);
          b.grads = summed.grads;
          b.used = summed.used;
          b.loss = summed.loss;
          stopAll = summed.stop;
          localImages += localUsed;
          // Where the whole batch ends, whichever rank streamed its last image.
          const end = Math.min((b.index + 1) * config.batchSize, trainData.size);
          b.after = { ...(b.after ?? trainData.position()), epoch, index: end };
        }
        trained.images += b.used;
        if (b.used > 0) {
          const t = epoch + (b.index * config.batchSize) / trainData.size;
          const lr = learningRateAt(config.learningRate, config.schedule, t, config.epochs);
          const averaged = new Map([...b.grads].map(([n, g]) => [n, tf.div(g, b.used)]));
          optimizer.apply(params, averaged, lr);
          for (const g of [...b.grads.values(), ...averaged.values()]) g.dispose();
          lossSum += b.loss;
          lossCount += b.used;
        }
        pos.step++;
        if (b.after) pos.data = b.after;
        events.log('debug', 'optimizer step', { step: pos.step, epoch: epoch + 1, images: b.used });
        events.progress?.({
          epoch,
          epochs: config.epochs,
          step: pos.step,
          steps: stepsPerEpoch * config.epochs,
          index: Math.min((b.index + 1) * config.batchSize, trainData.size),
          count: trainData.size,
          loss: b.used > 0 ? b.loss / b.used : Number.NaN,
        });
        if (timing) {
          events.rankStep?.({
            step: pos.step,
            images: localImages,
            seconds: trained.seconds + (performance.now() - t0) / 1000,
            allReduceSeconds: timing.seconds,
          });
        }
        if (config.checkpoint && pos.step % config.checkpoint.everySteps === 0) save();
        // A stop asked on any rank ends every rank after the same batch, so none waits for another.
        if (stopAll) throw new StopRequested();
      };
      const t0 = performance.now();
      const imagesBefore = trained.images;
      const allReduceBefore = timing?.seconds ?? 0;
      try {
        for await (const item of trainData.items(epoch, take)) {
          try {
            localStopCheck();
            const index = Math.floor(item.index / config.batchSize);
            if (batch && batch.index !== index) await apply();
            while (dist && nextBatch < index) await apply(); // batches this rank had no image of
            batch ??= { index, grads: new Map(), used: 0, loss: 0 };
            const r = await runImage(config, params, item, pos, events, localStopCheck, item.index === rank);
            accumulate(batch.grads, r.grads);
            batch.loss += r.loss;
            batch.used++;
            batch.after = item.positionAfter();
          } catch (e) {
            if (!(e instanceof ImageError)) throw e;
            // A TIFF tile that fails to decode mid-image: drop this image's work and go on.
            trainData.reportBad(item, e);
            if (batch) batch.after = item.positionAfter();
          } finally {
            item.image.close();
          }
        }
        await apply();
        while (dist && nextBatch < stepsPerEpoch) await apply();
      } catch (e) {
        if (batch) for (const g of batch.grads.values()) g.dispose();
        throw e;
      } finally {
        const seconds = (performance.now() - t0) / 1000;
        trained.seconds += seconds;
        trained.epochs.push({
          epoch: epoch + 1,
          images: trained.images - imagesBefore,
          seconds,
          allReduceSeconds: (timing?.seconds ?? 0) - allReduceBefore,
        });
      }
      const m = validationData
        ? await validate(config, params, validationData, epoch, events, localStopCheck, dist)
        : emptyMetrics(epoch);
      m.trainLoss = lossCount > 0 ? lossSum / lossCount : Number.NaN;
      pos.history.push(m);
      events.epochDone?.(m);
      pos.epoch++;
      pos.data = undefined; // the next epoch starts at its beginning
      save();
    }
  } catch (e) {
    if (!(e instanceof StopRequested)) throw e;
    // The parameters are those after the last applied batch, and pos.data says where that was.
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
      params,
      trained,
      ...(timing && { allReduce: timing }),
      ...(resumedFrom && { resumedFrom }),
    };
  }
  optimizer.dispose();
  return {
    status: 'completed',
    step: pos.step,
    epoch: pos.epoch,
    history: pos.history,
    params,
    trained,
    ...(timing && { allReduce: timing }),
    ...(resumedFrom && { resumedFrom }),
  };
}

/**
 * Every rank starts from rank 0's state: its parameters (random, imported or from its checkpoint),
 * optimizer state and position. Returns the checkpoint rank 0 resumed from, if any.
 */
async function receiveStartingState(
  dist: Collective,
  params: NetworkParams,
  optimizer: ReturnType<typeof createOptimizer>,
  pos: Position,
  resumedFrom: string | undefined,
): Promise<string | undefined> {
  const st = optimizer.state();
  const header = await broadcastJson(
    dist,
    dist.rank === 0
      ? {
          position: pos,
          scalars: st.scalars,
          slots: [...st.tensors].map(([n, t]) => ({ name: n, shape: t.shape })),
          ...(resumedFrom && { resumedFrom }),
        }
      : undefined,
  );
  const paramSlots: Slot[] = [...params].map(([name, p]) => ({ name, size: p.size }));
  const optimizerSlots: Slot[] = header.slots.map((s) => ({
    name: `optimizer/${s.name}`,
    size: s.shape.reduce((n, d) => n * d, 1),
  }));
  const mine =
    dist.rank === 0
      ? new Map<string, Float32Array>([
          ...[...params].map(([n, p]) => [n, p.dataSync() as Float32Array] as const),
          ...[...st.tensors].map(([n, t]) => [`optimizer/${n}`, t.dataSync() as Float32Array] as const),
        ])
      : undefined;
  const got = await broadcastSlots(dist, [...paramSlots, ...optimizerSlots], mine);
  if (dist.rank !== 0) {
    for (const [name, p] of params) {
      const v = got.get(name) as Float32Array;
      tf.tidy(() => p.assign(tf.tensor(v, p.shape)));
    }
    const restored = new Map<string, tf.Tensor>();
    for (const s of header.slots)
      restored.set(s.name, tf.tensor(got.get(`optimizer/${s.name}`) as Float32Array, s.shape));
    optimizer.restore(restored, header.scalars);
    for (const t of restored.values()) t.dispose();
    Object.assign(pos, header.position);
  }
  return header.resumedFrom;
}

/**
 * The batch's gradients, image count and loss summed over the ranks in one all-reduce, and whether
 * any rank was asked to stop. The local gradients are disposed; the summed ones are new tensors.
 */
async function sumOverRanks(
  dist: Collective,
  params: NetworkParams,
  slots: readonly Slot[],
  b: { grads: Map<string, tf.Tensor>; used: number; loss: number },
  stop: boolean,
  timing: AllReduceTiming,
): Promise<{ grads: Map<string, tf.Tensor>; used: number; loss: number; stop: boolean }> {
  const local = new Map<string, Float32Array>();
  for (const [n, g] of b.grads) local.set(n, (await g.data()) as Float32Array);
  for (const g of b.grads.values()) g.dispose();
  const [summed] = await timedAllReduce(
    dist,
    [packSum(slots, local, [b.used, b.loss, stop ? 1 : 0])],
    timing,
  );
  const { values, tail } = unpackSum(slots, summed as Float32Array, 3);
  const grads = new Map<string, tf.Tensor>();
  for (const [n, v] of values) grads.set(n, tf.tensor(v, params.get(n)?.shape));
  return {
    grads,
    used: Math.round(tail[0] as number),
    loss: tail[1] as number,
    stop: (tail[2] as number) > 0,
  };
}

function emptyMetrics(epoch: number): EpochMetrics {
  return {
    epoch: epoch + 1,
    trainLoss: Number.NaN,
    validationLoss: Number.NaN,
    validationAuc: Number.NaN,
    validationAccuracy: Number.NaN,
  };
}

async function runImage(
  config: TrainConfig,
  params: NetworkParams,
  item: DatasetItem,
  pos: Position,
  events: TrainEvents,
  stopCheck: () => void,
  measure: boolean,
): Promise<{ loss: number; grads: Map<string, tf.Tensor> }> {
  const t0 = performance.now();
  const lossFn = lossFor(config.loss, item.label, config.network.outputs);
  // With spare cores, the next tile is read (on libvips' or OpenSlide's threads) while this one computes.
  const source = readAhead(item.image, config.grid, { maxBytes: config.readAheadBytes ?? 0 });
  const run = () =>
    streamedStep(config.network, params, source, config.grid, lossFn, { progress: () => stopCheck() });
  let step: Awaited<ReturnType<typeof run>>;
  let peakBytes = Number.NaN;
  if (measure) {
    // tf.profile reads every kernel output to check it, which is too slow to do on every step.
    // A failure inside tf.profile leaves its bookkeeping half done and its own error hides ours.
    let result: Awaited<ReturnType<typeof run>> | undefined;
    let failure: unknown;
    const info = await tf.profile(async () => {
      try {
        result = await run();
      } catch (e) {
        failure = e;
      }
      return [];
    });
    await source.settle();
    if (failure !== undefined) throw failure;
    step = result as Awaited<ReturnType<typeof run>>;
    peakBytes = info.peakBytes;
  } else {
    try {
      step = await run();
    } finally {
      // Reads still in flight after a failure finish before the caller closes the image.
      await source.settle();
    }
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
}

/**
 * One validated image: its logits and loss are float32 values, so summing them over ranks (each
 * rank fills only its own positions) gathers them exactly.
 */
interface Validated {
  index: number;
  label: number;
  logits: Float32Array;
  loss: number;
}

async function validate(
  config: TrainConfig,
  params: NetworkParams,
  data: Dataset,
  epoch: number,
  events: TrainEvents,
  stopCheck: () => void,
  dist?: Collective,
): Promise<EpochMetrics> {
  // On several ranks, rank r validates positions r, r + N, …; the predictions are then gathered so
  // every rank computes the metrics over all images in manifest order, as a single rank does.
  const take = dist ? (index: number): boolean => index % dist.worldSize === dist.rank : undefined;
  let done: Validated[] = [];
  // Validation data is not shuffled or augmented; every epoch reads it in manifest order.
  for await (const item of data.items(epoch, take)) {
    try {
      stopCheck();
      const source = readAhead(item.image, config.grid, {
        passes: 1,
        maxBytes: config.readAheadBytes ?? 0,
      });
      const logits = await streamedPredict(config.network, params, source, config.grid).finally(() =>
        source.settle(),
      );
      const loss = tf.tidy(
        () =>
          lossFor(
            config.loss,
            item.label,
            config.network.outputs,
          )(tf.tensor2d([Array.from(logits)])).dataSync()[0] as number,
      );
      done.push({ index: item.index, label: item.label, logits: Float32Array.from(logits), loss });
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      data.reportBad(item, e);
    } finally {
      item.image.close();
    }
  }
  if (dist) done = await gatherValidated(dist, done, data.size, config.network.outputs);
  const scores: number[] = [];
  const labels: number[] = [];
  const predicted: number[] = [];
  let lossSum = 0;
  for (const v of done) {
    const s = scoreOf(config.loss, v.logits);
    lossSum += v.loss;
    scores.push(s.score);
    predicted.push(s.predicted);
    labels.push(v.label);
  }
  events.log('info', `validated ${labels.length} images`, { epoch: epoch + 1 });
  return {
    epoch: epoch + 1,
    trainLoss: Number.NaN,
    validationLoss: labels.length ? lossSum / labels.length : Number.NaN,
    validationAuc: rocAuc(scores, labels),
    validationAccuracy: config.loss === 'mse' ? Number.NaN : accuracy(predicted, labels),
  };
}

/** Every rank's validated images on every rank, in position order (one all-reduce of n × (outputs + 3)). */
async function gatherValidated(
  dist: Collective,
  mine: readonly Validated[],
  size: number,
  outputs: number,
): Promise<Validated[]> {
  const stride = outputs + 3; // logits, loss, label, present
  const buffer = new Float32Array(size * stride);
  for (const v of mine) {
    const at = v.index * stride;
    buffer.set(v.logits, at);
    buffer[at + outputs] = v.loss;
    buffer[at + outputs + 1] = v.label;
    buffer[at + outputs + 2] = 1;
  }
  const [all] = (await dist.allReduceSum([buffer])) as [Float32Array];
  const out: Validated[] = [];
  for (let index = 0; index < size; index++) {
    const at = index * stride;
    if ((all[at + outputs + 2] as number) === 0) continue; // a bad image on its rank
    out.push({
      index,
      logits: all.slice(at, at + outputs),
      loss: all[at + outputs] as number,
      label: all[at + outputs + 1] as number,
    });
  }
  return out;
}
