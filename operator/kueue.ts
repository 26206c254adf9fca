// Whether a queued StreamingTrainingJob's Kueue LocalQueue exists (issue 15 item 4). A job with a
// queue name starts its trainer Job suspended and waits for Kueue to admit it; without Kueue, or
// with a LocalQueue name that does not exist, nothing ever would. Kueue is detected by API discovery
// (GET /apis/kueue.x-k8s.io), never assumed, and the queue is read in the version the API server
// prefers; both answers go into the QueueAvailable condition (status/queue-condition.ts).

import { type Condition, ConditionReason, ConditionType, type StreamingTrainingJob } from '../crds/index.ts';
import { queueNameOf } from './children/pod-customisation.ts';
import { ApiError, isNotFound, type KubeClient } from './kube/client.ts';
import { findCondition, isTrue, setCondition } from './status/conditions.ts';

export const KUEUE_GROUP = 'kueue.x-k8s.io';

/** What the QueueAvailable condition says. */
export interface QueueDiagnosis {
  status: 'True' | 'False' | 'Unknown';
  reason: ConditionReason;
  message: string;
}

interface Discovery {
  /** The group version to read LocalQueues in, e.g. kueue.x-k8s.io/v1beta2; undefined: no Kueue. */
  groupVersion: string | undefined;
  atMs: number;
}

/**
 * Kueue's API group as discovery reports it. A group found is kept for `ttlMs` (a cluster of queued
 * jobs costs one discovery request per period, not one per reconcile); a missing group is asked
 * again each time, so installing Kueue is seen at once (only misconfigured jobs pay for that).
 */
export class KueueDiscovery {
  readonly #client: KubeClient;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #cached: Discovery | undefined;

  constructor(client: KubeClient, o: { ttlMs?: number; now?: () => number } = {}) {
    this.#client = client;
    this.#ttlMs = o.ttlMs ?? 30_000;
    this.#now = o.now ?? Date.now;
  }

