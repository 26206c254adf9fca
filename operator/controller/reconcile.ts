// Reconcile of one StreamingTrainingJob key: load → observe → decide → ensure children → write
// status → record events → requeue. The decision is pure (status/decide.ts); this shell reads the
// caches and performs the writes.
//
// Guarantees: running it twice changes nothing the second time (children have fixed names, are
// applied server-side under one field manager, and the status is written only when it differs).
// It never branches on the event that caused it. Assumptions: caches may lag behind the API
// server; expectations bridge the gap after our own writes, and a 409 on the status write (the
// cached resourceVersion is old) retries on fresher data. Caveats: the operator only ever writes
// the status fields it owns; progress, lastCheckpoint and result belong to the trainer.

import { ConditionReason, ConditionType, type StreamingTrainingJob } from '../../crds/index.ts';
import { managedElsewhere } from '../children/pod-customisation.ts';
import { buildTrainerJob, type TrainerSettings } from '../children/trainer-job.ts';
import {
  buildJobConfigMap,
  buildTrainerRole,
  buildTrainerRoleBinding,
  buildTrainerServiceAccount,
} from '../children/trainer-rbac.ts';
import type { AsyncSizer } from '../cluster/async-sizer.ts';
import { buildInventory, type GpuClass, type Inventory } from '../cluster/gpu-inventory.ts';
import type { GpuMemoryTable } from '../cluster/gpu-memory-table.ts';
import {
  admits,
  freeGpus,
  type GpuUsage,
  gpuUsage,
  planPlacement,
  sizingRequests,
} from '../cluster/placement.ts';
import {
  type Sizing,
  SizingError,
  type SizingRequest,
  sizingKey,
  smallerTile,
} from '../cluster/tile-sizing.ts';
import type { EventRecorder } from '../events.ts';
import { applyObject, applyStjStatus, deleteObject, mergePatch } from '../kube/api.ts';
import { ApiError, isNotFound, type KubeClient } from '../kube/client.ts';
import { RESOURCES } from '../kube/resources.ts';
import { controllerOf, type Job, type KubeObject, type Node, type Pod, splitKey } from '../kube/types.ts';
import { withQueueDiagnosis } from '../kueue.ts';
import type { Logger } from '../log.ts';
import type { ClassSnapshot, OperatorMetrics } from '../metrics.ts';
import { setCondition } from '../status/conditions.ts';
import { type DecideInput, type Decision, decide, type OwnedStatus, ownedStatus } from '../status/decide.ts';
import { tenantPolicyRefusal } from '../tenant-policy.ts';
import type { Clock } from './clock.ts';
import type { Expectations } from './expectations.ts';
import type { Store } from './informer.ts';

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
  const decision = await decideWithSizings(
    key,
    ctx,
    { inventory, usage },
    {
      stj,
      now: ctx.clock.now(),
      jobs,
      pods,
      smallerTile: (tile) => smallerTile(stj.spec, tile),
      classUsable: (cls) =>
        inventory.classes.some((c) => c.name === cls && c.offers.some((o) => admits(stj.spec, o))),
    },
  );

  const gone = await act(stj, decision, ctx, log);
  if (gone) return { kind: 'await-change' };
  ctx.metrics.setJob(namespace ?? '', name, decision.status.plan);
  return { kind: 'requeue', afterMs: decision.requeueAfterMs ?? ctx.config.resyncMs };
}

/** decide() asked for a placement whose sizings are not planned yet. */
class SizingsPending extends Error {
  override name = 'SizingsPending';
  readonly requests: readonly SizingRequest[];
  constructor(requests: readonly SizingRequest[]) {
    super(`${requests.length} sizing(s) not planned yet`);
    this.requests = requests;
  }
}

/**
 * decide() with the sizings its placement needs. decide() is synchronous and pure, and which
 * placement it asks for (a cap after an out-of-memory exit, the cap of earlier reductions) only it
 * knows; so a placement whose sizings are not memoised yet stops it (SizingsPending), the sizings are
 * planned off the event loop (ctx.sizer), and it runs again on the same inputs. decide() asks for one
 * placement per run, so the second pass finds everything; sizings this reconcile waited for are kept
 * here, so that an eviction from the shared memo cannot make it wait again.
 */
async function decideWithSizings(
  key: string,
  ctx: ReconcileContext,
  cluster: { inventory: Inventory; usage: GpuUsage },
  input: Omit<DecideInput, 'place'>,
): Promise<Decision> {
  const spec = input.stj.spec;
  const known = new Map<string, Sizing | SizingError>();
  const lookup = (req: SizingRequest) => known.get(sizingKey(req)) ?? ctx.sizer.peek(req);
  const size = (req: SizingRequest): Sizing => {
    const v = lookup(req);
    if (v === undefined) throw new Error(`internal: sizing ${sizingKey(req)} was not planned first`);
    if (v instanceof SizingError) throw v;
    return v;
  };
  for (let pass = 1; ; pass++) {
    try {
      return decide({
        ...input,
        place: (maxTile) => {
          const missing = sizingRequests(spec, cluster.inventory, maxTile).filter((r) => !lookup(r));
          if (missing.length > 0) throw new SizingsPending(missing);
          return planPlacement({ spec, ...cluster, size, ...(maxTile !== undefined && { maxTile }) });
        },
      });
    } catch (e) {
      if (!(e instanceof SizingsPending)) throw e;
      if (pass >= 3) throw new Error(`internal: decide() still needs sizings after ${pass} passes`);
      await Promise.all(
        e.requests.map(async (req) => {
          let v: Sizing | SizingError;
          try {
            v = await ctx.sizer.size(req, key);
          } catch (err) {
            // Memoised too: planPlacement turns it into Planned=False InvalidSpec.
            if (!(err instanceof SizingError)) throw err;
            v = err;
          }
          known.set(sizingKey(req), v);
        }),
      );
    }
  }
}

