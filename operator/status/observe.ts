// What the trainer Jobs and Pods of a StreamingTrainingJob say, read as plain facts: which attempt
// is current, whether it is suspended, starting, running, done or failed (and why: the trainer's
// out-of-memory exit, an invalid manifest, a full checkpoint volume, backoffLimit, the deadline),
// and how often the trainer was restarted. Causes come from fields (the Job condition's reason,
// the trainer's exit code), never from the wording of a Kubernetes message. The facts that outlive a
// deleted Job (tile reductions, restarts, first start, that the trainer ran, why the attempt was
// planned, the spec it was built from) are annotations of the newest attempt's Job. Pure.

import { type AttemptSpec, parseAttemptSpec } from '../children/attempt-spec.ts';
import { type JobPlan, parseJobPlan } from '../children/job-plan.ts';
import { ANNOTATION, LABEL, TRAINER_CONTAINER } from '../children/names.ts';
import { TRAINER_EXIT } from '../children/trainer-job.ts';
import type { ContainerStateTerminated, Job, JobCondition, Pod } from '../kube/types.ts';
import { exitCodeUnreadableMessage } from './messages.ts';

export type FailureCause =
  | 'oom'
  | 'invalid'
  | 'dataNotFound'
  | 'volumeFull'
  | 'backoff'
  | 'deadline'
  /** A rank of a data-parallel job did not meet its peers in time, or lost one (its exit code 6). */
  | 'peersUnavailable'
  /** A rank of a data-parallel job failed otherwise (a crash, a kill, its pod lost): all ranks restart. */
  | 'rankFailed'
  | 'other';

/** Exit code 6 of `tilestream train` (EXIT.peersUnavailable in trainer/train/exit-codes.ts). */
const PEERS_UNAVAILABLE_EXIT = 6;

export type JobOutcome =
  | { state: 'suspended' }
  | { state: 'starting' }
  | { state: 'running' }
  | { state: 'succeeded'; at: string | undefined }
  | { state: 'failed'; at: string | undefined; cause: FailureCause; message: string }
  /** Failed by the pod failure policy, but the pod cache has not yet caught up with the exit. */
  | { state: 'failing' };

/** Reasons of a batch/v1 Job's Failed condition (k8s.io/api/batch/v1 JobReason*). */
const JOB_REASON = {
  podFailurePolicy: 'PodFailurePolicy',
  deadlineExceeded: 'DeadlineExceeded',
  backoffLimitExceeded: 'BackoffLimitExceeded',
} as const;

export interface AttemptObservation {
  job: Job;
  attempt: number;
  plan: JobPlan | undefined;
  tileReductions: number;
  /** Failed trainer pods of this and earlier attempts (never fewer than the operator once saw). */
  failedPods: number;
  /** The restart count recorded on the Job (ANNOTATION.restartsSeen). */
  restartsSeen: number;
  outcome: JobOutcome;
  /**
   * The first start: of an earlier attempt (carried on this Job), else Job.status.startTime (when the
   * Job controller first ran it unsuspended).
   */
  startTime: string | undefined;
  /** The trainer ran, in this attempt (a pod ran or finished) or an earlier one. */
  trainerRan: boolean;
  /** Why this attempt was planned, as recorded when it was created. */
  planned: { reason: string; message: string } | undefined;
  /** The spec fields the Job was built from; undefined for a Job of an older operator. */
  spec: AttemptSpec | undefined;
  /** Pods of this attempt running now (a data-parallel job's ranks run in them). */
  runningPods: number;
}

function plannedOf(text: string | undefined): AttemptObservation['planned'] {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as { reason?: unknown; message?: unknown };
    return typeof v.reason === 'string' && typeof v.message === 'string'
      ? { reason: v.reason, message: v.message }
      : undefined;
  } catch {
    return undefined;
  }
}

/** A trainer pod of this attempt ran: it runs, or it ended (its container terminated or the pod finished). */
function ranHere(job: Job, own: readonly Pod[]): boolean {
  if ((job.status?.failed ?? 0) > 0 || (job.status?.succeeded ?? 0) > 0) return true;
  return own.some(
    (p) =>
      p.status?.phase === 'Running' ||
      p.status?.phase === 'Succeeded' ||
      (p.status?.phase === 'Failed' && !disrupted(p)) ||
      trainerTermination(p) !== undefined,
  );
}

function intAnnotation(job: Job, key: string): number {
  const v = Number(job.metadata.annotations?.[key]);
  return Number.isInteger(v) && v >= 0 ? v : 0;
}

export function attemptOf(job: Job): number {
  const v = Number(job.metadata.labels?.[LABEL.attempt]);
  return Number.isInteger(v) && v >= 0 ? v : 0;
}

