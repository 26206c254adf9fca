// What a plan is asked: the settings of `tilestream plan` and of the operator's tile sizing, read
// from a StreamingTrainingJob and completed with the defaults. The defaults live here once; the
// command and the operator both complete their inputs with completeInputs.

import { parseQuantity } from '../../crds/quantity.ts';
import type { StreamingTrainingJobSpec } from '../../crds/v1alpha1/types.ts';
import { ARCHITECTURES, type Architecture } from '../streaming/bodies.ts';
import type { Pooling } from '../streaming/network-shape.ts';
import { type BackendName, type Dtype, type OptimizerName, optimizerFromSpec } from './memory.ts';
import { PlanError } from './planner.ts';

/** Everything a plan needs, from flags over a manifest over defaults. */
export interface PlanInputs {
  readonly model: Architecture;
  readonly bodyEnd?: string;
  readonly width?: number;
  readonly channels: number;
  readonly image: [number, number];
  readonly budgetBytes?: number;
  readonly headroom: number;
  readonly minTile?: number;
  /** With `auto`: no tile above this (the operator after an out-of-memory exit). */
  readonly maxTile?: number;
  readonly tile?: number;
  /** A manifest's tileSize is rounded down to the stride (as the trainer does); --tile must be exact. */
  readonly roundTile?: boolean;
  readonly optimizer: OptimizerName;
  readonly dtype: Dtype;
  readonly backend: BackendName;
  readonly pooling: Pooling;
  /** Hidden size of the attention head (pooling 'attention'); network-shape.ts's default when absent. */
  readonly attentionHiddenSize?: number;
  readonly classes: number;
  readonly saliency: boolean;
  /** Where the settings came from, for the report. */
  readonly source: string;
}

type Defaulted =
  | 'channels'
  | 'headroom'
  | 'optimizer'
  | 'dtype'
  | 'backend'
  | 'pooling'
  | 'classes'
  | 'saliency';

/**
 * The settings used when neither a flag nor the manifest gives one. `tensorflow` is tfjs-node-gpu:
 * a plan is for a GPU unless said otherwise.
 */
export const PLAN_DEFAULTS: Readonly<Pick<PlanInputs, Defaulted>> = {
  channels: 3,
  headroom: 0.1,
  optimizer: 'adam',
  dtype: 'float32',
  backend: 'tensorflow',
  pooling: 'max',
  classes: 2,
  saliency: false,
};

/** Partial inputs completed with PLAN_DEFAULTS; refuses inputs without a network or an image size. */
export function completeInputs(given: Partial<PlanInputs>): PlanInputs {
  const { model, image } = given;
  if (model === undefined) {
    throw new PlanError('say which network to plan: a StreamingTrainingJob manifest, or --model <arch>');
  }
  if (image === undefined) throw new PlanError('say how large the images are: --image-size N or HxW');
  return {
    ...given,
    model,
    image,
    // Field by field: a key present with the value undefined must not hide its default.
    channels: given.channels ?? PLAN_DEFAULTS.channels,
    headroom: given.headroom ?? PLAN_DEFAULTS.headroom,
    optimizer: given.optimizer ?? PLAN_DEFAULTS.optimizer,
    dtype: given.dtype ?? PLAN_DEFAULTS.dtype,
    backend: given.backend ?? PLAN_DEFAULTS.backend,
    pooling: given.pooling ?? PLAN_DEFAULTS.pooling,
    classes: given.classes ?? PLAN_DEFAULTS.classes,
    saliency: given.saliency ?? PLAN_DEFAULTS.saliency,
    source: given.source ?? 'command line',
  };
}

/** The planning settings of a StreamingTrainingJob. */
export function inputsFromSpec(spec: StreamingTrainingJobSpec, source: string): Partial<PlanInputs> {
  const model = spec.model;
  if (model.architecture === 'tfjs') {
    throw new PlanError(
      `${source}: spec.model.architecture is tfjs; 'tilestream plan' plans the built-in networks ` +
        `(${ARCHITECTURES.join(', ')}) only so far; pass --model to plan a comparable built-in one`,
    );
  }
  const s = spec.streaming;
  const gpuMemory = spec.resources.minGpuMemory;
  return {
    model: model.architecture,
    ...(model.bodyEnd !== undefined && { bodyEnd: model.bodyEnd }),
    ...(model.width !== undefined && { width: model.width }),
    channels: spec.data.channels,
    image: [spec.data.imageSize.height, spec.data.imageSize.width],
    ...(gpuMemory !== undefined && { budgetBytes: parseQuantity(gpuMemory) }),
    headroom: s.memoryHeadroom,
    minTile: s.minTileSize,
    ...(typeof s.tileSize === 'number' && { tile: s.tileSize, roundTile: true }),
    optimizer: optimizerFromSpec(spec.training.optimizer),
    // The operator runs the trainer on GPU nodes: plan for tfjs-node-gpu unless a backend is fixed.
    backend:
      spec.training.backend === 'auto'
        ? spec.resources.gpus > 0
          ? 'tensorflow'
          : 'wasm'
        : spec.training.backend,
    pooling: model.head.pooling,
    ...(model.head.pooling === 'attention' &&
      model.head.attention?.hiddenSize !== undefined && {
        attentionHiddenSize: model.head.attention.hiddenSize,
      }),
    classes: model.head.classes,
    saliency: s.saliency,
    source,
  };
}
