// Reconcile of one StreamingTrainingJob key: load → observe → decide (plan any sizing the policy asks
// for, off the event loop) → act → compute and write the status → record events → requeue. The policy
// (controller/policy.ts) and the status (status/compute-status.ts) are pure; this shell reads the
// caches and performs the writes.
//
// Guarantees: running it twice changes nothing the second time (children have fixed names, are
// applied server-side under one field manager, and the status is written only when it differs).
// It never branches on the event that caused it. Assumptions: caches may lag behind the API
// server; expectations bridge the gap after our own writes, and a 409 on the status write (the
// cached resourceVersion is old) retries on fresher data. Caveats: the operator only ever writes
// the status fields it owns; progress, lastCheckpoint and result belong to the trainer.

import { ConditionReason, ConditionType, type StreamingTrainingJob } from '../../crds/index.ts';
import { ANNOTATION } from '../children/names.ts';
import { managedElsewhere } from '../children/pod-customisation.ts';
import { buildRanksService, isDistributed } from '../children/ranks.ts';
import { buildTrainerJob, type TrainerSettings } from '../children/trainer-job.ts';
import {
  buildJobConfigMap,
  buildTrainerRole,
  buildTrainerRoleBinding,
  buildTrainerServiceAccount,
} from '../children/trainer-rbac.ts';
import type { AsyncSizer } from '../cluster/async-sizer.ts';
import { buildInventory, type GpuClass } from '../cluster/gpu-inventory.ts';
import type { GpuMemoryTable } from '../cluster/gpu-memory-table.ts';
import { freeGpus, gpuUsage } from '../cluster/placement.ts';
import {
  type Sizing,
  SizingError,
  sizingKey,
  type TileLimits,
  tileLimitsOf,
} from '../cluster/tile-sizing.ts';
import type { EventRecorder } from '../events.ts';
import { applyObject, applyStjStatus, deleteObject, mergePatch } from '../kube/api.ts';
import { ApiError, isNotFound, type KubeClient } from '../kube/client.ts';
import { RESOURCES } from '../kube/resources.ts';
import { controllerOf, type Job, type KubeObject, type Node, type Pod, splitKey } from '../kube/types.ts';
import { queueRecheckMs, withQueueDiagnosis } from '../kueue.ts';
import type { Logger } from '../log.ts';
import type { ClassSnapshot, OperatorMetrics } from '../metrics.ts';
import {
  isTerminal,
  type OwnedStatus,
  ownedStatus,
  statusEvents,
  statusFor,
} from '../status/compute-status.ts';
import { setCondition } from '../status/conditions.ts';
import { tenantPolicyRefusal } from '../tenant-policy.ts';
import type { Clock } from './clock.ts';
import type { Expectations } from './expectations.ts';
import type { Store } from './informer.ts';
import { type AttemptInput, decide, type PolicyInput, type PolicyResult } from './policy.ts';

export type Action = { kind: 'requeue'; afterMs: number } | { kind: 'await-change' };

/** A reconcile error that retrying cannot fix: counted and logged, then the key waits for a change. */
export class TerminalError extends Error {
  override name = 'TerminalError';
}

export interface Stores {
  stjs: Store<StreamingTrainingJob & KubeObject>;
  jobs: Store<Job>;
  pods: Store<Pod>;
  nodes: Store<Node>;
}

export interface ReconcileConfig {
  fieldManager: string;
  trainer: TrainerSettings;
  memoryTable: GpuMemoryTable;
  productLabels?: readonly string[];
  /** Requeue of a healthy job, insurance against missed events. */
  resyncMs: number;
  /** The tenant policy's ConfigMap, re-checked before a job's children are created. */
  tenantPolicy?: { namespace: string; name: string };
}

export interface ReconcileContext {
  client: KubeClient;
  stores: Stores;
  clock: Clock;
  log: Logger;
  metrics: OperatorMetrics;
  events: EventRecorder;
  expectations: Expectations;
  /** Plans tiles off the event loop, memoised across jobs (cluster/async-sizer.ts). */
  sizer: AsyncSizer;
  config: ReconcileConfig;
}

