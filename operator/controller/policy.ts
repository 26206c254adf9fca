// The reconcile policy of one StreamingTrainingJob, as data: which actions to take on its trainer
// Jobs (a new attempt, suspend or resume, record a restart, delete) and on itself (the TTL), and
// the verdict the status is computed from (status/compute-status.ts). Pure: the caller gathers the
// observation and the sizings, carries the actions out, and plans any sizing asked for.
//
// Level-triggered: the result depends on the spec and the Jobs and Pods that exist, never on the
// event that caused the reconcile, nor on the previous status, with one exception: a terminal
// status (Succeeded or Failed) is final, as a batch/v1 Job's is, even if its trainer Job is deleted.
// The planner is never called here: sizings come in as data, and a placement whose sizings are
// missing returns `needs-sizings` with the requests.

import { ConditionReason, type StreamingTrainingJob } from '../../crds/index.ts';
import { attemptSpecOf, changedFields } from '../children/attempt-spec.ts';
import { type JobPlan, jobPlanOf } from '../children/job-plan.ts';
import { queueNameOf } from '../children/pod-customisation.ts';
import type { TrainerJobInput } from '../children/trainer-job.ts';
import type { Inventory } from '../cluster/gpu-inventory.ts';
import {
  admits,
  type GpuUsage,
  type Placement,
  planPlacement,
  sizingRequests,
} from '../cluster/placement.ts';
import {
  nextSmallerTile,
  type Sizing,
  SizingError,
  type SizingRequest,
  sizingKey,
  type TileLimits,
} from '../cluster/tile-sizing.ts';
import type { Job, Pod } from '../kube/types.ts';
import { parseTime } from '../status/conditions.ts';
import {
  describePlan,
  exhaustedMessage,
  minimumTileOomMessage,
  ranksExhaustedMessage,
  ranksRestartedMessage,
  ranksWaitingMessage,
  specChangeAppliedMessage,
  tileReducedMessage,
} from '../status/messages.ts';
import {
  type AttemptObservation,
  currentJob,
  type FailureCause,
  isRankJob,
  observeAttempt,
} from '../status/observe.ts';

export interface PolicyInput {
  stj: StreamingTrainingJob;
  now: number;
  /** The trainer Jobs this StreamingTrainingJob controls. */
  jobs: readonly Job[];
  /** The pods of those Jobs. */
  pods: readonly Pod[];
  inventory: Inventory;
  usage: GpuUsage;
  /** Sizings planned so far, by sizingKey; a SizingError for a spec the planner refuses. */
  sizings: ReadonlyMap<string, Sizing | SizingError>;
  /** The body's tile limits (tile-sizing.ts tileLimitsOf), or why there are none. */
  tileLimits: TileLimits | SizingError;
}

/** A new trainer Job: everything of TrainerJobInput but the object and the operator's settings. */
export type AttemptInput = Omit<TrainerJobInput, 'stj' | 'settings'>;

export type ReconcileAction =
  /** Create the trainer Job (with its ConfigMap and RBAC) of a new attempt. */
  | { kind: 'create-attempt'; attempt: AttemptInput }
  /** Flip spec.suspend of an existing trainer Job. */
  | { kind: 'set-suspend'; job: string; suspend: boolean }
  /** Record the restarts seen on the Job (ANNOTATION.restartsSeen), so a vanished pod stays counted. */
  | { kind: 'record-restarts'; job: string; restarts: number }
  | { kind: 'delete-job'; job: string }
  /** spec.runPolicy.ttlSecondsAfterFinished has passed: delete the StreamingTrainingJob (children follow). */
  | { kind: 'delete-stj' };

/** Whether the trainer Job is, or is to be, suspended, and whether by the spec (else by Kueue). */
export interface Suspension {
  suspend: boolean;
  bySpec: boolean;
}

