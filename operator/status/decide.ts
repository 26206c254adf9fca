// The decision of one reconcile, as data: which trainer Job to create (a new attempt), which to
// suspend, resume or delete, what the operator-owned part of the status becomes, which Events to
// record, and when to look again. Pure: the caller gathers the inputs from the caches and carries
// the decision out (operator/controller/reconcile.ts).
//
// Level-triggered: the result depends on the StreamingTrainingJob and the Jobs and Pods that exist,
// never on the event that caused the reconcile. The few facts that outlive a deleted Job (tile
// reductions, restarts, first start, terminal state) are recorded on the next Job or in the status.

import type { StreamingTrainingJob, StreamingTrainingJobStatus } from '../../crds/index.ts';
import { ConditionReason, ConditionType } from '../../crds/index.ts';
import { type JobPlan, jobPlanOf, planStatus } from '../children/job-plan.ts';
import type { TrainerJobInput } from '../children/trainer-job.ts';
import type { Placement } from '../cluster/placement.ts';
import { SizingError } from '../cluster/tile-sizing.ts';
import type { Job, Pod } from '../kube/types.ts';
import {
  type ConditionUpdate,
  findCondition,
  isTrue,
  parseTime,
  rfc3339,
  setCondition,
} from './conditions.ts';
import {
  describePlan,
  exhaustedMessage,
  minimumTileOomMessage,
  suspendedMessage,
  tileReducedMessage,
} from './messages.ts';
import { type AttemptObservation, currentJob, type FailureCause, observeAttempt } from './observe.ts';

/** The status fields the operator owns (the trainer owns progress, lastCheckpoint and result). */
export type OwnedStatus = Pick<
  StreamingTrainingJobStatus,
  | 'observedGeneration'
  | 'phase'
  | 'conditions'
  | 'plan'
  | 'startTime'
  | 'completionTime'
  | 'restarts'
  | 'tileReductions'
>;

const OWNED: readonly (keyof OwnedStatus)[] = [
  'observedGeneration',
  'phase',
  'conditions',
  'plan',
  'startTime',
  'completionTime',
  'restarts',
  'tileReductions',
];

export function ownedStatus(status: StreamingTrainingJobStatus | undefined): OwnedStatus {
  const out: Record<string, unknown> = {};
  for (const k of OWNED) if (status?.[k] !== undefined) out[k] = status[k];
  return out as OwnedStatus;
}