/** Keys and JSON with sorted keys, for comparing statuses regardless of field order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

export function inventoryOf(ctx: Pick<ReconcileContext, 'stores' | 'config'>) {
  return buildInventory(ctx.stores.nodes.list(), {
    memoryTable: ctx.config.memoryTable,
    ...(ctx.config.productLabels && { productLabels: ctx.config.productLabels }),
  });
}

/** GPU classes for the metrics, with free GPUs counted from the trainer pods in the cache. */
export function classSnapshots(ctx: Pick<ReconcileContext, 'stores' | 'config'>): ClassSnapshot[] {
  const usage = gpuUsage(ctx.stores.pods.list());
  return inventoryOf(ctx).classes.map((c: GpuClass) => ({
    name: c.name,
    product: c.product,
    memoryBytes: c.memoryBytes,
    nodes: new Set(c.offers.map((o) => o.node)).size,
    allocatable: c.offers.reduce((n, o) => n + o.allocatable, 0),
    free: freeGpus(c, usage),
  }));
}

export async function reconcile(key: string, ctx: ReconcileContext): Promise<Action> {
  const { namespace, name } = splitKey(key);
  const stj = ctx.stores.stjs.get(key);
  if (!stj) {
    // Deleted: owner references let the garbage collector remove the children.
    ctx.expectations.forget(key);
    ctx.metrics.forgetJob(namespace ?? '', name);
    return { kind: 'await-change' };
  }
  if (stj.metadata.deletionTimestamp) return { kind: 'await-change' };
  const elsewhere = managedElsewhere(stj.spec);
  if (elsewhere !== undefined) {
    // spec.runPolicy.managedBy: another controller (e.g. MultiKueue) runs it; no children, no status.
    ctx.log.debug(`skipped: spec.runPolicy.managedBy is ${elsewhere}`, { namespace, name });
    return { kind: 'await-change' };
  }
  const log = ctx.log.child({ namespace, name });

  // Observe: the Jobs this job controls and their pods, from the caches.
  const jobs = ctx.stores.jobs
    .list()
    .filter((j) => j.metadata.namespace === namespace && controllerOf(j)?.uid === stj.metadata.uid);
  const jobNames = new Set(jobs.map((j) => j.metadata.name));
  const waiting = ctx.expectations.pending(key, { jobNames, version: stj.metadata.resourceVersion });
  if (waiting) {
    log.debug(waiting);
    return { kind: 'requeue', afterMs: 1000 };
  }
  const allPods = ctx.stores.pods.list();
  const pods = allPods.filter(
    (p) =>
      p.metadata.namespace === namespace &&
      jobNames.has(p.metadata.labels?.['batch.kubernetes.io/job-name'] ?? ''),
  );
  const inventory = inventoryOf(ctx);
  const usage = gpuUsage(allPods);
  const now = ctx.clock.now();
  const prev = ownedStatus(stj.status);
  const result = await decideWithSizings(key, ctx, prev, {
    stj,
    now,
    jobs,
    pods,
    inventory,
    usage,
    sizings: new Map(),
    tileLimits: tileLimitsFor(stj),
  });
  const gone = await act(stj, result, prev, ctx, log);
  if (gone) return { kind: 'await-change' };
  const afterMs = result.requeueAfterMs ?? ctx.config.resyncMs;
  return { kind: 'requeue', afterMs: Math.min(afterMs, queueRecheckMs(stj) ?? afterMs) };
}

function tileLimitsFor(stj: StreamingTrainingJob): TileLimits | SizingError {
  try {
    return tileLimitsOf(stj.spec);
  } catch (e) {
    if (e instanceof SizingError) return e;
    throw e;
  }
}

type Decided = Extract<PolicyResult, { kind: 'decided' }>;

/**
 * decide() with the sizings its placement needs. Which placement the policy asks for (a cap after an
 * out-of-memory exit, the cap of earlier reductions) only it knows; so it says which sizings it misses
 * (needs-sizings), they are planned off the event loop (ctx.sizer) or taken from its memo, and it
 * runs again on the same inputs. It asks for one placement per run, so the second pass finds
 * everything; sizings this reconcile waited for are kept here, so that an eviction from the shared
 * memo cannot make it wait again.
 */
