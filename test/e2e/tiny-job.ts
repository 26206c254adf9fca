// The end-to-end suites' job: the tiny synthetic task of test/train/train-command.test.ts (16 + 4
// images of 192², a small CNN, 8 steps an epoch on wasm), checkpointing every step, on hostPath
// volumes that the node agent maps into the pod.
import { mkdirSync } from 'node:fs';

export const SYNTHETIC = { count: 16, validationCount: 4, seed: 3, format: 'png' as const };
/** 16 images, batch 2. */
export const STEPS_PER_EPOCH = 8;

export interface TinyJobOptions {
  namespace: string;
  /** Host folder of the synthetic dataset (ensureSyntheticDataset with SYNTHETIC, 192²). */
  dataDir: string;
  /** Host folder for this job's checkpoints; created here. */
  checkpointsDir: string;
  /** spec.image; unset: the operator's trainer image. */
  image?: string;
  epochs?: number;
  minGpuMemory?: string;
  /** spec.resources.tolerations, for nodes a test taints. */
  tolerations?: { key: string; operator?: 'Exists' | 'Equal'; value?: string; effect?: string }[];
  runPolicy?: { suspend?: boolean; ttlSecondsAfterFinished?: number; queueName?: string };
  /** spec.resources.replicas: trainer pods of a data-parallel job (batch 2 splits over at most 2). */
  replicas?: number;
}

export function tinyJob(name: string, o: TinyJobOptions) {
  mkdirSync(o.checkpointsDir, { recursive: true });
  return {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name, namespace: o.namespace },
    spec: {
      ...(o.image !== undefined && { image: o.image }),
      model: { architecture: 'smallcnn', width: 4, head: { pooling: 'max', classes: 1 } },
      data: {
        root: '/data',
        volume: { hostPath: { path: o.dataDir } },
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: 192, width: 192 },
        channels: 1,
        normalization: { mean: [0.5], std: [0.05] },
        synthetic: SYNTHETIC,
      },
      training: {
        epochs: o.epochs ?? 1,
        batchSize: 2,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.003 },
        seed: 7,
        backend: 'wasm',
      },
      resources: {
        gpus: 1,
        ...(o.replicas !== undefined && { replicas: o.replicas }),
        ...(o.minGpuMemory && { minGpuMemory: o.minGpuMemory }),
        ...(o.tolerations && { tolerations: o.tolerations }),
      },
      checkpoint: {
        path: '/checkpoints',
        volume: { hostPath: { path: o.checkpointsDir } },
        everySteps: 1,
        keep: 2,
      },
      ...(o.runPolicy && { runPolicy: o.runPolicy }),
    },
  };
}

/** A condition of a job's status by type. */
export const conditionOf = <C extends { type: string }>(s: { status?: { conditions?: C[] } }, type: string) =>
  s.status?.conditions?.find((c) => c.type === type);