export interface EventSpec {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface DecideInput {
  stj: StreamingTrainingJob;
  now: number;
  /** The trainer Jobs this StreamingTrainingJob controls. */
  jobs: readonly Job[];
  /** The pods of those Jobs. */
  pods: readonly Pod[];
  /**
   * Placement on the current cluster, optionally with the tile capped. Called at most once per
   * decide(), and what it throws goes through: the reconcile throws when the sizings of that
   * placement are not planned yet, plans them off the event loop and decides again.
   */
  place(maxTile?: number): Placement;
  /** The tile to retry with after an out-of-memory exit; undefined at the minimum. May throw SizingError. */
  smallerTile(tile: number): number | undefined;
  /** Whether a GPU class still has nodes that admit this job. */
  classUsable(gpuClass: string): boolean;
}

export interface Decision {
  /** A new trainer Job (attempt) to create, with its ConfigMap and RBAC. */
  create?: Omit<TrainerJobInput, 'stj' | 'settings'>;
  /** Flip spec.suspend of an existing trainer Job. */
  suspendJob?: { name: string; suspend: boolean };
  deleteJobs: string[];
  /** spec.runPolicy.ttlSecondsAfterFinished has passed: delete the StreamingTrainingJob (children follow). */
  deleteStj: boolean;
  status: OwnedStatus;
  events: EventSpec[];
  /** Look again after this long (TTL, waiting for a deletion); undefined: the periodic resync. */
  requeueAfterMs?: number;
}

/** Built up step by step inside decide(). */
class Draft {
  status: OwnedStatus;
  readonly decision: Omit<Decision, 'status' | 'events'> = { deleteJobs: [], deleteStj: false };
  readonly #generation: number;
  readonly #now: number;
  constructor(prev: OwnedStatus, generation: number, now: number) {
    this.status = { ...prev, observedGeneration: generation };
    // A time that cannot be read (edited by hand, or by another writer) would make the deadline
    // and the TTL NaN. Dropped, it is taken again from the Job (startTime) or set to now (completionTime).
    if (parseTime(prev.startTime) === undefined) delete this.status.startTime;
    if (parseTime(prev.completionTime) === undefined) delete this.status.completionTime;
    this.#generation = generation;
    this.#now = now;
  }
  set(
    type: ConditionUpdate['type'],
    status: ConditionUpdate['status'],
    reason: ConditionUpdate['reason'],
    message: string,
  ) {
    this.status.conditions = setCondition(
      this.status.conditions ?? [],
      { type, status, reason, message },
      this.#generation,
      this.#now,
    );
  }
  drop(type: ConditionUpdate['type']) {
    this.status.conditions = (this.status.conditions ?? []).filter((c) => c.type !== type);
  }
  plan(plan: JobPlan | undefined) {
    if (plan) this.status.plan = planStatus(plan);
    else delete this.status.plan;
  }
}

/** The first start is kept once known (earlier attempts' Jobs are deleted). */
function keepStart(d: Draft, startTime: string | undefined): void {
  if (startTime !== undefined && d.status.startTime === undefined) d.status.startTime = startTime;
}

const isTerminal = (s: OwnedStatus) =>
  isTrue(s.conditions, ConditionType.Succeeded) || isTrue(s.conditions, ConditionType.Failed);

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
function wantSuspended(
  stj: StreamingTrainingJob,
  job: Job | undefined,
): { suspend: boolean; bySpec: boolean } {
  if (stj.spec.runPolicy.suspend) return { suspend: true, bySpec: true };
  if (stj.spec.runPolicy.queueName !== undefined)
    return { suspend: job ? job.spec?.suspend === true : true, bySpec: false };
  return { suspend: false, bySpec: false };
}

export function decide(input: DecideInput): Decision {
  const { stj, now } = input;
  const prev = ownedStatus(stj.status);
  const d = new Draft(prev, stj.metadata.generation ?? 0, now);
  if (isTerminal(prev)) {
    finished(input, d);
  } else {
    const { current, stale } = currentJob(input.jobs);
    d.decision.deleteJobs.push(...stale.map((j) => j.metadata.name));
    if (current?.metadata.deletionTimestamp) {
      // Someone deleted the trainer Job; wait until it is gone, then plan afresh.
      d.decision.requeueAfterMs = 5000;
    } else if (!current) fresh(input, d, prev);
    else {
      const obs = observeAttempt(current, input.pods);
      if (obs.outcome.state === 'succeeded') succeed(input, d, obs);
      else if (obs.outcome.state === 'failing')
        d.decision.requeueAfterMs = 1000; // the pod's exit is on its way
      else if (obs.outcome.state === 'failed' && obs.outcome.cause === 'oom') shrink(input, d, obs);
      else if (obs.outcome.state === 'failed')
        fail(input, d, obs, failureReason(obs.outcome.cause), obs.outcome.message, obs.outcome.at);
      else active(input, d, obs);
    }
    if (isTerminal(d.status)) finished(input, d);
    keepRestarts(d, prev);
  }
  return { ...d.decision, status: d.status, events: events(prev, d.status) };
}

/**
 * A restart once counted stays counted. A pod failed by a disruption (a lost node, an eviction) is
 * not in the Job's failed count (the pod failure policy ignores it) and is seen only while the pod
 * exists: the pod garbage collector deletes it right after marking it failed, and the count fell
 * back (1, then 0, on a node that vanished). What the status once showed is carried on, into the
 * next attempt too. A disruption whose pod is gone before the operator saw it is not counted.
 */
function keepRestarts(d: Draft, prev: OwnedStatus): void {
  const counted = prev.restarts ?? 0;
  if (d.status.restarts !== undefined && d.status.restarts < counted) d.status.restarts = counted;
  const create = d.decision.create;
  if (create && create.restartsBefore < counted) d.decision.create = { ...create, restartsBefore: counted };
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
    case 'oom':
      return ConditionReason.OutOfMemory;
    default:
      return ConditionReason.TrainerFailed;
  }
}