/** What the status says, beyond what the observation shows by itself. */
export type Verdict =
  /** No placement: no new attempt (a failed or stranded Job of the last attempt may remain). */
  | {
      kind: 'unplaceable';
      reason: ConditionReason;
      message: string;
      last: AttemptObservation | undefined;
    }
  /** A new attempt is created now. */
  | {
      kind: 'new-attempt';
      attempt: AttemptInput & { planned: { reason: string; message: string } };
      suspension: Suspension;
      /** The attempt it replaces, if any. */
      last: AttemptObservation | undefined;
    }
  /** The current attempt is suspended, starting or running. */
  | {
      kind: 'active';
      obs: AttemptObservation;
      /** What the status shows: a Job about to be resumed still says suspended, and shows as starting. */
      state: 'suspended' | 'starting' | 'running';
      suspension: Suspension;
      /** Spec fields edited since the attempt was built (none for a Job of an older operator). */
      pendingFields: string[];
    }
  | { kind: 'succeeded'; obs: AttemptObservation }
  | {
      kind: 'failed';
      reason: ConditionReason;
      message: string;
      /** When it failed, if the Job says; else the status keeps its completionTime or takes now. */
      at: string | undefined;
      obs: AttemptObservation | undefined;
    }
  /** Terminal already: the status stays as it is. */
  | { kind: 'finished' }
  /** Something is on its way (a Job being deleted, an exit the pod cache has not shown yet). */
  | { kind: 'waiting' };

export type PolicyResult =
  | { kind: 'needs-sizings'; requests: SizingRequest[] }
  | { kind: 'decided'; actions: ReconcileAction[]; verdict: Verdict; requeueAfterMs?: number };

/** Internal: a placement asked for sizings that are not in the input. */
class NeedsSizings {
  readonly requests: SizingRequest[];
  constructor(requests: SizingRequest[]) {
    this.requests = requests;
  }
}

interface Ctx extends PolicyInput {
  actions: ReconcileAction[];
  requeueAfterMs?: number;
}

export function decide(
  input: PolicyInput,
  terminal: boolean,
  completionTime: string | undefined,
): PolicyResult {
  const c: Ctx = { ...input, actions: [] };
  try {
    const verdict = terminal ? finished(c, completionTime) : current(c);
    // A job that finishes now starts its TTL now.
    if (verdict.kind === 'succeeded')
      finished(c, verdict.obs.outcome.state === 'succeeded' ? verdict.obs.outcome.at : undefined);
    if (verdict.kind === 'failed') finished(c, verdict.at);
    return {
      kind: 'decided',
      actions: c.actions,
      verdict,
      ...(c.requeueAfterMs !== undefined && { requeueAfterMs: c.requeueAfterMs }),
    };
  } catch (e) {
    if (e instanceof NeedsSizings) return { kind: 'needs-sizings', requests: e.requests };
    throw e;
  }
}

/** The placement under an optional tile cap, from the sizings given. */
function place(c: Ctx, maxTile?: number): Placement {
  const spec = c.stj.spec;
  const missing = sizingRequests(spec, c.inventory, maxTile).filter((r) => !c.sizings.has(sizingKey(r)));
  if (missing.length > 0) throw new NeedsSizings(missing);
  return planPlacement({
    spec,
    inventory: c.inventory,
    usage: c.usage,
    size: (req) => {
      const v = c.sizings.get(sizingKey(req));
      if (v === undefined) throw new Error(`internal: sizing ${sizingKey(req)} was not planned first`);
      if (v instanceof SizingError) throw v;
      return v;
    },
    ...(maxTile !== undefined && { maxTile }),
  });
}

function current(c: Ctx): Verdict {
  const { current: job, stale } = currentJob(c.jobs);
  for (const j of stale) c.actions.push({ kind: 'delete-job', job: j.metadata.name });
  if (job?.metadata.deletionTimestamp) {
    // Someone deleted the trainer Job; wait until it is gone, then plan afresh.
    c.requeueAfterMs = 5000;
    return { kind: 'waiting' };
  }
  if (!job) return start(c, undefined, planFresh(c));
  const obs = observeAttempt(job, c.pods);
  switch (obs.outcome.state) {
    case 'succeeded':
      return { kind: 'succeeded', obs };
    case 'failing':
      c.requeueAfterMs = 1000; // the pod's exit is on its way
      return { kind: 'waiting' };
    case 'failed':
      if (isRankJob(job) && ranksStopping(c, obs)) {
        // The other ranks of a failed attempt are being stopped: the next attempt's rank 0 must not
        // write checkpoints (nor bind the collective's ports) beside the old one still saving.
        c.requeueAfterMs = 2000;
        return { kind: 'waiting' };
      }
      if (obs.outcome.cause === 'oom') return shrink(c, obs);
      if (obs.outcome.cause === 'peersUnavailable' || obs.outcome.cause === 'rankFailed')
        return restartRanks(c, obs, obs.outcome.cause, obs.outcome.message);
      return failed(obs, failureReason(obs.outcome.cause), obs.outcome.message, obs.outcome.at);
    default:
      return active(c, obs, obs.outcome.state);
  }
}

