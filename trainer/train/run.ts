// `tilestream train job.yaml`: runs exactly the manifest `kubectl apply` would submit, on a laptop
// or in the operator's pod. Validates the job, prepares the data, picks the backend and the tile,
// trains with checkpoints and metrics, handles SIGTERM and out-of-memory, and ends with a JSON
// summary (also written to the termination-message path in a pod).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { formatProblems, loadJobFile } from '../../crds/validate.ts';
import { cpuAllowance } from '../backend/cpu-allowance.ts';
import { memoryAllowance } from '../backend/memory-allowance.ts';
import { type BackendChoice, initBackend, wasmHeapBytes } from '../backend/select.ts';
import type { BadImage, Dataset } from '../data/dataset.ts';
import { ManifestError } from '../data/manifest.ts';
import { planReadAhead } from '../data/read-ahead.ts';
import { ensureSyntheticDataset } from '../data/synthetic.ts';
import { type Collective, PeersUnavailableError } from '../distributed/collective.ts';
import { openCollective } from '../distributed/open-collective.ts';
import {
  podLayoutFromEnv,
  type RankEnvironment,
  rankFromEnv,
  TopologyError,
} from '../distributed/topology.ts';
import { PlanError } from '../plan/planner.ts';
import { GeometryError, tileGrid } from '../streaming/geometry.ts';
import { BodyError } from '../streaming/graph.ts';
import { networkParameterShapes } from '../streaming/network-shape.ts';
import { TfjsImportError } from '../streaming/tfjs-import/model-json.ts';
import { writeAttentionMaps } from './attention-map.ts';
import { CheckpointError } from './checkpoint.ts';
import { EXIT, isOutOfMemory } from './exit-codes.ts';
import { InitialWeightsError } from './initial-weights.ts';
import {
  DataNotFoundError,
  dataRootOf,
  datasetOf,
  imageSizeOf,
  loadNetwork,
  lossOf,
  openedImageBytes,
  optimizerConfigOf,
  resolveJobPath,
  scheduleOf,
} from './job-setup.ts';
import { type TrainResult, train } from './loop.ts';
import { createLogger, createTrainerMetrics, formatDuration, ProgressBar, serveMetrics } from './observe.ts';
import { createStatusReporter, type RankIdentity } from './report-k8s.ts';
import { writeSaliencyMaps } from './saliency.ts';
import { checkTileFitsBackend, hardMemoryLimit, predictedHostStepBytes, resolveTile } from './tile-choice.ts';

export interface TrainOptions {
  /** Overrides spec.streaming.tileSize (the operator passes the planned tile this way). */
  tileSize?: number;
  backend?: BackendChoice;
  /** Where checkpoints and outputs go when the job gives no checkpoint path (or to override it). */
  outputDir?: string;
  epochs?: number;
  metricsPort?: number;
  /** Memory budget for `tileSize: auto` when running locally, bytes. */
  memoryBudget?: number;
  json?: boolean;
}

export interface TrainSummary {
  job: string;
  status: 'completed' | 'stopped';
  backend: string;
  image: [number, number];
  tile: [number, number];
  tiles: number;
  steps: number;
  epochs: number;
  seconds: number;
  skippedImages: number;
  resumedFrom?: string;
  checkpointDir?: string;
  validation?: { auc: number; accuracy: number; loss: number };
  history: TrainResult['history'];
  /** Images trained on (all ranks) and the wall time of the training passes, validation excluded. */
  trained: TrainResult['trained'];
  /** A job of several ranks: its world size and the time rank 0 spent in the all-reduce of the steps. */
  distributed?: { worldSize: number; allReduce: NonNullable<TrainResult['allReduce']> };
}