/** Terminal: only the TTL is left to act on. */
function finished({ stj, now }: DecideInput, d: Draft): void {
  // A finished job always has a completion time; one that could not be read restarts the TTL.
  d.status.completionTime ??= rfc3339(now);
  const ttl = stj.spec.runPolicy.ttlSecondsAfterFinished;
  const done = parseTime(d.status.completionTime);
  if (ttl === undefined || done === undefined) return;
  const due = done + ttl * 1000;
  if (now >= due) d.decision.deleteStj = true;
  else d.decision.requeueAfterMs = due - now;
}

function unplaceable(d: Draft, p: Extract<Placement, { kind: 'unplaceable' }>, prefix = ''): void {
  d.set(ConditionType.Planned, 'False', ConditionReason[p.reason], prefix + p.message);
  d.status.phase = 'Pending';
  d.plan(undefined);
  d.drop(ConditionType.Running);
}

/** Marks the job as planned on a new attempt and asks for its Job. */
function start(
  input: DecideInput,
  d: Draft,
  o: {
    plan: JobPlan;
    attempt: number;
    tileReductions: number;
    failedPods: number;
    reason: ConditionReason;
    message: string;
  },
): void {
  const { stj, now } = input;
  const left = deadlineLeft(stj, d.status.startTime, now);
  if (left !== undefined && left <= 0) {
    fail(
      input,
      d,
      undefined,
      ConditionReason.DeadlineExceeded,
      `spec.runPolicy.activeDeadlineSeconds (${stj.spec.runPolicy.activeDeadlineSeconds}) passed before the trainer could be restarted`,
    );
    return;
  }
  const { suspend, bySpec } = wantSuspended(stj, undefined);
  d.decision.create = {
    plan: o.plan,
    attempt: o.attempt,
    tileReductions: o.tileReductions,
    restartsBefore: o.failedPods,
    suspend,
    ...(left !== undefined && { activeDeadlineSeconds: left }),
  };
  d.set(ConditionType.Planned, 'True', o.reason, o.message);
  d.plan(o.plan);
  d.status.tileReductions = o.tileReductions;
  d.status.restarts = o.failedPods;
  showActivity(stj, d, suspend ? { state: 'suspended' } : { state: 'starting' }, bySpec, o.failedPods);
}

function fresh(input: DecideInput, d: Draft, prev: OwnedStatus): void {
  // A Job deleted by hand after tile reductions: keep the smaller tile.
  const reductions = prev.tileReductions ?? 0;
  const cap = reductions > 0 ? prev.plan?.tileSize : undefined;
  const p = input.place(cap);
  if (p.kind === 'unplaceable') {
    unplaceable(d, p);
    return;
  }
  const plan = jobPlanOf(p);
  start(input, d, {
    plan,
    attempt: 0,
    tileReductions: reductions,
    failedPods: prev.restarts ?? 0,
    reason: reductions > 0 ? ConditionReason.TileSizeReduced : ConditionReason.PlanFound,
    message: describePlan(plan),
  });
}