/** Carries a decision out. Returns true when the StreamingTrainingJob turned out to be gone. */
async function act(
  stj: StreamingTrainingJob,
  d: Decision,
  ctx: ReconcileContext,
  log: Logger,
): Promise<boolean> {
  const key = `${stj.metadata.namespace}/${stj.metadata.name}`;
  const fm = ctx.config.fieldManager;
  // QueueAvailable is the Kueue probe's condition (kueue.ts), not decide()'s.
  const queued = await withQueueDiagnosis(ctx.client, stj, d.status, ctx.clock.now());
  let status = queued.status;
  let events = [...d.events, ...queued.events];
  if (d.create) {
    const policyRefusal = await tenantPolicyRefusal(ctx.client, ctx.config.tenantPolicy, stj);
    if (policyRefusal !== undefined) {
      status = refused(d.status, policyRefusal, stj, ctx.clock.now(), ConditionReason.PolicyViolation);
      await writeStatus(stj, status, ctx);
      await ctx.events.record(stj, 'Warning', ConditionReason.PolicyViolation, policyRefusal);
      throw new TerminalError(policyRefusal);
    }
    const job = buildTrainerJob({ stj, ...d.create, settings: ctx.config.trainer });
    try {
      for (const child of [
        buildJobConfigMap(stj),
        buildTrainerServiceAccount(stj),
        buildTrainerRole(stj),
        buildTrainerRoleBinding(stj),
        job,
      ]) {
        await applyObject(ctx.client, child, fm);
      }
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 400 && e.status !== 422)) throw e;
      // The API server (or an admission webhook) refuses what we built from this spec: a condition, not a retry loop.
      const message = `the API server refused the trainer Job: ${e.message}`;
      status = refused(d.status, message, stj, ctx.clock.now());
      await writeStatus(stj, status, ctx);
      await ctx.events.record(stj, 'Warning', ConditionReason.InvalidSpec, message);
      throw new TerminalError(message);
    }
    ctx.expectations.expectJob(key, job.metadata?.name as string);
    if (d.create.tileReductions > (stj.status?.tileReductions ?? 0)) {
      ctx.metrics.tileReductions.inc({ namespace: stj.metadata.namespace });
    }
    log.info(`created trainer Job ${job.metadata?.name}`, {
      tileSize: d.create.plan.tileSize,
      gpuClass: d.create.plan.gpuClass,
      attempt: d.create.attempt,
    });
  }
  if (d.suspendJob) {
    try {
      await mergePatch(
        ctx.client,
        RESOURCES.job,
        stj.metadata.namespace,
        d.suspendJob.name,
        { spec: { suspend: d.suspendJob.suspend } },
        fm,
      );
      log.info(`${d.suspendJob.suspend ? 'suspended' : 'resumed'} trainer Job ${d.suspendJob.name}`);
    } catch (e) {
      // Deleted meanwhile: the next reconcile sees that.
      if (!isNotFound(e)) throw e;
    }
  }
  for (const name of d.deleteJobs) {
    if (await deleteObject(ctx.client, RESOURCES.job, stj.metadata.namespace, name))
      log.info(`deleted trainer Job ${name}`);
  }
  if (canonical(status) !== canonical(ownedStatus(stj.status))) {
    if (!(await writeStatus(stj, status, ctx))) return true;
  } else events = [];
  for (const e of events) await ctx.events.record(stj, e.type, e.reason, e.message);
  if (d.deleteStj) {
    await deleteObject(ctx.client, RESOURCES.stj, stj.metadata.namespace, stj.metadata.name);
    log.info(
      `deleted: spec.runPolicy.ttlSecondsAfterFinished (${stj.spec.runPolicy.ttlSecondsAfterFinished} s) has passed`,
    );
    return true;
  }
  return false;
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

function refused(
  prev: OwnedStatus,
  message: string,
  stj: StreamingTrainingJob,
  now: number,
  reason: ConditionReason = ConditionReason.InvalidSpec,
): OwnedStatus {
  const { plan: _plan, ...rest } = prev;
  return {
    ...rest,
    phase: 'Pending',
    conditions: setCondition(
      (prev.conditions ?? []).filter((c) => c.type !== ConditionType.Running),
      { type: ConditionType.Planned, status: 'False', reason, message },
      stj.metadata.generation ?? 0,
      now,
    ),
  };
}