type Planned =
  | { kind: 'plan'; plan: JobPlan; reason: ConditionReason; message: string }
  | { kind: 'unplaceable'; reason: ConditionReason; message: string };

function planned(
  p: Placement,
  reason: ConditionReason,
  describe: (plan: JobPlan) => string,
  prefix = '',
): Planned {
  if (p.kind === 'unplaceable')
    return { kind: 'unplaceable', reason: ConditionReason[p.reason], message: prefix + p.message };
  const plan = jobPlanOf(p);
  const pods = p.kind === 'gpu' ? (p.pods ?? 1) : 1;
  // A data-parallel job's pods must all run at once: say so when the class has no room for them now.
  const note =
    p.kind === 'gpu' && pods > 1 && p.freePods < pods
      ? `; ${ranksWaitingMessage(plan, p.freePods, pods)}`
      : '';
  return { kind: 'plan', plan, reason, message: describe(plan) + note };
}

function planFresh(c: Ctx): Planned {
  return planned(place(c), ConditionReason.PlanFound, describePlan);
}

/**
 * A new attempt after `last` (none: the first), or the verdict that there is no placement. The
 * deadline counts from the first start, carried across attempts.
 */
function start(c: Ctx, last: AttemptObservation | undefined, p: Planned): Verdict {
  if (p.kind === 'unplaceable') return { kind: 'unplaceable', reason: p.reason, message: p.message, last };
  const { stj, now } = c;
  const left = deadlineLeft(stj, last?.startTime, now);
  if (left !== undefined && left <= 0) {
    return failed(
      last,
      ConditionReason.DeadlineExceeded,
      `spec.runPolicy.activeDeadlineSeconds (${stj.spec.runPolicy.activeDeadlineSeconds}) passed before the trainer could be restarted`,
      undefined,
    );
  }
  if (last) c.actions.push({ kind: 'delete-job', job: last.job.metadata.name });
  const suspension = wantSuspended(stj, undefined);
  const firstStart =
    last?.startTime !== undefined && parseTime(last.startTime) !== undefined ? last.startTime : undefined;
  const attempt = {
    plan: p.plan,
    attempt: last ? last.attempt + 1 : 0,
    tileReductions: (last?.tileReductions ?? 0) + (p.reason === ConditionReason.TileSizeReduced ? 1 : 0),
    restartsBefore: last?.failedPods ?? 0,
    suspend: suspension.suspend,
    ...(firstStart !== undefined && { firstStart }),
    ...(last?.trainerRan && { trainerRan: true }),
    planned: { reason: p.reason, message: p.message },
    ...(left !== undefined && { activeDeadlineSeconds: left }),
  };
  c.actions.push({ kind: 'create-attempt', attempt });
  return { kind: 'new-attempt', attempt, suspension, last };
}

/** The trainer ran out of memory: the next attempt gets a smaller tile, within the limits. */
function shrink(c: Ctx, obs: AttemptObservation): Verdict {
  const max = c.stj.spec.runPolicy.maxTileReductions;
  const tile = obs.plan?.tileSize;
  if (tile === undefined) {
    return failed(
      obs,
      ConditionReason.OutOfMemory,
      'the trainer ran out of memory, and its Job carries no readable plan to shrink',
      undefined,
    );
  }
  if (obs.tileReductions >= max) {
    return failed(
      obs,
      ConditionReason.TileReductionsExhausted,
      exhaustedMessage(tile, obs.tileReductions, max),
      undefined,
    );
  }
  if (c.tileLimits instanceof SizingError)
    return failed(obs, ConditionReason.InvalidSpec, c.tileLimits.message, undefined);
  const next = nextSmallerTile(tile, c.tileLimits);
  if (next === undefined)
    return failed(obs, ConditionReason.OutOfMemory, minimumTileOomMessage(tile), undefined);
  // Unplaceable: the failed Job stays (it records the out-of-memory exit) until a placement is found.
  const p = planned(
    place(c, next),
    ConditionReason.TileSizeReduced,
    (plan) => tileReducedMessage(tile, plan.tileSize, obs.tileReductions + 1, max, plan),
    `re-planning after the trainer ran out of memory at tile ${tile} px: `,
  );
  return start(c, obs, p);
}