function shrink(input: DecideInput, d: Draft, obs: AttemptObservation): void {
  const { stj } = input;
  const max = stj.spec.runPolicy.maxTileReductions;
  const tile = obs.plan?.tileSize;
  if (tile === undefined) {
    fail(
      input,
      d,
      obs,
      ConditionReason.OutOfMemory,
      'the trainer ran out of memory, and its Job carries no readable plan to shrink',
    );
    return;
  }
  if (obs.tileReductions >= max) {
    fail(
      input,
      d,
      obs,
      ConditionReason.TileReductionsExhausted,
      exhaustedMessage(tile, obs.tileReductions, max),
    );
    return;
  }
  let next: number | undefined;
  try {
    next = input.smallerTile(tile);
  } catch (e) {
    if (!(e instanceof SizingError)) throw e;
    fail(input, d, obs, ConditionReason.InvalidSpec, e.message);
    return;
  }
  if (next === undefined) {
    fail(input, d, obs, ConditionReason.OutOfMemory, minimumTileOomMessage(tile));
    return;
  }
  const p = input.place(next);
  keepStart(d, obs.startTime);
  if (p.kind === 'unplaceable') {
    // The failed Job stays (it records the out-of-memory exit) until a placement is found.
    unplaceable(d, p, `re-planning after the trainer ran out of memory at tile ${tile} px: `);
    return;
  }
  const plan = jobPlanOf(p);
  const reductions = obs.tileReductions + 1;
  d.decision.deleteJobs.push(obs.job.metadata.name);
  start(input, d, {
    plan,
    attempt: obs.attempt + 1,
    tileReductions: reductions,
    failedPods: obs.failedPods,
    reason: ConditionReason.TileSizeReduced,
    message: tileReducedMessage(tile, plan.tileSize, reductions, max, plan),
  });
}

function succeed({ now }: DecideInput, d: Draft, obs: AttemptObservation): void {
  d.plan(obs.plan);
  keepStart(d, obs.startTime);
  d.status.tileReductions = obs.tileReductions;
  d.status.restarts = obs.failedPods;
  d.status.completionTime = (obs.outcome as { at?: string }).at ?? rfc3339(now);
  d.status.phase = 'Succeeded';
  d.set(ConditionType.Running, 'False', ConditionReason.TrainingCompleted, 'the trainer finished');
  d.set(
    ConditionType.Succeeded,
    'True',
    ConditionReason.TrainingCompleted,
    'training completed; status.result holds the final metrics',
  );
  if (findCondition(d.status.conditions, ConditionType.Suspended)) d.drop(ConditionType.Suspended);
}

function fail(
  { now }: DecideInput,
  d: Draft,
  obs: AttemptObservation | undefined,
  reason: ConditionReason,
  message: string,
  at?: string,
): void {
  if (obs) {
    d.plan(obs.plan);
    keepStart(d, obs.startTime);
    d.status.tileReductions = obs.tileReductions;
    // The last failed pod is not followed by a restart.
    d.status.restarts = Math.max(0, obs.failedPods - 1);
  }
  const failedAt = obs?.outcome.state === 'failed' ? obs.outcome.at : undefined;
  d.status.completionTime = at ?? failedAt ?? rfc3339(now);
  d.status.phase = 'Failed';
  d.set(ConditionType.Running, 'False', reason, message);
  d.set(ConditionType.Failed, 'True', reason, message);
}