  async groupVersion(): Promise<string | undefined> {
    const now = this.#now();
    if (this.#cached && now - this.#cached.atMs < this.#ttlMs) return this.#cached.groupVersion;
    let groupVersion: string | undefined;
    try {
      const g = await this.#client.request<{ preferredVersion?: { groupVersion?: string } }>(
        'GET',
        `/apis/${KUEUE_GROUP}`,
      );
      groupVersion = g.preferredVersion?.groupVersion;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    this.#cached = groupVersion === undefined ? undefined : { groupVersion, atMs: now };
    return groupVersion;
  }
}

const kubectlHint = (ns: string) => `kubectl get localqueues.${KUEUE_GROUP} -n ${ns}`;

/**
 * The QueueAvailable condition of a queued job; undefined when the job names no queue. An API error
 * other than 404 (e.g. 403: the operator's role lacks localqueues) is Unknown with the error, not a
 * claim that the queue is missing.
 */
export async function diagnoseQueue(
  client: KubeClient,
  discovery: KueueDiscovery,
  stj: StreamingTrainingJob,
): Promise<QueueDiagnosis | undefined> {
  const queue = queueNameOf(stj);
  if (queue === undefined) return undefined;
  const ns = stj.metadata.namespace ?? 'default';
  const field =
    stj.spec.runPolicy.queueName !== undefined
      ? 'spec.runPolicy.queueName'
      : `label ${KUEUE_GROUP}/queue-name`;
  let gv: string | undefined;
  try {
    gv = await discovery.groupVersion();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    return {
      status: 'Unknown',
      reason: ConditionReason.QueueCheckFailed,
      message: `API discovery of ${KUEUE_GROUP} failed: ${e.message}`,
    };
  }
  if (gv === undefined)
    return {
      status: 'False',
      reason: ConditionReason.KueueNotInstalled,
      message:
        `${field} names LocalQueue ${queue}, but this cluster serves no ${KUEUE_GROUP} API (Kueue is not installed), ` +
        'so nothing will admit the job; install Kueue, or recreate the job without a queue name',
    };
  try {
    await client.request('GET', `/apis/${gv}/namespaces/${ns}/localqueues/${queue}`);
  } catch (e) {
    if (isNotFound(e))
      return {
        status: 'False',
        reason: ConditionReason.LocalQueueNotFound,
        message:
          `${field}: LocalQueue ${ns}/${queue} does not exist, so Kueue will not admit the job; create it ` +
          `(an admin, with a ClusterQueue behind it) or recreate the job with an existing queue (${kubectlHint(ns)})`,
      };
    if (!(e instanceof ApiError)) throw e;
    return {
      status: 'Unknown',
      reason: ConditionReason.QueueCheckFailed,
      message: `could not read LocalQueue ${ns}/${queue} (${gv}): ${e.message}`,
    };
  }
  return {
    status: 'True',
    reason: ConditionReason.LocalQueueFound,
    message: `queued in LocalQueue ${ns}/${queue}; Kueue admits the trainer Job when its ClusterQueue has quota`,
  };
}

/** How soon a queued job whose queue is not (yet) usable is checked again; LocalQueues are not watched. */
export const QUEUE_RECHECK_MS = 30_000;

/**
 * QUEUE_RECHECK_MS for a queued, unfinished job whose stored QueueAvailable is not True (or not
 * there yet), so a LocalQueue created after the job is seen within that; undefined otherwise.
 */
export function queueRecheckMs(stj: StreamingTrainingJob): number | undefined {
  const conditions = stj.status?.conditions;
  if (queueNameOf(stj) === undefined || hasFinished(conditions)) return undefined;
  return isTrue(conditions, ConditionType.QueueAvailable) ? undefined : QUEUE_RECHECK_MS;
}
const hasFinished = (conditions: readonly Condition[] | undefined) =>
  isTrue(conditions, ConditionType.Succeeded) || isTrue(conditions, ConditionType.Failed);

/** One discovery cache per API client (the operator has one; each test its own). */
const discoveries = new WeakMap<KubeClient, KueueDiscovery>();
function discoveryFor(client: KubeClient): KueueDiscovery {
  const known = discoveries.get(client);
  if (known !== undefined) return known;
  const d = new KueueDiscovery(client);
  discoveries.set(client, d);
  return d;
}

export interface QueueEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * The status with the QueueAvailable condition as it is now (dropped for a job that names no queue
 * or has finished), and the event its change deserves: a Warning when the queue turns unusable, a
 * Normal one when it is found again. Whatever computed `status` does not own this condition.
 */
export async function withQueueDiagnosis<S extends { conditions?: Condition[] }>(
  client: KubeClient,
  stj: StreamingTrainingJob,
  status: S,
  now: number,
): Promise<{ status: S; events: QueueEvent[] }> {
  const before = findCondition(stj.status?.conditions, ConditionType.QueueAvailable);
  const others = (status.conditions ?? []).filter((c) => c.type !== ConditionType.QueueAvailable);
  const diag = hasFinished(status.conditions)
    ? undefined
    : await diagnoseQueue(client, discoveryFor(client), stj);
  if (diag === undefined) {
    const { conditions: _c, ...rest } = status;
    return { status: (others.length > 0 ? { ...rest, conditions: others } : rest) as S, events: [] };
  }
  // The status passed in is computed afresh (status/compute-status.ts): the condition's transition
  // time comes from the stored one.
  const conditions = setCondition(
    before ? [...others, before] : others,
    { type: ConditionType.QueueAvailable, ...diag },
    stj.metadata.generation ?? 0,
    now,
  );
  const changed = before?.status !== diag.status || before?.reason !== diag.reason;
  const events: QueueEvent[] =
    !changed || (diag.status === 'True' && before === undefined)
      ? []
      : [{ type: diag.status === 'True' ? 'Normal' : 'Warning', reason: diag.reason, message: diag.message }];
  return { status: { ...status, conditions }, events };
}