/** Seconds past a pod's grace period after which a rank still shown running is taken as gone (a lost node). */
const STOP_SLACK_SECONDS = 30;

/**
 * Whether a rank pod of the failed attempt still runs (the Job controller stops them after the
 * first failure, and a rank 0 may be writing its checkpoint). Not beyond the pods' grace period
 * after the failure: a pod on a lost node shows Running until the node comes back.
 */
function ranksStopping(c: Ctx, obs: AttemptObservation): boolean {
  const own = c.pods.filter(
    (p) =>
      p.metadata.labels?.['batch.kubernetes.io/job-name'] === obs.job.metadata.name &&
      p.status?.phase === 'Running',
  );
  if (own.length === 0) return false;
  const failedAt = parseTime(obs.outcome.state === 'failed' ? obs.outcome.at : undefined);
  const grace = Math.max(...own.map((p) => p.spec?.terminationGracePeriodSeconds ?? 30));
  return failedAt !== undefined && c.now < failedAt + (grace + STOP_SLACK_SECONDS) * 1000;
}

/**
 * A rank of a data-parallel job failed, so its attempt did: all ranks start again from the last
 * checkpoint in the next attempt, as long as spec.runPolicy.backoffLimit allows (each failed
 * attempt is one restart, however many ranks it stopped).
 */
function restartRanks(
  c: Ctx,
  obs: AttemptObservation,
  cause: 'peersUnavailable' | 'rankFailed',
  message: string,
): Verdict {
  const limit = c.stj.spec.runPolicy.backoffLimit;
  const restarts = obs.failedPods;
  const peers = cause === 'peersUnavailable';
  if (restarts > limit) {
    return failed(
      obs,
      peers ? ConditionReason.PeersUnavailable : ConditionReason.BackoffLimitExceeded,
      ranksExhaustedMessage(message, restarts, limit, peers),
      undefined,
    );
  }
  // The cap of earlier tile reductions is kept.
  const cap = obs.tileReductions > 0 ? obs.plan?.tileSize : undefined;
  const p = planned(
    place(c, cap),
    peers ? ConditionReason.PeersUnavailable : ConditionReason.RankFailed,
    (plan) => ranksRestartedMessage(message, restarts, limit, plan),
    `${message}; re-planning to restart all ranks: `,
  );
  return start(c, obs, p);
}

/** The current attempt is suspended, starting or running. */
function active(c: Ctx, obs: AttemptObservation, observed: 'suspended' | 'starting' | 'running'): Verdict {
  const { stj } = c;
  const job = obs.job;
  const suspension = wantSuspended(stj, job);
  const plan = obs.plan;
  const idle = observed !== 'running';
  // The cap of earlier reductions is kept when re-planning.
  const cap = obs.tileReductions > 0 ? plan?.tileSize : undefined;
  // A class can vanish (nodes deleted or relabelled) while the pod waits: plan again elsewhere.
  if (idle && plan?.gpuClass !== undefined && !classUsable(c, plan.gpuClass)) {
    const lost = `GPU class ${plan.gpuClass} has no node left that admits this job`;
    const p = planned(
      place(c, cap),
      ConditionReason.PlanFound,
      (next) => `${lost}; re-planned: ${describePlan(next)}`,
      `${lost}; `,
    );
    // Unplaceable: the stranded Job stays until a placement is found.
    return start(c, obs, p);
  }
  // A spec edit reaches the attempt at once when no trainer runs (suspended, or waiting for its pod);
  // a running trainer keeps its spec until its next attempt (the condition SpecApplied says so).
  const pendingFields = obs.spec ? changedFields(obs.spec, attemptSpecOf(stj.spec)) : [];
  // A pod still terminating (a suspended trainer writing its checkpoint) must be gone first: the
  // next attempt's trainer would write the same checkpoints.
  const podsLeft = c.pods.some(
    (p) =>
      p.metadata.labels?.['batch.kubernetes.io/job-name'] === job.metadata.name &&
      p.status?.phase !== 'Succeeded' &&
      p.status?.phase !== 'Failed' &&
      p.status?.phase !== 'Pending',
  );
  if (idle && pendingFields.length > 0 && podsLeft) c.requeueAfterMs = 5000;
  if (idle && pendingFields.length > 0 && !podsLeft) {
    // The cap of earlier reductions was learnt with the old streaming settings.
    const keptCap = pendingFields.some((f) => f.startsWith('spec.streaming.')) ? undefined : cap;
    return start(
      c,
      obs,
      planned(place(c, keptCap), ConditionReason.SpecChangeApplied, (next) =>
        specChangeAppliedMessage(pendingFields, next),
      ),
    );
  }
  // Kept, so its restart count is worth recording (a Job about to be replaced hands it on instead).
  if (obs.failedPods > obs.restartsSeen)
    c.actions.push({ kind: 'record-restarts', job: job.metadata.name, restarts: obs.failedPods });
  if (suspension.suspend !== (job.spec?.suspend === true))
    c.actions.push({ kind: 'set-suspend', job: job.metadata.name, suspend: suspension.suspend });
  const state = suspension.suspend ? 'suspended' : observed === 'suspended' ? 'starting' : observed;
  return { kind: 'active', obs, state, suspension, pendingFields };
}