/** The newest attempt's Job and the older ones (to be deleted). */
export function currentJob(jobs: readonly Job[]): { current: Job | undefined; stale: Job[] } {
  const sorted = [...jobs].sort((a, b) => attemptOf(b) - attemptOf(a));
  const [current, ...stale] = sorted;
  return { current, stale };
}

const condition = (job: Job, type: string): JobCondition | undefined =>
  job.status?.conditions?.find((c) => c.type === type && c.status === 'True');

function trainerTermination(pod: Pod): ContainerStateTerminated | undefined {
  const s = pod.status?.containerStatuses?.find((c) => c.name === TRAINER_CONTAINER);
  return s?.state?.terminated ?? s?.lastState?.terminated;
}

const disrupted = (pod: Pod) =>
  pod.status?.phase === 'Failed' &&
  (pod.status.conditions ?? []).some((c) => c.type === 'DisruptionTarget' && c.status === 'True');

/** The trainer Job of a data-parallel job: an Indexed Job whose first failed rank fails the attempt. */
export const isRankJob = (job: Job): boolean => job.spec?.completionMode === 'Indexed';

/** `pod <name> (replica <i>)`, from the Indexed Job's completion-index annotation. */
function podName(pod: Pod): string {
  const index = pod.metadata.annotations?.['batch.kubernetes.io/job-completion-index'];
  return `pod ${pod.metadata.name}${index !== undefined ? ` (replica ${index})` : ''}`;
}

/**
 * Why an attempt of a data-parallel job failed. Its Job fails on the first rank that exits non-zero
 * (FailJob) or fails without an exit code (backoffLimit 0), and the Job controller then stops the
 * others (exit 143 or no exit); so the cause is the first failed rank's, by finish time. Exits that
 * no retry can fix keep their single-rank causes, wherever they are.
 */
function rankFailure(job: Job, failed: JobCondition, pods: readonly Pod[]): JobOutcome {
  const at = failed.lastTransitionTime ?? job.status?.completionTime;
  if (failed.reason === JOB_REASON.deadlineExceeded)
    return { state: 'failed', at, cause: 'deadline', message: failed.message ?? 'the deadline passed' };
  const ended = pods
    .map((pod) => ({ pod, t: trainerTermination(pod) }))
    .filter((x): x is { pod: Pod; t: ContainerStateTerminated } => x.t !== undefined && x.t.exitCode !== 0)
    .sort((a, b) => (a.t.finishedAt ?? '').localeCompare(b.t.finishedAt ?? ''));
  const fatal: [number, FailureCause][] = [
    [TRAINER_EXIT.outOfMemory, 'oom'],
    [TRAINER_EXIT.invalidInput, 'invalid'],
    [TRAINER_EXIT.dataNotFound, 'dataNotFound'],
    [TRAINER_EXIT.checkpointVolumeFull, 'volumeFull'],
  ];
  let found: { pod: Pod; t: ContainerStateTerminated; cause: FailureCause } | undefined;
  for (const [code, cause] of fatal) {
    const x = ended.find((e) => e.t.exitCode === code);
    if (x) {
      found = { ...x, cause };
      break;
    }
  }
  if (!found) {
    // The first rank to fail is the cause; the ranks stopped after it exit 143 or lose their peers (6).
    const first = ended.find((e) => e.t.exitCode !== TRAINER_EXIT.stopped) ?? ended[0];
    if (first)
      found = {
        ...first,
        cause: first.t.exitCode === PEERS_UNAVAILABLE_EXIT ? 'peersUnavailable' : 'rankFailed',
      };
  }
  if (!found) {
    // A pod failed without an exit code (its node lost, deleted), or the pod cache lags: wait for a
    // terminated rank while a pod still shows running, then blame the Job's own message.
    if (pods.some((p) => p.status?.phase === 'Running' && !p.metadata.deletionTimestamp))
      return { state: 'failing' };
    return {
      state: 'failed',
      at,
      cause: 'rankFailed',
      message: `a rank's pod failed without an exit code: ${failed.message ?? failed.reason ?? 'the Job failed'}`,
    };
  }
  const { pod, t, cause } = found;
  const what =
    cause === 'peersUnavailable'
      ? `a rank in ${podName(pod)} exited with code 6: a peer did not arrive within the peer timeout, or was lost during a collective`
      : `a rank in ${podName(pod)} exited with code ${t.exitCode}${t.reason && t.reason !== 'Error' ? ` (${t.reason})` : ''}`;
  const said = t.message?.trim();
  return { state: 'failed', at, cause, message: said ? `${what}; trainer: ${said}` : what };
}