/** Runs one job; returns the process exit code. */
export async function runTrainCommand(file: string, o: TrainOptions): Promise<number> {
  const loaded = await loadJobFile(file);
  if (!loaded.ok) {
    process.stderr.write(`${formatProblems(loaded.problems, file)}\n`);
    return EXIT.invalidInput;
  }
  const job = loaded.job;
  const name = job.metadata.name;
  const namespace = job.metadata.namespace ?? 'default';
  let rankEnv: RankEnvironment | undefined;
  try {
    rankEnv = rankFromEnv(process.env);
  } catch (e) {
    if (!(e instanceof TopologyError)) throw e;
    process.stderr.write(`${e.message}\n`);
    return EXIT.invalidInput;
  }
  const rank = rankEnv?.rank ?? 0;
  // An orphaned rank (its launcher killed) would wait for its peers until the peer timeout.
  watchLauncher();
  const tty = process.stderr.isTTY === true && !o.json;
  const log = createLogger({ job: `${namespace}/${name}` }, tty);
  const bar = tty ? new ProgressBar(process.stderr) : undefined;
  const say = (
    level: 'debug' | 'info' | 'warn' | 'error',
    message: string,
    fields: Record<string, unknown> = {},
  ): void => {
    bar?.clear();
    log.log(level, message, fields);
  };

  let stopRequested = false;
  const onSignal = (signal: string): void => {
    if (stopRequested) {
      // A second signal means now: a large tile can take longer than anyone wants to wait.
      say('warn', `${signal} received again: exiting without a new checkpoint (the last one is kept)`);
      process.exit(EXIT.stopped);
    }
    stopRequested = true;
    say(
      'warn',
      // Several ranks agree on a stop at the next step's all-reduce, so they all stop after one batch.
      `${signal} received: finishing the current ${rankEnv && rankEnv.worldSize > 1 ? 'batch (with the other ranks)' : 'tile'}, ` +
        'writing a checkpoint, then exiting (signal again to exit at once)',
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const metrics = createTrainerMetrics({ namespace, name });
  // One metrics server per pod (or machine): the ranks beside the first would fight over its port.
  const metricsServer =
    o.metricsPort !== undefined && o.metricsPort >= 0 && (rankEnv?.localRank ?? 0) === 0
      ? await serveMetrics(metrics.registry, o.metricsPort)
      : undefined;
  if (metricsServer) say('info', `metrics on :${metricsServer.port}/metrics`);
  // Rank 0 reports the job's status; on several ranks every rank also reports its own status.ranks entry.
  const reporter = createStatusReporter(
    { namespace, name, ...(rankEnv && rankEnv.worldSize > 1 && { rank: rankIdentity(rankEnv) }) },
    10_000,
    (m) => say('warn', m),
  );
  let collective: Collective | undefined;
  const t0 = Date.now();
  try {
    if (rankEnv && rankEnv.worldSize > 1) {
      say('info', `rank ${rank} of ${rankEnv.worldSize}: meeting the peers`, { peers: rankEnv.peers });
      reporter?.report({ rank: { phase: 'WaitingForPeers', message: `peers ${rankEnv.peers.join(', ')}` } });
      collective = await openCollective(rankEnv, {
        timeoutMs: rankEnv.peerTimeoutSeconds * 1000,
        log: (m) => say('info', m),
      });
      reporter?.report({ rank: { phase: 'Running', message: 'training' } });
    }
    const summary = await runJob(job, file, o, {
      say,
      bar,
      metrics,
      reporter,
      stop: () => stopRequested,
      collective,
      localRank: rankEnv?.localRank ?? 0,
    });
    summary.seconds = (Date.now() - t0) / 1000;
    if (collective) reporter?.report({ rank: { phase: 'Succeeded', message: summary.status } });
    reporter?.report({
      result: {
        ...(summary.validation && {
          validationAuc: Number.isFinite(summary.validation.auc) ? summary.validation.auc : undefined,
          validationAccuracy: Number.isFinite(summary.validation.accuracy)
            ? summary.validation.accuracy
            : undefined,
          validationLoss: Number.isFinite(summary.validation.loss) ? summary.validation.loss : undefined,
        }),
      },
    });
    // The final progress, checkpoint and result must land even if the API server is restarting
    // or etcd is down just now (they are also in the summary the termination message carries).
    await reporter?.finish();
    if (rank === 0) writeSummary(summary);
    return summary.status === 'stopped' ? EXIT.stopped : EXIT.ok;
  } catch (e) {
    const err = e as Error;
    if (collective) {
      reporter?.report({ rank: { phase: 'Failed', message: err.message.slice(0, 1000) } });
      await reporter?.flush();
    }
    const heap = wasmHeapBytes();
    if (isOutOfMemory(err, heap !== undefined ? { wasmHeapBytes: heap } : {})) {
      say('error', `out of memory: ${err.message}; retry with a smaller tile (--tile-size)`, {
        exitCode: EXIT.outOfMemory,
      });
      writeTermination(`out of memory: ${err.message.slice(0, 500)}`);
      return EXIT.outOfMemory;
    }
    if (err instanceof PeersUnavailableError) {
      // The job's ranks restart together from the last checkpoint (launcher or operator).
      say('error', err.message, { exitCode: EXIT.peersUnavailable });
      writeTermination(`peers unavailable: ${err.message.slice(0, 2000)}`);
      return EXIT.peersUnavailable;
    }
    if (err instanceof DataNotFoundError) {
      // Not an invalid spec: the same job runs once the data is there.
      say('error', err.message, { exitCode: EXIT.dataNotFound });
      writeTermination(`data not found: ${err.message.slice(0, 2000)}`);
      return EXIT.dataNotFound;
    }
    if (err instanceof CheckpointError && err.volumeFull) {
      // Every retry would train up to the next save and fail there again: fail at once, naming
      // the volume; the previous checkpoint is kept for a run with room to resume from.
      say('error', err.message, { exitCode: EXIT.checkpointVolumeFull });
      writeTermination(`checkpoint volume full: ${err.message.slice(0, 2000)}`);
      return EXIT.checkpointVolumeFull;
    }
    // Input that no retry can fix (a missing manifest, a model that cannot stream, a tile the body
    // cannot use) fails the job at once instead of using up its retries.
    const invalid =
      err instanceof ManifestError ||
      err instanceof TfjsImportError ||
      err instanceof GeometryError ||
      err instanceof BodyError ||
      err instanceof PlanError ||
      err instanceof InitialWeightsError;
    const code = invalid ? EXIT.invalidInput : EXIT.failure;
    say('error', err.message, { exitCode: code, stack: err.stack });
    writeTermination(`${invalid ? 'invalid input' : 'failed'}: ${err.message.slice(0, 2000)}`);
    return code;
  } finally {
    await collective?.close().catch(() => {});
    await new Promise<void>((r) => (metricsServer ? metricsServer.server.close(() => r()) : r()));
  }
}

/** Which rank a status reporter speaks for; the replica index from the pod's environment (0 locally). */
function rankIdentity(env: RankEnvironment): RankIdentity {
  let replicaIndex = 0;
  try {
    replicaIndex = podLayoutFromEnv(process.env)?.replicaIndex ?? 0;
  } catch {
    // The launcher already checked the pod's variables; a rank started by hand may have none.
  }
  return { rank: env.rank, replicaIndex, localRank: env.localRank };
}

/** A rank process exits when the launcher that started it is gone (its parent changed). */
function watchLauncher(): void {
  const launcher = Number(process.env.TILESTREAM_LAUNCHER_PID);
  if (!Number.isInteger(launcher) || launcher <= 0) return;
  setInterval(() => {
    if (process.ppid !== launcher) {
      process.stderr.write(`the launcher (pid ${launcher}) is gone: exiting\n`);
      process.exit(EXIT.peersUnavailable);
    }
  }, 1000).unref();
}

interface RunContext {
  say: (
    level: 'debug' | 'info' | 'warn' | 'error',
    message: string,
    fields?: Record<string, unknown>,
  ) => void;
  bar: ProgressBar | undefined;
  metrics: ReturnType<typeof createTrainerMetrics>;
  reporter: ReturnType<typeof createStatusReporter>;
  stop: () => boolean;
  /** The job's ranks (world size > 1), opened before the data is prepared. */
  collective: Collective | undefined;
  localRank: number;
}

async function runJob(
  job: StreamingTrainingJob,
  file: string,
  o: TrainOptions,
  ctx: RunContext,
): Promise<TrainSummary> {
  const spec = job.spec;
  const { say, metrics, reporter } = ctx;
  const root = dataRootOf(job, file);
  const rank = ctx.collective?.rank ?? 0;
  if (spec.data.synthetic) {
    const [height, width] = imageSizeOf(spec);
    const syn = spec.data.synthetic;
    // One rank per pod (or machine) generates the images; the others wait for it, then find them there.
    if (ctx.collective && ctx.localRank !== 0) await ctx.collective.broadcast([new Float32Array(1)]);
    const made = await ensureSyntheticDataset(
      root,
      {
        height,
        width,
        count: syn.count,
        validationCount: syn.validationCount,
        seed: syn.seed,
        format: syn.format,
      },
      {
        onProgress: (p) =>
          ctx.bar?.update(p.done / p.total, `generating synthetic ${p.split} images ${p.done}/${p.total}`),
      },
    );
    ctx.bar?.clear();
    if (ctx.collective && ctx.localRank === 0) await ctx.collective.broadcast([new Float32Array(1)]);
    if (made.generated > 0)
      say('info', `generated ${made.generated} synthetic images in ${root}`, { seconds: made.seconds });
    for (const [field, want] of [
      ['train', made.info.manifests.train],
      ['validation', made.info.manifests.validation],
    ] as const) {
      if ((spec.data[field] ?? want) !== want) {
        throw new Error(
          `spec.data.${field} must be '${want}' for a synthetic dataset (got '${spec.data[field]}')`,
        );
      }
    }
  }
  const backend = await initBackend(o.backend ?? spec.training.backend, {
    log: (m, f) => say('info', m, { reason: f.reason }),
  });
  const { network: net, initialWeights } = await loadNetwork(spec, root);
  if (spec.model.initialWeights !== undefined && initialWeights) {
    const fresh = [...networkParameterShapes(net).keys()].filter((n) => !initialWeights.has(n));
    say('info', `initial weights from ${spec.model.initialWeights}: ${initialWeights.size} tensors`, {
      fresh,
    });
  }
  const image = imageSizeOf(spec);
  const tile = resolveTile(spec, net, image, backend.name, o);
  say('info', tile.explanation);
  checkTileFitsBackend(
    spec,
    net,
    image,
    backend.name,
    tile.size,
    hardMemoryLimit(backend.name, backend.tensorflow?.gpu === true, undefined, o.memoryBudget),
  );
  const grid = tileGrid(net.body, image, [tile.size, tile.size]);
  metrics.tileSize.set(tile.size);
  if (tile.predicted) {
    metrics.predictedMemory.set({ mode: 'streamed' }, tile.predicted.streamed);
    metrics.predictedMemory.set({ mode: 'conventional' }, tile.predicted.conventional);
  }
  let skippedImages = 0;
  const onBadImage = (bad: BadImage): void => {
    skippedImages++;
    metrics.skipped.inc({ reason: bad.reason });
    say('warn', `skipping image ${bad.relativePath}: ${bad.message}`, {
      reason: bad.reason,
      epoch: bad.epoch + 1,
    });
  };
  const checkpointDir = o.outputDir
    ? resolve(o.outputDir, 'checkpoints')
    : spec.checkpoint?.path
      ? resolveJobPath(spec.checkpoint.path, file)
      : undefined;
  // Each slide's tissue pictures, beside the checkpoints as the saliency maps (the one writable volume).
  const tissueDir = spec.data.slides
    ? o.outputDir || !checkpointDir
      ? resolve(o.outputDir ?? '.', 'tissue', job.metadata.name)
      : join(checkpointDir, 'tissue')
    : undefined;
  // Reading ahead takes a share of what the predicted step leaves of this process's memory.
  const ahead = planReadAhead(
    {
      allowanceBytes: memoryAllowance().bytes,
      residentBytes: process.memoryUsage.rss(),
      stepBytes: predictedHostStepBytes(
        spec,
        net,
        image,
        backend.name,
        backend.tensorflow?.gpu === true,
        tile.size,
      ),
      openedImageBytes: openedImageBytes(spec),
    },
    cpuAllowance().cpus,
    process.env,
  );
  say('info', ahead.reason);
  const trainData = (await datasetOf(spec, root, 'train', onBadImage, tissueDir, ahead.openAhead)) as Dataset;
  const validationData = await datasetOf(spec, root, 'validation', onBadImage, tissueDir, ahead.openAhead);
  const epochs = o.epochs ?? spec.training.epochs;
  say('info', `training ${net.body.name} on ${trainData.size} images of ${image[0]}×${image[1]}`, {
    backend: backend.name,
    tile: tile.size,
    tiles: grid.tiles.length,
    validationImages: validationData?.size ?? 0,
    checkpointDir,
  });
  const totalImages = Math.max(1, trainData.size * epochs);
  let imagesDone = 0;
  const result = await train(
    {
      network: net,
      image,
      grid,
      epochs,
      batchSize: spec.training.batchSize,
      learningRate: spec.training.optimizer.learningRate,
      schedule: scheduleOf(spec),
      optimizer: optimizerConfigOf(spec),
      loss: lossOf(spec),
      seed: spec.training.seed,
      readAheadBytes: ahead.tileBytes,
      ...(ctx.collective && { collective: ctx.collective }),
      ...(initialWeights && { initialWeights }),
      ...(checkpointDir && {
        checkpoint: {
          dir: checkpointDir,
          everySteps: spec.checkpoint?.everySteps ?? 50,
          keep: spec.checkpoint?.keep ?? 3,
        },
      }),
    },
    trainData,
    validationData,
    {
      log: (level, message, fields) => say(level, message, fields),
      shouldStop: ctx.stop,
      imageDone(i) {
        imagesDone++;
        metrics.images.inc();
        metrics.pixels.inc(i.pixels);
        metrics.tiles.inc(i.tiles);
        metrics.stepDuration.observe(i.seconds);
        if (Number.isFinite(i.peakBytes)) metrics.peakMemory.set(i.peakBytes);
        const fraction = Math.min(imagesDone / totalImages, 1);
        ctx.bar?.update(fraction, `epoch ${i.epoch + 1}/${epochs} loss ${i.loss.toFixed(4)}`);
      },
      progress(p) {
        const fraction = (p.epoch + p.index / p.count) / p.epochs;
        metrics.progress.set(fraction);
        if (Number.isFinite(p.loss)) metrics.loss.set(p.loss);
        reporter?.report({
          progress: {
            epoch: p.epoch + 1,
            epochs: p.epochs,
            step: p.step,
            steps: p.steps,
            ...(Number.isFinite(p.loss) && { loss: p.loss }),
            fraction,
            percent: `${Math.floor(100 * fraction)}%`,
          },
        });
      },
      rankStep(r) {
        reporter?.report({
          rank: {
            step: r.step,
            ...(r.seconds > 0 && {
              imagesPerSecond: Math.round((1000 * r.images) / r.seconds) / 1000,
              allReduceFraction: Math.min(1, Math.round((1000 * r.allReduceSeconds) / r.seconds) / 1000),
            }),
          },
        });
      },
      checkpointed(c) {
        metrics.lastCheckpoint.set(c.time.getTime() / 1000);
        reporter?.report({ lastCheckpoint: { path: c.path, step: c.step, time: c.time.toISOString() } });
      },
      epochDone(m) {
        metrics.epoch.set(m.epoch);
        if (Number.isFinite(m.validationAuc)) metrics.validationAuc.set(m.validationAuc);
        say('info', `epoch ${m.epoch}/${epochs} done`, {
          trainLoss: round(m.trainLoss),
          validationLoss: round(m.validationLoss),
          validationAuc: round(m.validationAuc),
          validationAccuracy: round(m.validationAccuracy),
        });
      },
    },
  );
  ctx.bar?.clear();
  if (spec.streaming.saliency && result.status === 'completed' && validationData && rank === 0) {
    // Inside the checkpoint folder: in a pod that is the one writable volume (the root is read-only).
    const dir =
      o.outputDir || !checkpointDir
        ? resolve(o.outputDir ?? '.', 'saliency', job.metadata.name)
        : join(checkpointDir, 'saliency');
    const files = await writeSaliencyMaps(net, result.params, validationData, grid, dir, (m) =>
      say('warn', m),
    );
    say('info', `wrote ${files.length} saliency maps to ${dir}`);
  }
  if (net.pooling === 'attention' && result.status === 'completed' && validationData && rank === 0) {
    // Beside the saliency maps (written whether or not they are): a forward pass per image.
    const dir =
      o.outputDir || !checkpointDir
        ? resolve(o.outputDir ?? '.', 'saliency', job.metadata.name)
        : join(checkpointDir, 'saliency');
    const files = await writeAttentionMaps(net, result.params, validationData, grid, dir, (m) =>
      say('warn', m),
    );
    say('info', `wrote ${files.length} attention maps to ${dir}`);
  }
  for (const p of result.params.values()) p.dispose();
  const last = result.history.at(-1);
  return {
    job: `${job.metadata.namespace ?? 'default'}/${job.metadata.name}`,
    status: result.status,
    backend: backend.name,
    image,
    tile: [grid.rows.tileLength, grid.cols.tileLength],
    tiles: grid.tiles.length,
    steps: result.step,
    epochs: result.epoch,
    seconds: 0,
    skippedImages,
    ...(result.resumedFrom && { resumedFrom: result.resumedFrom }),
    ...(checkpointDir && { checkpointDir }),
    ...(last && {
      validation: { auc: last.validationAuc, accuracy: last.validationAccuracy, loss: last.validationLoss },
    }),
    history: result.history,
    trained: result.trained,
    ...(result.allReduce &&
      ctx.collective && {
        distributed: { worldSize: ctx.collective.worldSize, allReduce: result.allReduce },
      }),
  };
}

function round(x: number): number | null {
  return Number.isFinite(x) ? Math.round(x * 1e4) / 1e4 : null;
}

function writeSummary(summary: TrainSummary): void {
  const text = JSON.stringify(summary);
  process.stdout.write(`${text}\n`);
  writeTermination(text);
  process.stderr.write(`done in ${formatDuration(summary.seconds)}\n`);
}

/** Kubernetes shows the termination message in the pod status; the operator sets the path. */
function writeTermination(text: string): void {
  const path = process.env.TILESTREAM_TERMINATION_MESSAGE_PATH;
  if (!path) return;
  try {
    mkdirSync(join(path, '..'), { recursive: true });
    // The kubelet keeps at most 4096 bytes.
    writeFileSync(path, text.length > 4000 ? `${text.slice(0, 3990)}…` : text);
  } catch {
    // Best effort: the summary is also on stdout.
  }
}
