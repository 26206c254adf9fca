// The part of a StreamingTrainingJob's spec that a trainer Job is built from and keeps until it is
// replaced (the tile, the pod's resources and placement, the image, the retry limits). Recorded on
// each trainer Job, so the operator can tell, from the Job alone, whether a spec edit has reached
// the running attempt. Pure.
//
// Not in it: what the operator reads live (runPolicy.suspend, maxTileReductions,
// ttlSecondsAfterFinished) and what the CRD makes immutable (model, data, training, checkpoint,
// queueName).

import type { StreamingTrainingJobSpec } from '../../crds/index.ts';

export interface AttemptSpec {
  streaming: StreamingTrainingJobSpec['streaming'];
  resources: StreamingTrainingJobSpec['resources'];
  image?: string;
  /** The pod customisation (env, volumes, service account, pull secrets, node affinity). */
  pod?: StreamingTrainingJobSpec['pod'];
  backoffLimit: number;
  activeDeadlineSeconds?: number;
}

export function attemptSpecOf(spec: StreamingTrainingJobSpec): AttemptSpec {
  return {
    streaming: spec.streaming,
    resources: spec.resources,
    ...(spec.image !== undefined && { image: spec.image }),
    ...(spec.pod !== undefined && { pod: spec.pod }),
    backoffLimit: spec.runPolicy.backoffLimit,
    ...(spec.runPolicy.activeDeadlineSeconds !== undefined && {
      activeDeadlineSeconds: spec.runPolicy.activeDeadlineSeconds,
    }),
  };
}

/** Where each AttemptSpec field lives in the custom resource. */
const FIELD_PATH: Record<keyof AttemptSpec, string> = {
  streaming: 'spec.streaming',
  resources: 'spec.resources',
  image: 'spec.image',
  pod: 'spec.pod',
  backoffLimit: 'spec.runPolicy.backoffLimit',
  activeDeadlineSeconds: 'spec.runPolicy.activeDeadlineSeconds',
};

/** Sorted keys at every level, so that field order never reads as a change. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

/**
 * The spec fields (as paths, e.g. `spec.streaming.tileSize`) that differ between what an attempt was
 * built from and the spec now; one level deep inside streaming, resources and pod, where users edit.
 */
export function changedFields(built: AttemptSpec, now: AttemptSpec): string[] {
  const out: string[] = [];
  for (const key of Object.keys(FIELD_PATH) as (keyof AttemptSpec)[]) {
    const a = built[key];
    const b = now[key];
    if (canonical(a) === canonical(b)) continue;
    if (
      (key === 'streaming' || key === 'resources' || key === 'pod') &&
      a &&
      b &&
      typeof a === 'object' &&
      typeof b === 'object'
    ) {
      const fields = new Set([...Object.keys(a), ...Object.keys(b)]);
      for (const f of [...fields].sort()) {
        const x = (a as Record<string, unknown>)[f];
        const y = (b as Record<string, unknown>)[f];
        if (canonical(x) !== canonical(y)) out.push(`${FIELD_PATH[key]}.${f}`);
      }
    } else out.push(FIELD_PATH[key]);
  }
  return out;
}

/** Reads the attempt-spec annotation; undefined when missing (a Job of an older operator) or unreadable. */
export function parseAttemptSpec(text: string | undefined): AttemptSpec | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as AttemptSpec;
    if (
      typeof v !== 'object' ||
      v === null ||
      typeof v.streaming !== 'object' ||
      typeof v.resources !== 'object'
    )
      return undefined;
    // A Job of an operator before spec.resources.replicas ran one pod: the default, not an edit.
    return { ...v, resources: { ...v.resources, replicas: v.resources.replicas ?? 1 } };
  } catch {
    return undefined;
  }
}