/** Why a failed Job failed, from its condition's reason and the exit codes of its pods. */
function failure(job: Job, failed: JobCondition, pods: readonly Pod[]): JobOutcome {
  if (isRankJob(job)) return rankFailure(job, failed, pods);
  const exits = pods
    .map((p) => trainerTermination(p))
    .filter((t): t is ContainerStateTerminated => t !== undefined && t.exitCode !== 0);
  const withCode = (code: number) => exits.find((t) => t.exitCode === code);
  const oom = withCode(TRAINER_EXIT.outOfMemory);
  const invalid = withCode(TRAINER_EXIT.invalidInput);
  const full = withCode(TRAINER_EXIT.checkpointVolumeFull);
  const noData = withCode(TRAINER_EXIT.dataNotFound);
  let cause: FailureCause;
  let detail: ContainerStateTerminated | undefined;
  let summary = failed.message ?? failed.reason ?? 'the Job failed';
  if (failed.reason === JOB_REASON.deadlineExceeded) cause = 'deadline';
  else if (failed.reason === JOB_REASON.backoffLimitExceeded) {
    cause = 'backoff';
    detail = exits[exits.length - 1];
  } else if (oom) {
    cause = 'oom';
    detail = oom;
  } else if (invalid) {
    cause = 'invalid';
    detail = invalid;
  } else if (noData) {
    cause = 'dataNotFound';
    detail = noData;
  } else if (full) {
    cause = 'volumeFull';
    detail = full;
  } else if (failed.reason === JOB_REASON.podFailurePolicy) {
    // A FailJob rule of the trainer Job matched, so the trainer exited 2, 3, 4 or 5, and only its pod
    // says which. A pod still shown running means the pod cache lags behind the Job's: wait.
    if (pods.some((p) => !trainerTermination(p) && !p.metadata.deletionTimestamp))
      return { state: 'failing' };
    cause = 'other';
    summary = exitCodeUnreadableMessage(job.metadata.name);
  } else {
    cause = 'other';
    detail = exits[exits.length - 1];
  }
  const parts = [summary];
  const said = detail?.message?.trim();
  if (said) parts.push(`trainer: ${said}`);
  return {
    state: 'failed',
    at: failed.lastTransitionTime ?? job.status?.completionTime,
    cause,
    message: parts.join('; '),
  };
}

export function observeAttempt(job: Job, pods: readonly Pod[]): AttemptObservation {
  const own = pods.filter((p) => p.metadata.labels?.['batch.kubernetes.io/job-name'] === job.metadata.name);
  const complete = condition(job, 'Complete');
  const failed = condition(job, 'Failed');
  let outcome: JobOutcome;
  if (complete)
    outcome = { state: 'succeeded', at: job.status?.completionTime ?? complete.lastTransitionTime };
  else if (failed) outcome = failure(job, failed, own);
  else if (job.spec?.suspend) outcome = { state: 'suspended' };
  else if (own.some((p) => p.status?.phase === 'Running' && !p.metadata.deletionTimestamp))
    outcome = { state: 'running' };
  else if (own.some((p) => p.status?.phase === 'Succeeded' && !p.metadata.deletionTimestamp))
    // The pod finished before the Job controller marked the Job Complete: still running, not starting.
    outcome = { state: 'running' };
  else outcome = { state: 'starting' };
  const annotations = job.metadata.annotations ?? {};
  const restartsSeen = intAnnotation(job, ANNOTATION.restartsSeen);
  // A data-parallel attempt fails as a whole: one restart per failed attempt, however many ranks it stopped.
  const counted = isRankJob(job)
    ? intAnnotation(job, ANNOTATION.restartsBefore) + (failed ? 1 : 0)
    : intAnnotation(job, ANNOTATION.restartsBefore) +
      (job.status?.failed ?? 0) +
      own.filter(disrupted).length;
  return {
    job,
    attempt: attemptOf(job),
    plan: parseJobPlan(annotations[ANNOTATION.plan]),
    tileReductions: intAnnotation(job, ANNOTATION.tileReductions),
    failedPods: Math.max(counted, restartsSeen),
    restartsSeen,
    outcome,
    startTime: annotations[ANNOTATION.firstStart] ?? job.status?.startTime,
    trainerRan: annotations[ANNOTATION.trainerRan] === 'true' || ranHere(job, own),
    planned: plannedOf(annotations[ANNOTATION.planned]),
    spec: parseAttemptSpec(annotations[ANNOTATION.spec]),
    runningPods: own.filter((p) => p.status?.phase === 'Running' && !p.metadata.deletionTimestamp).length,
  };
}