async function decideWithSizings(
  key: string,
  ctx: ReconcileContext,
  prev: OwnedStatus,
  input: PolicyInput,
): Promise<Decided> {
  const known = new Map<string, Sizing | SizingError>();
  const terminal = isTerminal(prev);
  for (let pass = 1; ; pass++) {
    const result = decide({ ...input, sizings: known }, terminal, prev.completionTime);
    if (result.kind === 'decided') return result;
    if (pass >= 3) throw new Error(`internal: decide() still needs sizings after ${pass} passes`);
    await Promise.all(
      result.requests.map(async (req) => {
        let v = ctx.sizer.peek(req);
        if (v === undefined) {
          try {
            v = await ctx.sizer.size(req, key);
          } catch (err) {
            // Memoised too: planPlacement turns it into Planned=False InvalidSpec.
            if (!(err instanceof SizingError)) throw err;
            v = err;
          }
        }
        known.set(sizingKey(req), v);
      }),
    );
  }
}

/** Carries a decision out and writes the status. Returns true when the StreamingTrainingJob turned out to be gone. */
async function act(
  stj: StreamingTrainingJob,
  d: Decided,
  prev: OwnedStatus,
  ctx: ReconcileContext,
  log: Logger,
): Promise<boolean> {
  const { namespace, name } = stj.metadata;
  const computed = statusFor(stj, d.verdict, prev, ctx.clock.now());
  // QueueAvailable is the Kueue probe's condition (kueue.ts), not the policy's.
  const queued = await withQueueDiagnosis(ctx.client, stj, computed, ctx.clock.now());
  const status = queued.status;
  let events = [...statusEvents(prev, computed), ...queued.events];
  for (const action of d.actions) {
    switch (action.kind) {
      case 'create-attempt':
        await createAttempt(stj, action.attempt, { prev, computed }, ctx, log);
        break;
      case 'set-suspend':
        await patchJob(stj, action.job, { spec: { suspend: action.suspend } }, ctx);
        log.info(`${action.suspend ? 'suspended' : 'resumed'} trainer Job ${action.job}`);
        break;
      case 'record-restarts':
        await patchJob(
          stj,
          action.job,
          { metadata: { annotations: { [ANNOTATION.restartsSeen]: String(action.restarts) } } },
          ctx,
        );
        break;
      case 'delete-job':
        if (await deleteObject(ctx.client, RESOURCES.job, namespace, action.job))
          log.info(`deleted trainer Job ${action.job}`);
        break;
      case 'delete-stj':
        break; // last, after the status
    }
  }
  if (canonical(status) !== canonical(prev)) {
    if (!(await writeStatus(stj, status, ctx))) return true;
  } else events = [];
  for (const e of events) await ctx.events.record(stj, e.type, e.reason, e.message);
  if (d.actions.some((a) => a.kind === 'delete-stj')) {
    await deleteObject(ctx.client, RESOURCES.stj, namespace, name);
    log.info(
      `deleted: spec.runPolicy.ttlSecondsAfterFinished (${stj.spec.runPolicy.ttlSecondsAfterFinished} s) has passed`,
    );
    return true;
  }
  ctx.metrics.setJob(namespace ?? '', name, status.plan);
  const ranks = status.distributed;
  ctx.metrics.setRanks(
    namespace ?? '',
    name,
    ranks && {
      worldSize: ranks.worldSize ?? 0,
      ...(ranks.imagesPerSecond !== undefined && { imagesPerSecond: ranks.imagesPerSecond }),
      ...(ranks.slowestRank !== undefined && { slowestRank: ranks.slowestRank }),
      ranks: (stj.status?.ranks ?? []).filter((r) => r.rank < (ranks.worldSize ?? 0)),
    },
  );
  return false;
}

