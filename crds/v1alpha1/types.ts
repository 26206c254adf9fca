// TypeScript types of the StreamingTrainingJob API. They are derived from the schema (schema.ts);
// where a field selects a variant, a discriminated union refines the derived type, and the
// compile-time checks at the bottom fail if a union and the schema disagree.

import type { InputOf, OutputOf } from '../schema-builder.ts';
import type { API_VERSION, KIND } from './names.ts';
import type {
  ARCHITECTURES,
  CONVNEXT_ARCHITECTURES,
  CONVNEXT_STAGES,
  INCEPTIONNEXT_ARCHITECTURES,
  RESNET_ARCHITECTURES,
  RESNET_STAGES,
  SpecNode,
  StatusNode,
} from './schema.ts';

/** The spec after defaulting, exactly as derived from the schema (no unions). */
type DerivedSpec = OutputOf<SpecNode>;
/** The spec as a user may write it: only required fields are required. */
export type StreamingTrainingJobSpecInput = InputOf<SpecNode>;

// ------------------------------------------------------------ model

export type Architecture = (typeof ARCHITECTURES)[number];
export type ResNetStage = (typeof RESNET_STAGES)[number];
export type HeadSpec = DerivedSpec['model']['head'];

interface ModelCommon {
  head: HeadSpec;
  initialWeights?: string;
}
export interface ResNetModel extends ModelCommon {
  architecture: (typeof RESNET_ARCHITECTURES)[number];
  /** Unset means RESNET_DEFAULT_BODY_END. */
  bodyEnd?: ResNetStage;
  tfjsModel?: never;
  width?: never;
}
export interface ConvNextModel extends ModelCommon {
  architecture: (typeof CONVNEXT_ARCHITECTURES)[number] | (typeof INCEPTIONNEXT_ARCHITECTURES)[number];
  /** Unset means CONVNEXT_DEFAULT_BODY_END. */
  bodyEnd?: (typeof CONVNEXT_STAGES)[number];
  tfjsModel?: never;
  width?: never;
}
export interface TfjsModel extends ModelCommon {
  architecture: 'tfjs';
  tfjsModel: string;
  bodyEnd: string;
  width?: never;
}
export interface SmallCnnModel extends ModelCommon {
  architecture: 'smallcnn';
  /** Unset means SMALLCNN_DEFAULT_WIDTH. */
  width?: number;
  bodyEnd?: never;
  tfjsModel?: never;
}
export interface Midl2018Model extends ModelCommon {
  architecture: 'midl2018';
  bodyEnd?: never;
  tfjsModel?: never;
  width?: never;
}
export type ModelSpec = ResNetModel | ConvNextModel | TfjsModel | SmallCnnModel | Midl2018Model;

// ------------------------------------------------------------ data, checkpoint

export type VolumeSource =
  | { persistentVolumeClaim: { claimName: string }; hostPath?: never }
  | { hostPath: { path: string }; persistentVolumeClaim?: never };

type DerivedData = DerivedSpec['data'];
export type DataSpec = Omit<DerivedData, 'volume'> & { volume?: VolumeSource };
export type ImageSize = DerivedData['imageSize'];
export type SyntheticDataSpec = NonNullable<DerivedData['synthetic']>;

type DerivedCheckpoint = NonNullable<DerivedSpec['checkpoint']>;
export type CheckpointSpec = Omit<DerivedCheckpoint, 'volume'> & { volume?: VolumeSource };

// ------------------------------------------------------------ training

type DerivedTraining = DerivedSpec['training'];
type DerivedOptimizer = DerivedTraining['optimizer'];
type DerivedSchedule = DerivedTraining['schedule'];

interface OptimizerCommon {
  learningRate: number;
  weightDecay: number;
}
export interface SgdOptimizer extends OptimizerCommon {
  type: 'sgd';
  /** Unset means OPTIMIZER_DEFAULTS.momentum. */
  momentum?: number;
  beta1?: never;
  beta2?: never;
  epsilon?: never;
}
export interface AdamOptimizer extends OptimizerCommon {
  type: 'adam';
  /** Unset means the matching OPTIMIZER_DEFAULTS entry. */
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  momentum?: never;
}
export type OptimizerSpec = SgdOptimizer | AdamOptimizer;

