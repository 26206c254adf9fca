// Names, labels and the owner reference of a StreamingTrainingJob's children. Deterministic, so a
// reconcile run twice applies the same objects (and the garbage collector removes them with the job).

import { API_VERSION, KIND, type StreamingTrainingJob } from '../../crds/index.ts';
import type { OwnerReference } from '../kube/types.ts';

export const FIELD_MANAGER = 'tilestream-operator';
export const TRAINER_CONTAINER = 'trainer';

export const LABEL = {
  name: 'app.kubernetes.io/name',
  component: 'app.kubernetes.io/component',
  managedBy: 'app.kubernetes.io/managed-by',
  /** The StreamingTrainingJob a child belongs to; DCGM and PodMonitor joins use it too. */
  job: 'tilestream.io/job-name',
  /** Placement attempt of a trainer Job: 0, then one more per re-plan (smaller tile, vanished class). */
  attempt: 'tilestream.io/attempt',
  kueueQueue: 'kueue.x-k8s.io/queue-name',
} as const;

export const ANNOTATION = {
  /** The plan a trainer Job was built from (JSON), so status.plan is read back from the Job itself. */
  plan: 'tilestream.io/plan',
  tileReductions: 'tilestream.io/tile-reductions',
  /** Trainer restarts of earlier attempts (their Jobs are deleted when the next one starts). */
  restartsBefore: 'tilestream.io/restarts-before',
  /**
   * Restarts of this attempt the operator has seen (a disrupted pod is deleted soon after it failed, and
   * its restart would otherwise be forgotten); the operator raises it, never lowers it.
   */
  restartsSeen: 'tilestream.io/restarts-seen',
  /** The first start of an earlier attempt (RFC 3339), so status.startTime outlives its Job. */
  firstStart: 'tilestream.io/first-start',
  /** 'true' when the trainer ran in an earlier attempt: the phase stays Running across re-plans. */
  trainerRan: 'tilestream.io/trainer-ran',
  /** Why this attempt was planned, as the Planned condition says it: JSON {reason, message}. */
  planned: 'tilestream.io/planned',
  /** The spec fields the attempt was built from (attempt-spec.ts), JSON. */
  spec: 'tilestream.io/spec',
} as const;

export const MANAGED_BY = 'tilestream-operator';

/** Labels every child carries. */
export function childLabels(stj: StreamingTrainingJob): Record<string, string> {
  return {
    [LABEL.name]: 'tilestream',
    [LABEL.component]: 'trainer',
    [LABEL.managedBy]: MANAGED_BY,
    [LABEL.job]: stj.metadata.name,
  };
}

/** Selects the trainer Jobs and Pods of all StreamingTrainingJobs (informer label selector). */
export const MANAGED_SELECTOR = `${LABEL.managedBy}=${MANAGED_BY}`;

/** STJ names are at most 52 characters (the CRD), so `-<attempt>` keeps Job names within 63. */
export function trainerJobName(stjName: string, attempt: number): string {
  return `${stjName}-${attempt}`;
}
export const configMapName = (stjName: string): string => `${stjName}-job`;
export const trainerAccountName = (stjName: string): string => `${stjName}-trainer`;

export function ownerReference(stj: StreamingTrainingJob): OwnerReference {
  if (!stj.metadata.uid)
    throw new Error(`internal: ${stj.metadata.name} has no uid; read it from the API server`);
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: stj.metadata.name,
    uid: stj.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** metadata of a child: name, namespace, labels, controller owner reference. */
export function childMeta(
  stj: StreamingTrainingJob,
  name: string,
  extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
) {
  return {
    name,
    namespace: stj.metadata.namespace as string,
    labels: { ...childLabels(stj), ...extra.labels },
    ...(extra.annotations && { annotations: extra.annotations }),
    ownerReferences: [ownerReference(stj)],
  };
}