/** Merge-patches a trainer Job; one deleted meanwhile is left to the next reconcile. */
async function patchJob(stj: StreamingTrainingJob, job: string, patch: object, ctx: ReconcileContext) {
  try {
    await mergePatch(ctx.client, RESOURCES.job, stj.metadata.namespace, job, patch, ctx.config.fieldManager);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

/**
 * Creates a new attempt's children, after the tenant policy's re-check. A refusal (by the policy, the
 * API server or an admission webhook) becomes Planned=False and a terminal error, not a retry loop.
 */
async function createAttempt(
  stj: StreamingTrainingJob,
  attempt: AttemptInput,
  status: { prev: OwnedStatus; computed: OwnedStatus },
  ctx: ReconcileContext,
  log: Logger,
): Promise<void> {
  const key = `${stj.metadata.namespace}/${stj.metadata.name}`;
  const policyRefusal = await tenantPolicyRefusal(ctx.client, ctx.config.tenantPolicy, stj);
  if (policyRefusal !== undefined) {
    await writeStatus(
      stj,
      refused(status.computed, policyRefusal, stj, ctx.clock.now(), ConditionReason.PolicyViolation),
      ctx,
    );
    await ctx.events.record(stj, 'Warning', ConditionReason.PolicyViolation, policyRefusal);
    throw new TerminalError(policyRefusal);
  }
  const job = buildTrainerJob({ stj, ...attempt, settings: ctx.config.trainer });
  try {
    for (const child of [
      buildJobConfigMap(stj),
      buildTrainerServiceAccount(stj),
      buildTrainerRole(stj),
      buildTrainerRoleBinding(stj),
      // Before the Job: its pods' host names resolve only through the Service.
      ...(isDistributed(stj.spec) ? [buildRanksService(stj)] : []),
      job,
    ]) {
      await applyObject(ctx.client, child, ctx.config.fieldManager);
    }
  } catch (e) {
    if (!(e instanceof ApiError) || (e.status !== 400 && e.status !== 422)) throw e;
    const message = `the API server refused the trainer Job: ${e.message}`;
    await writeStatus(stj, refused(status.computed, message, stj, ctx.clock.now()), ctx);
    await ctx.events.record(stj, 'Warning', ConditionReason.InvalidSpec, message);
    throw new TerminalError(message);
  }
  ctx.expectations.expectJob(key, job.metadata?.name as string);
  if (attempt.tileReductions > (status.prev.tileReductions ?? 0)) {
    ctx.metrics.tileReductions.inc({ namespace: stj.metadata.namespace });
  }
  log.info(`created trainer Job ${job.metadata?.name}`, {
    tileSize: attempt.plan.tileSize,
    gpuClass: attempt.plan.gpuClass,
    attempt: attempt.attempt,
  });
}

/** Writes the operator's status fields; false when the StreamingTrainingJob is gone (404). */
async function writeStatus(
  stj: StreamingTrainingJob,
  status: OwnedStatus,
  ctx: ReconcileContext,
): Promise<boolean> {
  try {
    await applyStjStatus(
      ctx.client,
      {
        namespace: stj.metadata.namespace as string,
        name: stj.metadata.name,
        ...(stj.metadata.resourceVersion !== undefined && { resourceVersion: stj.metadata.resourceVersion }),
      },
      status,
      ctx.config.fieldManager,
    );
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
  ctx.expectations.expectNewVersion(
    `${stj.metadata.namespace}/${stj.metadata.name}`,
    stj.metadata.resourceVersion,
  );
  return true;
}

/**
 * The status of a new attempt whose children were refused: no plan, Planned and Running False with
 * the refusal; a trainer that ran before keeps the phase Running (it never goes back).
 */
function refused(
  computed: OwnedStatus,
  message: string,
  stj: StreamingTrainingJob,
  now: number,
  reason: ConditionReason = ConditionReason.InvalidSpec,
): OwnedStatus {
  const { plan: _plan, ...rest } = computed;
  return {
    ...rest,
    phase: computed.phase === 'Running' ? 'Running' : 'Pending',
    conditions: [ConditionType.Planned, ConditionType.Running].reduce(
      (conditions, type) =>
        setCondition(
          conditions,
          { type, status: 'False', reason, message },
          stj.metadata.generation ?? 0,
          now,
        ),
      (computed.conditions ?? []).filter((c) => c.type !== ConditionType.SpecApplied),
    ),
  };
}
