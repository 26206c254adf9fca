// What a StreamingTrainingJob adds to its trainer pod and Job beyond the operator's own settings
// (issue 15 items 4 and 5): the pod customisation of spec.pod (env, extra volumes, service account,
// image pull secrets, node affinity), the priority class, and the labels and annotations that
// queueing systems read from the Job. Pure; the tenant policy has admitted spec.pod already
// (crds/v1alpha1/tenant-policy.ts, re-checked by operator/tenant-policy.ts before creation).

import type {
  V1Affinity,
  V1EnvVar,
  V1LocalObjectReference,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import type {
  PodNodeAffinity,
  PodVolume,
  StreamingTrainingJob,
  StreamingTrainingJobSpec,
} from '../../crds/index.ts';
import { MANAGED_BY_OPERATOR } from '../../crds/index.ts';
import type { LabelRequirement } from '../cluster/gpu-inventory.ts';
import { LABEL } from './names.ts';

/**
 * Label and annotation prefixes copied from the StreamingTrainingJob to its trainer Job: Kueue reads
 * them from the Job it admits (kueue.x-k8s.io/queue-name, priority-class, max-exec-time-seconds, …).
 */
export const PROPAGATED_PREFIXES = ['kueue.x-k8s.io/'] as const;

const propagated = (m: Record<string, string> | undefined): Record<string, string> =>
  Object.fromEntries(
    Object.entries(m ?? {}).filter(([k]) => PROPAGATED_PREFIXES.some((p) => k.startsWith(p))),
  );

/**
 * The Kueue LocalQueue the job is queued in: spec.runPolicy.queueName, else the job's
 * kueue.x-k8s.io/queue-name label (what Kueue users put on any workload); undefined: not queued.
 */
export function queueNameOf(stj: StreamingTrainingJob): string | undefined {
  return stj.spec.runPolicy.queueName ?? stj.metadata.labels?.[LABEL.kueueQueue];
}

/** Labels and annotations the trainer Job carries for queueing systems; spec.runPolicy.queueName wins. */
export function schedulingMetadata(stj: StreamingTrainingJob): {
  labels: Record<string, string>;
  annotations: Record<string, string>;
} {
  const queue = queueNameOf(stj);
  return {
    labels: { ...propagated(stj.metadata.labels), ...(queue !== undefined && { [LABEL.kueueQueue]: queue }) },
    annotations: propagated(stj.metadata.annotations),
  };
}

/**
 * Whether another controller runs this job (spec.runPolicy.managedBy set to something else than
 * the operator, e.g. MultiKueue on a manager cluster): then this operator creates no children and
 * writes no status, as the Job controller skips a batch/v1 Job whose spec.managedBy is not its own.
 */
export function managedElsewhere(spec: StreamingTrainingJobSpec): string | undefined {
  const by = spec.runPolicy.managedBy;
  return by !== undefined && by !== MANAGED_BY_OPERATOR ? by : undefined;
}

/** spec.pod.env after the operator's variables (the CRD refuses the operator's names). */
export function customEnv(spec: StreamingTrainingJobSpec): V1EnvVar[] {
  return (spec.pod?.env ?? []).map((e) => ({
    name: e.name,
    ...(e.value !== undefined && { value: e.value }),
    ...(e.valueFrom !== undefined && { valueFrom: e.valueFrom }),
  }));
}

function podVolumeSource(v: PodVolume): Omit<V1Volume, 'name'> {
  if (v.persistentVolumeClaim)
    return {
      persistentVolumeClaim: { claimName: v.persistentVolumeClaim.claimName, readOnly: v.readOnly ?? true },
    };
  if (v.hostPath) return { hostPath: { path: v.hostPath.path, type: 'Directory' } };
  if (v.configMap) return { configMap: { name: v.configMap.name } };
  if (v.secret) return { secret: { secretName: v.secret.secretName } };
  return { emptyDir: {} };
}

/** spec.pod.volumes as pod volumes and trainer mounts; read-only unless the job says otherwise. */
export function customVolumes(spec: StreamingTrainingJobSpec): {
  volumes: V1Volume[];
  mounts: V1VolumeMount[];
} {
  const vs = spec.pod?.volumes ?? [];
  return {
    volumes: vs.map((v) => ({ name: v.name, ...podVolumeSource(v) })),
    mounts: vs.map((v) => ({
      name: v.name,
      mountPath: v.mountPath,
      readOnly: v.readOnly ?? true,
      ...(v.subPath !== undefined && { subPath: v.subPath }),
    })),
  };
}

/** The operator's image pull secrets and the job's, each once. */
export function imagePullSecrets(
  spec: StreamingTrainingJobSpec,
  operatorSecrets: readonly string[] = [],
): V1LocalObjectReference[] {
  const names = [...operatorSecrets, ...(spec.pod?.imagePullSecrets ?? []).map((s) => s.name)];
  return [...new Set(names)].map((name) => ({ name }));
}

/**
 * Node affinity: the job's required terms, each with the GPU class pin added (a node must match
 * one term and the class), and its preferences as they are. Without required terms, the pin alone.
 */
export function trainerAffinity(
  nodeAffinity: PodNodeAffinity | undefined,
  pin: readonly LabelRequirement[] | undefined,
): V1Affinity | undefined {
  const pinned = (pin ?? []).map((r) => ({ key: r.key, operator: 'In', values: [...r.values] }));
  const terms = nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
  const required =
    terms.length > 0
      ? terms.map((t) => ({ matchExpressions: [...t.matchExpressions, ...pinned] }))
      : pinned.length > 0
        ? [{ matchExpressions: pinned }]
        : [];
  const preferred = nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
  if (required.length === 0 && preferred.length === 0) return undefined;
  return {
    nodeAffinity: {
      ...(required.length > 0 && {
        requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: required },
      }),
      ...(preferred.length > 0 && { preferredDuringSchedulingIgnoredDuringExecution: preferred }),
    },
  };
}