export interface SmoothSchedule {
  type: 'constant' | 'cosine';
  warmupEpochs: number;
  stepEpochs?: never;
  gamma?: never;
}
export interface StepSchedule {
  type: 'step';
  warmupEpochs: number;
  stepEpochs: number;
  /** Unset means STEP_SCHEDULE_DEFAULT_GAMMA. */
  gamma?: number;
}
export type ScheduleSpec = SmoothSchedule | StepSchedule;

export type TrainingSpec = Omit<DerivedTraining, 'optimizer' | 'schedule'> & {
  optimizer: OptimizerSpec;
  schedule: ScheduleSpec;
};
export type Loss = DerivedTraining['loss'];
export type Backend = DerivedTraining['backend'];

// ------------------------------------------------------------ the rest of the spec

export type StreamingSpec = DerivedSpec['streaming'];
export type ResourcesSpec = DerivedSpec['resources'];
export type Toleration = NonNullable<ResourcesSpec['tolerations']>[number];
export type RunPolicy = DerivedSpec['runPolicy'];
/** spec.pod: the trainer pod's customisation (env, volumes, service account, pull secrets, node affinity). */
export type PodSpec = NonNullable<DerivedSpec['pod']>;
export type PodEnvVar = NonNullable<PodSpec['env']>[number];
export type PodVolume = NonNullable<PodSpec['volumes']>[number];
export type PodNodeAffinity = NonNullable<PodSpec['nodeAffinity']>;
export type NodeSelectorTerm = NonNullable<
  PodNodeAffinity['requiredDuringSchedulingIgnoredDuringExecution']
>['nodeSelectorTerms'][number];

/** The spec after defaulting (what validateJob returns and the API server stores). */
export type StreamingTrainingJobSpec = Omit<DerivedSpec, 'model' | 'data' | 'training' | 'checkpoint'> & {
  model: ModelSpec;
  data: DataSpec;
  training: TrainingSpec;
  checkpoint?: CheckpointSpec;
};

export type StreamingTrainingJobStatus = OutputOf<StatusNode>;
export type Condition = NonNullable<StreamingTrainingJobStatus['conditions']>[number];
export type PlanStatus = NonNullable<StreamingTrainingJobStatus['plan']>;
export type ProgressStatus = NonNullable<StreamingTrainingJobStatus['progress']>;

/** The part of metav1.ObjectMeta this project reads; other fields pass through untouched. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface StreamingTrainingJob {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: StreamingTrainingJobSpec;
  status?: StreamingTrainingJobStatus;
}

// ------------------------------------------------------------ compile-time agreement with the schema

type Expect<T extends true> = T;
/** Every value of the refined type is a value of the derived type. */
type Refines<Refined, Derived> = [Refined] extends [Derived] ? true : false;
/** The refined union has exactly the fields of the derived type: none forgotten, none invented. */
type Covers<Refined, Derived> = [keyof Derived] extends [KeysOfUnion<Refined>]
  ? [KeysOfUnion<Refined>] extends [keyof Derived]
    ? true
    : false
  : false;
type KeysOfUnion<T> = T extends unknown ? keyof T : never;

export type _SchemaAgreement = [
  Expect<Refines<ModelSpec, DerivedSpec['model']>>,
  Expect<Covers<ModelSpec, DerivedSpec['model']>>,
  Expect<Refines<VolumeSource, NonNullable<DerivedData['volume']>>>,
  Expect<Covers<VolumeSource, NonNullable<DerivedData['volume']>>>,
  Expect<Refines<OptimizerSpec, DerivedOptimizer>>,
  Expect<Covers<OptimizerSpec, DerivedOptimizer>>,
  Expect<Refines<ScheduleSpec, DerivedSchedule>>,
  Expect<Covers<ScheduleSpec, DerivedSchedule>>,
  Expect<Refines<StreamingTrainingJobSpec, DerivedSpec>>,
  Expect<Covers<StreamingTrainingJobSpec, DerivedSpec>>,
];

/** One entry of status.ranks: what one rank of a data-parallel job reports about itself. */
export type RankStatus = NonNullable<StreamingTrainingJobStatus['ranks']>[number];
/** status.distributed: the operator's summary of status.ranks. */
export type DistributedStatus = NonNullable<StreamingTrainingJobStatus['distributed']>;
