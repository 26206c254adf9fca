// From a validated StreamingTrainingJob to the things the training loop needs: the network, the
// image size, the loss and optimizer settings, and the samples. Pure where it can be, so the
// mapping from spec to run is tested without training anything.

import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { StreamingTrainingJob, StreamingTrainingJobSpec } from '../../crds/index.ts';
import { type BadImage, Dataset } from '../data/dataset.ts';
import { readManifest } from '../data/manifest.ts';
import { SLIDE_OPEN_BYTES } from '../data/slide/tissue.ts';
import { builtinNetwork } from '../streaming/bodies.ts';
import { type Network, networkParameterShapes } from '../streaming/network.ts';
import { checkInputSize, importedNetwork, loadTfjsLayersModel } from '../streaming/tfjs-import.ts';
import type { CheckpointTensor } from './checkpoint.ts';
import { readInitialWeights } from './initial-weights.ts';
import type { LossName } from './losses.ts';
import type { OptimizerConfig } from './optimizers.ts';
import type { Schedule } from './schedule.ts';

/** Dense outputs: one per class for softmax, a single logit or value otherwise. */
export function outputsFor(spec: StreamingTrainingJobSpec): number {
  return spec.training.loss === 'softmax-cross-entropy' ? spec.model.head.classes : 1;
}

/**
 * The network of the job and the weights to start from: spec.model.initialWeights (a tilestream
 * checkpoint, resolved against spec.data.root) over, for an imported TF.js model, the model's own.
 */
export async function loadNetwork(
  spec: StreamingTrainingJobSpec,
  root: string,
): Promise<{ network: Network; initialWeights?: Map<string, CheckpointTensor> }> {
  const m = spec.model;
  const { network, initialWeights } =
    m.architecture === 'tfjs'
      ? await importedNetworkWithWeights(spec, resolve(root, m.tfjsModel), m.bodyEnd)
      : { network: builtinNetworkFor(spec), initialWeights: undefined };
  if (m.initialWeights === undefined) return { network, ...(initialWeights && { initialWeights }) };
  const chosen = readInitialWeights(resolve(root, m.initialWeights), networkParameterShapes(network));
  return { network, initialWeights: new Map([...(initialWeights ?? []), ...chosen]) };
}

async function importedNetworkWithWeights(
  spec: StreamingTrainingJobSpec,
  modelJson: string,
  bodyEnd: string,
): Promise<{ network: Network; initialWeights: Map<string, CheckpointTensor> }> {
  const imported = await loadTfjsLayersModel(modelJson, { bodyEnd });
  const [height, width] = imageSizeOf(spec);
  checkInputSize(imported, height, width);
  const network = importedNetwork(imported, { ...headOf(spec), outputs: outputsFor(spec) });
  const initialWeights = new Map<string, CheckpointTensor>();
  const shapes = networkParameterShapes(network);
  for (const [name, w] of imported.weights) {
    // A head of another size (e.g. new classes) starts fresh; body and trunk weights must fit.
    if (shapes.get(name)?.join('x') === w.shape.join('x'))
      initialWeights.set(name, { shape: w.shape, values: w.data });
  }
  return { network, initialWeights };
}

/** The network of a built-in architecture. */
export function builtinNetworkFor(spec: StreamingTrainingJobSpec): Network {
  const m = spec.model;
  if (m.architecture === 'tfjs') throw new Error('internal: tfjs models are loaded with loadNetwork');
  const split = builtinNetwork(m.architecture, {
    inputChannels: spec.data.channels,
    ...(m.bodyEnd !== undefined && { bodyEnd: m.bodyEnd }),
    ...(m.width !== undefined && { width: m.width }),
  });
  return { ...split, ...headOf(spec), outputs: outputsFor(spec) };
}

/** The head's pooling and, for attention, its hidden size when the job gives one. */
function headOf(spec: StreamingTrainingJobSpec): Pick<Network, 'pooling' | 'attentionHiddenSize'> {
  const { pooling, attention } = spec.model.head;
  return {
    pooling,
    ...(pooling === 'attention' &&
      attention?.hiddenSize !== undefined && { attentionHiddenSize: attention.hiddenSize }),
  };
}

export function imageSizeOf(spec: StreamingTrainingJobSpec): [number, number] {
  return [spec.data.imageSize.height, spec.data.imageSize.width];
}

export function optimizerConfigOf(spec: StreamingTrainingJobSpec): OptimizerConfig {
  const o = spec.training.optimizer;
  return o.type === 'sgd'
    ? { type: 'sgd', momentum: o.momentum ?? 0.9, weightDecay: o.weightDecay }
    : {
        type: 'adam',
        weightDecay: o.weightDecay,
        ...(o.beta1 !== undefined && { beta1: o.beta1 }),
        ...(o.beta2 !== undefined && { beta2: o.beta2 }),
        ...(o.epsilon !== undefined && { epsilon: o.epsilon }),
      };
}

