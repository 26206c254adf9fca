// The operator's part of a StreamingTrainingJob's status, computed from what is observed: the
// policy's verdict (controller/policy.ts) and the newest attempt's Job, whose annotations hold the
// facts that outlive earlier Jobs (observe.ts). The previous status is read only for transition
// times (lastTransitionTime, a completionTime already set) and to say Resumed after Suspended.
// Pure; the events are the conditions that changed. Must not import the controller's I/O.

import {
  type Condition,
  ConditionReason,
  ConditionType,
  type Phase,
  type StreamingTrainingJob,
  type StreamingTrainingJobStatus,
} from '../../crds/index.ts';
import { type JobPlan, planStatus } from '../children/job-plan.ts';
import { trainerJobName } from '../children/names.ts';
import { rankLayout } from '../children/ranks.ts';
import type { Suspension, Verdict } from '../controller/policy.ts';
import {
  type ConditionUpdate,
  findCondition,
  isTrue,
  parseTime,
  rfc3339,
  setCondition,
  sortConditions,
} from './conditions.ts';
import { describePlan, specChangePendingMessage, suspendedMessage } from './messages.ts';
import type { AttemptObservation } from './observe.ts';
import { ranksSummary } from './ranks-summary.ts';

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
  | 'distributed'
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
  'distributed',
];

export function ownedStatus(status: StreamingTrainingJobStatus | undefined): OwnedStatus {
  const out: Record<string, unknown> = {};
  for (const k of OWNED) if (status?.[k] !== undefined) out[k] = status[k];
  return out as OwnedStatus;
}

export function isTerminal(s: OwnedStatus): boolean {
  return isTrue(s.conditions, ConditionType.Succeeded) || isTrue(s.conditions, ConditionType.Failed);
}