function failed(
  obs: AttemptObservation | undefined,
  reason: ConditionReason,
  message: string,
  at: string | undefined,
): Verdict {
  const failedAt = at ?? (obs?.outcome.state === 'failed' ? obs.outcome.at : undefined);
  return { kind: 'failed', reason, message, at: failedAt, obs };
}

/**
 * Terminal: only the TTL is left to act on, counted from the completion time (from now when it
 * cannot be read: the status then records now).
 */
function finished(c: Ctx, completionTime: string | undefined): Verdict {
  const ttl = c.stj.spec.runPolicy.ttlSecondsAfterFinished;
  const done = parseTime(completionTime) ?? Math.floor(c.now / 1000) * 1000;
  if (ttl !== undefined) {
    const due = done + ttl * 1000;
    if (c.now >= due) c.actions.push({ kind: 'delete-stj' });
    else c.requeueAfterMs = due - c.now;
  }
  return { kind: 'finished' };
}

function classUsable(c: Ctx, gpuClass: string): boolean {
  return c.inventory.classes.some((k) => k.name === gpuClass && k.offers.some((o) => admits(c.stj.spec, o)));
}

/**
 * Whole seconds left of spec.runPolicy.activeDeadlineSeconds, counted from the first start (from
 * the next start when none is known), never more than the limit (a start ahead of our clock).
 */
function deadlineLeft(
  stj: StreamingTrainingJob,
  startTime: string | undefined,
  now: number,
): number | undefined {
  const limit = stj.spec.runPolicy.activeDeadlineSeconds;
  if (limit === undefined) return undefined;
  const started = parseTime(startTime);
  if (started === undefined) return limit;
  return Math.min(limit, limit - Math.floor((now - started) / 1000));
}

/**
 * Whether the trainer Job should be suspended. With a Kueue queue the Job starts suspended and
 * Kueue admits it by setting suspend=false, so an existing Job's value is Kueue's to keep.
 */
export function wantSuspended(stj: StreamingTrainingJob, job: Job | undefined): Suspension {
  if (stj.spec.runPolicy.suspend) return { suspend: true, bySpec: true };
  // queueNameOf: spec.runPolicy.queueName or the job's kueue.x-k8s.io/queue-name label (copied to the Job).
  if (queueNameOf(stj) !== undefined)
    return { suspend: job ? job.spec?.suspend === true : true, bySpec: false };
  return { suspend: false, bySpec: false };
}

function failureReason(cause: FailureCause): ConditionReason {
  switch (cause) {
    case 'invalid':
      return ConditionReason.InvalidSpec;
    case 'dataNotFound':
      return ConditionReason.DataNotFound;
    case 'volumeFull':
      return ConditionReason.CheckpointVolumeFull;
    case 'backoff':
      return ConditionReason.BackoffLimitExceeded;
    case 'deadline':
      return ConditionReason.DeadlineExceeded;
    case 'peersUnavailable':
      return ConditionReason.PeersUnavailable;
    case 'oom':
      return ConditionReason.OutOfMemory;
    default:
      return ConditionReason.TrainerFailed;
  }
}