export function scheduleOf(spec: StreamingTrainingJobSpec): Schedule {
  const s = spec.training.schedule;
  return s.type === 'step'
    ? { type: 'step', warmupEpochs: s.warmupEpochs, stepEpochs: s.stepEpochs, gamma: s.gamma ?? 0.1 }
    : { type: s.type, warmupEpochs: s.warmupEpochs };
}

export function lossOf(spec: StreamingTrainingJobSpec): LossName {
  return spec.training.loss;
}

/**
 * Paths in a manifest are for the pod; run locally, a relative `spec.data.root` is taken relative to
 * the manifest file, so `tilestream train examples/x.yaml` works from any folder.
 */
export function dataRootOf(job: StreamingTrainingJob, manifestFile: string | undefined): string {
  return resolveJobPath(job.spec.data.root, manifestFile);
}

/** A path of the job (data root, checkpoint path): absolute as is, relative to the manifest's folder. */
export function resolveJobPath(path: string, manifestFile: string | undefined): string {
  if (isAbsolute(path) || !manifestFile) return resolve(path);
  return resolve(dirname(manifestFile), path);
}

/**
 * The data is not there: no manifest file, or no data root (exit code dataNotFound, condition reason
 * DataNotFound). Told apart from a manifest that exists but is wrong (ManifestError: invalid input).
 */
export class DataNotFoundError extends Error {
  override name = 'DataNotFoundError';
}

/** Throws DataNotFoundError when `file` (the manifest of spec.data.<field>) or the data root does not exist. */
async function requireManifest(root: string, file: string, field: 'train' | 'validation'): Promise<void> {
  const missing = async (p: string) =>
    stat(p).then(
      () => false,
      (e: NodeJS.ErrnoException) => e.code === 'ENOENT' || e.code === 'ENOTDIR',
    );
  if (await missing(root)) {
    throw new DataNotFoundError(
      `spec.data.root: ${root} does not exist; mount the data volume there (spec.data.volume) or fix spec.data.root`,
    );
  }
  const path = resolve(root, file);
  if (await missing(path)) {
    throw new DataNotFoundError(
      `spec.data.${field}: no manifest at ${path}; put the manifest there (relative paths are resolved against spec.data.root) or fix spec.data.${field}`,
    );
  }
}

/**
 * The most memory one image of this job holds once opened, before its tiles are read: a slide its
 * thumbnail (SLIDE_OPEN_BYTES); any other image at most its decoded pixels (PNG and JPEG decode
 * whole at open; sharp decodes to at most 4 channels of 8 bits; a tiled TIFF holds far less).
 */
export function openedImageBytes(spec: StreamingTrainingJobSpec): number {
  if (spec.data.slides) return SLIDE_OPEN_BYTES;
  const [height, width] = imageSizeOf(spec);
  return height * width * 4;
}

/**
 * The dataset of one manifest. Without a validation manifest, the training manifest's split column
 * divides the rows (rows without a split are training rows).
 */
export async function datasetOf(
  spec: StreamingTrainingJobSpec,
  root: string,
  which: 'train' | 'validation',
  onBadImage: (bad: BadImage) => void,
  /** With spec.data.slides: where each slide's tissue pictures are saved. */
  tissueDir: string | undefined,
  /** Open the next image while one trains (planReadAhead decides). */
  openAhead: boolean,
): Promise<Dataset | undefined> {
  const file = which === 'validation' ? (spec.data.validation ?? spec.data.train) : spec.data.train;
  await requireManifest(
    root,
    file,
    which === 'validation' && spec.data.validation !== undefined ? 'validation' : 'train',
  );
  const manifest = await readManifest(resolve(root, file), { root });
  const bySplit = spec.data.validation === undefined;
  const entries = bySplit ? manifest.entries.filter((e) => (e.split ?? 'train') === which) : manifest.entries;
  if (which === 'validation' && entries.length === 0) return undefined;
  const [height, width] = imageSizeOf(spec);
  const normalization = spec.data.normalization;
  const slides = spec.data.slides;
  return new Dataset({
    entries,
    name: which === 'train' ? 'training' : 'validation',
    image: {
      height,
      width,
      channels: spec.data.channels as 1 | 3,
      ...(normalization && { normalization }),
      ...(slides && { slide: { ...slides, ...(tissueDir !== undefined && { reportDir: tissueDir }) } }),
    },
    seed: spec.training.seed,
    maxBadFraction: spec.data.maxBadImageFraction,
    openAhead,
    onBadImage,
    ...(which === 'train' ? { augmentation: { ...spec.data.augmentation } } : { shuffle: false }),
  });
}