export interface EventSpec {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** Conditions collected for one status; each keeps its previous lastTransitionTime while its status holds. */
class ConditionSet {
  readonly #prev: readonly Condition[];
  readonly #generation: number;
  readonly #now: number;
  #out: Condition[] = [];
  constructor(prev: readonly Condition[] | undefined, generation: number, now: number) {
    this.#prev = prev ?? [];
    this.#generation = generation;
    this.#now = now;
  }
  set(type: ConditionType, status: ConditionUpdate['status'], reason: string, message: string): void {
    const update = { type, status, reason: reason as ConditionReason, message };
    const [next] = setCondition(
      this.#prev.filter((c) => c.type === type),
      update,
      this.#generation,
      this.#now,
    );
    if (next) this.#out = sortConditions([...this.#out.filter((c) => c.type !== type), next]);
  }
  get list(): Condition[] {
    return this.#out;
  }
}

/** Phase order: a job never moves back in it (Suspended is beside it, not in it). */
function phaseOf(v: {
  terminal?: 'Succeeded' | 'Failed';
  suspended: boolean;
  trainerRan: boolean;
  hasAttempt: boolean;
}): Phase {
  if (v.terminal) return v.terminal;
  if (v.suspended) return 'Suspended';
  if (v.trainerRan) return 'Running';
  return v.hasAttempt ? 'Planned' : 'Pending';
}

/** A time as written, or undefined when it cannot be read (edited by hand or by another writer). */
const readable = (t: string | undefined) => (parseTime(t) !== undefined ? t : undefined);

export function computeStatus(
  stj: StreamingTrainingJob,
  verdict: Exclude<Verdict, { kind: 'finished' } | { kind: 'waiting' }>,
  prev: OwnedStatus,
  now: number,
): OwnedStatus {
  const generation = stj.metadata.generation ?? 0;
  const conds = new ConditionSet(prev.conditions, generation, now);
  const out: OwnedStatus = { observedGeneration: generation };
  const facts = (obs: AttemptObservation | undefined, plan: JobPlan | undefined) => {
    if (plan) out.plan = planStatus(plan);
    const ranks = obs && ranksSummary(stj, obs.job.metadata.creationTimestamp, obs.runningPods);
    if (ranks) out.distributed = ranks.status;
    const start = readable(obs?.startTime);
    if (start !== undefined) out.startTime = start;
    out.tileReductions = obs?.tileReductions ?? 0;
    out.restarts = obs?.failedPods ?? 0;
  };
  const plannedOf = (obs: AttemptObservation) =>
    obs.planned ?? {
      reason: obs.tileReductions > 0 ? ConditionReason.TileSizeReduced : ConditionReason.PlanFound,
      message: obs.plan ? describePlan(obs.plan) : 'the trainer Job exists',
    };
  switch (verdict.kind) {
    case 'unplaceable': {
      const last = verdict.last;
      facts(last, undefined);
      conds.set(ConditionType.Planned, 'False', verdict.reason, verdict.message);
      conds.set(ConditionType.Running, 'False', verdict.reason, verdict.message);
      out.phase = phaseOf({
        suspended: false,
        trainerRan: last?.trainerRan ?? false,
        hasAttempt: last !== undefined,
      });
      break;
    }
    case 'new-attempt': {
      const a = verdict.attempt;
      out.plan = planStatus(a.plan);
      const start = readable(a.firstStart);
      if (start !== undefined) out.startTime = start;
      out.tileReductions = a.tileReductions;
      out.restarts = a.restartsBefore;
      // Nothing of the new attempt has reported yet.
      const ranks = ranksSummary(stj, rfc3339(now), 0);
      if (ranks) out.distributed = ranks.status;
      conds.set(ConditionType.Planned, 'True', a.planned.reason, a.planned.message);
      activity(
        conds,
        stj,
        prev,
        verdict.suspension.suspend ? 'suspended' : 'starting',
        verdict.suspension,
        a.restartsBefore,
        0,
      );
      conds.set(
        ConditionType.SpecApplied,
        'True',
        ConditionReason.SpecCurrent,
        specCurrentMessage(trainerJobName(stj.metadata.name, a.attempt)),
      );
      out.phase = phaseOf({
        suspended: verdict.suspension.suspend,
        trainerRan: a.trainerRan === true,
        hasAttempt: true,
      });
      break;
    }
    case 'active': {
      const { obs, suspension } = verdict;
      facts(obs, obs.plan);
      const p = plannedOf(obs);
      conds.set(ConditionType.Planned, 'True', p.reason, p.message);
      activity(conds, stj, prev, verdict.state, suspension, obs.failedPods, obs.runningPods);
      if (obs.spec) {
        if (verdict.pendingFields.length > 0)
          conds.set(
            ConditionType.SpecApplied,
            'False',
            ConditionReason.SpecChangePending,
            specChangePendingMessage(verdict.pendingFields, obs.job.metadata.name, generation),
          );
        else
          conds.set(
            ConditionType.SpecApplied,
            'True',
            ConditionReason.SpecCurrent,
            specCurrentMessage(obs.job.metadata.name),
          );
      }
      out.phase = phaseOf({ suspended: suspension.suspend, trainerRan: obs.trainerRan, hasAttempt: true });
      break;
    }
    case 'succeeded': {
      const { obs } = verdict;
      facts(obs, obs.plan);
      const p = plannedOf(obs);
      conds.set(ConditionType.Planned, 'True', p.reason, p.message);
      conds.set(ConditionType.Running, 'False', ConditionReason.TrainingCompleted, 'the trainer finished');
      conds.set(
        ConditionType.Succeeded,
        'True',
        ConditionReason.TrainingCompleted,
        'training completed; status.result holds the final metrics',
      );
      out.completionTime = completion(
        obs.outcome.state === 'succeeded' ? obs.outcome.at : undefined,
        prev,
        now,
      );
      out.phase = 'Succeeded';
      break;
    }
    case 'failed': {
      const { obs } = verdict;
      facts(obs, obs?.plan);
      // The last failed pod is not followed by a restart.
      if (obs) out.restarts = Math.max(0, obs.failedPods - 1);
      if (obs) {
        const p = plannedOf(obs);
        conds.set(ConditionType.Planned, 'True', p.reason, p.message);
      }
      conds.set(ConditionType.Running, 'False', verdict.reason, verdict.message);
      conds.set(ConditionType.Failed, 'True', verdict.reason, verdict.message);
      out.completionTime = completion(verdict.at, prev, now);
      out.phase = 'Failed';
      break;
    }
  }
  out.conditions = conds.list;
  return out;
}

/**
 * The status for any verdict: computed, or as it is while something is on its way, or, once
 * terminal, as it was (a finished job always has a completion time; one that cannot be read
 * restarts the TTL).
 */
export function statusFor(
  stj: StreamingTrainingJob,
  verdict: Verdict,
  prev: OwnedStatus,
  now: number,
): OwnedStatus {
  if (verdict.kind === 'waiting') return prev;
  if (verdict.kind === 'finished')
    return readable(prev.completionTime) === undefined ? { ...prev, completionTime: rfc3339(now) } : prev;
  return computeStatus(stj, verdict, prev, now);
}

const specCurrentMessage = (job: string) => `trainer Job ${job} runs the current spec`;

/** When the job finished: the Job's time, else the time the status already shows, else now. */
function completion(at: string | undefined, prev: OwnedStatus, now: number): string {
  return readable(at) ?? (isTerminal(prev) ? readable(prev.completionTime) : undefined) ?? rfc3339(now);
}

/** Running and Suspended for a trainer Job that is suspended, starting or running. */
function activity(
  conds: ConditionSet,
  stj: StreamingTrainingJob,
  prev: OwnedStatus,
  state: 'suspended' | 'starting' | 'running',
  suspension: Suspension,
  failedPods: number,
  runningPods: number,
): void {
  const layout = rankLayout(stj.spec);
  const pods =
    layout.worldSize > 1
      ? {
          running: `${runningPods} of ${layout.replicas} trainer pods are running (${layout.worldSize} ranks)`,
          waiting:
            `waiting for the ${layout.replicas} trainer pods (${layout.worldSize} ranks; ${runningPods} running); ` +
            'each rank waits for its peers up to the peer timeout',
        }
      : undefined;
  if (state === 'suspended') {
    const message = suspendedMessage(stj, suspension.bySpec);
    conds.set(ConditionType.Suspended, 'True', ConditionReason.Suspended, message);
    conds.set(ConditionType.Running, 'False', ConditionReason.Suspended, message);
    return;
  }
  if (findCondition(prev.conditions, ConditionType.Suspended))
    conds.set(ConditionType.Suspended, 'False', ConditionReason.Resumed, 'the trainer Job was resumed');
  if (state === 'running') {
    conds.set(
      ConditionType.Running,
      'True',
      ConditionReason.TrainerRunning,
      pods?.running ?? 'the trainer pod is running',
    );
  } else if (failedPods > 0) {
    conds.set(
      ConditionType.Running,
      'False',
      ConditionReason.TrainerRestarted,
      pods
        ? `${pods.waiting} (${failedPods} restart(s) so far)`
        : `waiting for the trainer pod to start again (${failedPods} restart(s) so far)`,
    );
  } else {
    conds.set(
      ConditionType.Running,
      'False',
      ConditionReason.TrainerStarting,
      pods?.waiting ?? 'waiting for the trainer pod to start',
    );
  }
}

const WARNING_REASONS: ReadonlySet<string> = new Set([
  ConditionReason.TileSizeReduced,
  ConditionReason.TrainerRestarted,
  ConditionReason.NoGPUWithSufficientMemory,
  ConditionReason.NoGPUNodes,
  ConditionReason.InvalidSpec,
  ConditionReason.SpecChangePending,
  ConditionReason.PeersUnavailable,
  ConditionReason.RankFailed,
]);

/** One Event per condition that changed status or reason (TrainerStarting is too common to record). */
export function statusEvents(prev: OwnedStatus, next: OwnedStatus): EventSpec[] {
  const out: EventSpec[] = [];
  for (const c of next.conditions ?? []) {
    const before = findCondition(prev.conditions, c.type as ConditionType);
    if (before && before.status === c.status && before.reason === c.reason) continue;
    if (c.reason === ConditionReason.TrainerStarting || c.reason === ConditionReason.SpecCurrent) continue;
    // Running's reason repeats Planned's or Failed's, which have their own events.
    if (
      c.type === ConditionType.Running &&
      (isTerminal(next) || !isTrue(next.conditions, ConditionType.Planned))
    )
      continue;
    const warning = (c.type === ConditionType.Failed && c.status === 'True') || WARNING_REASONS.has(c.reason);
    out.push({ type: warning ? 'Warning' : 'Normal', reason: c.reason, message: c.message });
  }
  return out;
}