function active(input: DecideInput, d: Draft, obs: AttemptObservation): void {
  const { stj } = input;
  const job = obs.job;
  const { suspend, bySpec } = wantSuspended(stj, job);
  if (suspend !== (job.spec?.suspend === true)) d.decision.suspendJob = { name: job.metadata.name, suspend };
  const plan = obs.plan;
  // A class can vanish (nodes deleted or relabelled) while the pod waits: plan again elsewhere.
  if (obs.outcome.state !== 'running' && plan?.gpuClass !== undefined && !input.classUsable(plan.gpuClass)) {
    const p = input.place(obs.tileReductions > 0 ? plan.tileSize : undefined);
    const lost = `GPU class ${plan.gpuClass} has no node left that admits this job`;
    if (p.kind === 'unplaceable') {
      unplaceable(d, p, `${lost}; `);
      keepStart(d, obs.startTime);
      return;
    }
    const next = jobPlanOf(p);
    d.decision.deleteJobs.push(job.metadata.name);
    d.decision.suspendJob = undefined;
    start(input, d, {
      plan: next,
      attempt: obs.attempt + 1,
      tileReductions: obs.tileReductions,
      failedPods: obs.failedPods,
      reason: ConditionReason.PlanFound,
      message: `${lost}; re-planned: ${describePlan(next)}`,
    });
    return;
  }
  d.plan(plan);
  keepStart(d, obs.startTime);
  d.status.tileReductions = obs.tileReductions;
  d.status.restarts = obs.failedPods;
  const planned = findCondition(d.status.conditions, ConditionType.Planned);
  if (planned?.status !== 'True') {
    const reason = obs.tileReductions > 0 ? ConditionReason.TileSizeReduced : ConditionReason.PlanFound;
    d.set(ConditionType.Planned, 'True', reason, plan ? describePlan(plan) : 'the trainer Job exists');
  } else {
    d.set(ConditionType.Planned, 'True', planned.reason as ConditionReason, planned.message);
  }
  // A Job we are about to resume still says suspended: show it as starting.
  const shown = suspend ? 'suspended' : obs.outcome.state === 'suspended' ? 'starting' : obs.outcome.state;
  showActivity(stj, d, { state: shown }, bySpec, obs.failedPods);
}

/** Phase, Running and Suspended for a Job that is suspended, starting or running. */
function showActivity(
  stj: StreamingTrainingJob,
  d: Draft,
  outcome: { state: string },
  bySpec: boolean,
  failedPods: number,
): void {
  if (outcome.state === 'suspended') {
    d.status.phase = 'Suspended';
    const message = suspendedMessage(stj, bySpec);
    d.set(ConditionType.Suspended, 'True', ConditionReason.Suspended, message);
    d.set(ConditionType.Running, 'False', ConditionReason.Suspended, message);
    return;
  }
  if (isTrue(d.status.conditions, ConditionType.Suspended)) {
    d.set(ConditionType.Suspended, 'False', ConditionReason.Resumed, 'the trainer Job was resumed');
  }
  if (outcome.state === 'running') {
    d.status.phase = 'Running';
    d.set(ConditionType.Running, 'True', ConditionReason.TrainerRunning, 'the trainer pod is running');
  } else {
    d.status.phase = 'Planned';
    if (failedPods > 0) {
      d.set(
        ConditionType.Running,
        'False',
        ConditionReason.TrainerRestarted,
        `waiting for the trainer pod to start again (${failedPods} restart(s) so far)`,
      );
    } else
      d.set(
        ConditionType.Running,
        'False',
        ConditionReason.TrainerStarting,
        'waiting for the trainer pod to start',
      );
  }
}

const WARNING_REASONS: ReadonlySet<string> = new Set([
  ConditionReason.TileSizeReduced,
  ConditionReason.TrainerRestarted,
  ConditionReason.NoGPUWithSufficientMemory,
  ConditionReason.NoGPUNodes,
  ConditionReason.InvalidSpec,
]);

/** One Event per condition that changed status or reason (TrainerStarting is too common to record). */
function events(prev: OwnedStatus, next: OwnedStatus): EventSpec[] {
  const out: EventSpec[] = [];
  for (const c of next.conditions ?? []) {
    const before = findCondition(prev.conditions, c.type as ConditionUpdate['type']);
    if (before && before.status === c.status && before.reason === c.reason) continue;
    if (c.reason === ConditionReason.TrainerStarting) continue;
    if (
      c.type === ConditionType.Running &&
      (isTrue(next.conditions, 'Succeeded') || isTrue(next.conditions, 'Failed'))
    )
      continue;
    const warning = (c.type === ConditionType.Failed && c.status === 'True') || WARNING_REASONS.has(c.reason);
    out.push({ type: warning ? 'Warning' : 'Normal', reason: c.reason, message: c.message });
  }
  return out;
}
