// Progress reports to the trainer's own StreamingTrainingJob, when it runs in a pod: a server-side
// apply of status.progress (and the last checkpoint and final result) under the trainer's own field
// manager, so it never fights the operator over the fields the operator owns. The per-job service
// account may patch only this job's status. Outside a cluster this is off, silently.
//
// A rank of a data-parallel job reports its own entry of status.ranks (a list map keyed by rank)
// under a field manager of its own, so the ranks' applies merge instead of replacing each other;
// rank 0 also reports the job's progress, checkpoint and result as a single-rank trainer does.

import { existsSync } from 'node:fs';
import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, type RankStatus, VERSION } from '../../crds/index.ts';

export const TRAINER_FIELD_MANAGER = 'tilestream-trainer';
/** The field manager of rank r ≠ 0 (rank 0 keeps TRAINER_FIELD_MANAGER: it also owns progress). */
export const rankFieldManager = (rank: number): string =>
  rank === 0 ? TRAINER_FIELD_MANAGER : `${TRAINER_FIELD_MANAGER}-rank-${rank}`;
const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** Set by the operator on trainer pods from the downward API, so a rank can say where it runs. */
export const POD_NAME_ENV = 'TILESTREAM_POD_NAME';
export const NODE_NAME_ENV = 'TILESTREAM_NODE_NAME';

/** What a rank says about itself; rank, replicaIndex, localRank, pod, node and lastReportTime are filled in. */
export type RankReport = Partial<
  Pick<RankStatus, 'phase' | 'step' | 'imagesPerSecond' | 'allReduceFraction' | 'message'>
>;

export interface StatusPatch {
  /** Job progress: reported by rank 0 only (ignored on other ranks). */
  progress?: Record<string, unknown>;
  /** Reported by rank 0 only (ignored on other ranks). */
  lastCheckpoint?: Record<string, unknown>;
  /** Reported by rank 0 only (ignored on other ranks). */
  result?: Record<string, unknown>;
  /** This rank's entry of status.ranks (only when the reporter was made for a rank); merged field by field. */
  rank?: RankReport;
}

/** Which rank of a data-parallel job a reporter speaks for (trainer/distributed/topology.ts knows it). */
export interface RankIdentity {
  rank: number;
  replicaIndex: number;
  localRank: number;
}

/** The status a reporter applies for its state: what its field manager owns, nothing else. */
export function statusBody(
  state: StatusPatch,
  rank: RankIdentity | undefined,
  where: { pod?: string; node?: string },
  now: Date,
): Record<string, unknown> {
  const { rank: own, ...job } = state;
  const status: Record<string, unknown> = rank === undefined || rank.rank === 0 ? { ...job } : {};
  if (rank !== undefined) {
    const entry: RankStatus = {
      rank: rank.rank,
      replicaIndex: rank.replicaIndex,
      localRank: rank.localRank,
      ...(where.pod ? { pod: where.pod } : {}),
      ...(where.node ? { node: where.node } : {}),
      ...own,
      lastReportTime: now.toISOString(),
    };
    status.ranks = [entry];
  }
  return status;
}

export interface StatusReporter {
  /** Merges a patch into the reported state; sends at most one request per interval (the newest state). */
  report(patch: StatusPatch): void;
  /** Sends the reported state now, once, if it changed since it last reached the API server. */
  flush(): Promise<void>;
  /**
   * Sends the final state, trying again after transient failures (no answer, 429, 5xx: an API server
   * restarting, etcd down) until it lands or `timeoutMs` has passed. Resolves whether it landed.
   */
  finish(timeoutMs?: number): Promise<boolean>;
}

/** One report request gives up after this long (a hung API server must not hold the trainer). */
export const REPORT_REQUEST_TIMEOUT_MS = 10_000;
/** How long the final report keeps trying by default. */
export const FINISH_TIMEOUT_MS = 60_000;

/** Whether a failed request may succeed if sent again: no answer at all (or in time), 429 or a server error. */
function transient(e: unknown): boolean {
  if (!(e instanceof ApiException)) return true;
  return e.code === 429 || e.code >= 500;
}

/**
 * A reporter for job `namespace/name`, or undefined when there are no credentials: in a pod the
 * service account; for tests, the kubeconfig named by TILESTREAM_STATUS_KUBECONFIG. A developer's
 * own KUBECONFIG is deliberately not used, so a local run never patches a cluster.
 *
 * Every request applies the whole state reported so far, not only what changed: a server-side
 * apply removes the fields its manager owned but left out, so applying only the newest patch
 * dropped status.progress and lastCheckpoint from the job (e.g. when the final result came alone).
 * A failed request leaves the state unsent, and the next one carries it.
 */
export function createStatusReporter(
  job: { namespace: string; name: string; rank?: RankIdentity },
  intervalMs: number,
  warn: (message: string) => void,
  env: Record<string, string | undefined> = process.env,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): StatusReporter | undefined {
  const kc = new KubeConfig();
  const explicit = env.TILESTREAM_STATUS_KUBECONFIG;
  if (explicit) kc.loadFromFile(explicit);
  else if (env.KUBERNETES_SERVICE_HOST && existsSync(SA_TOKEN)) kc.loadFromCluster();
  else return undefined;
  const api = kc.makeApiClient(CustomObjectsApi);
  // The content type of a server-side apply, and a deadline for each request.
  const options = {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setHeaderParam('Content-Type', PatchStrategy.ServerSideApply);
          ctx.setSignal(AbortSignal.timeout(REPORT_REQUEST_TIMEOUT_MS));
          return new Observable(Promise.resolve(ctx));
        },
        post: (res: ResponseContext) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append' as const,
  };
  /** Everything reported so far: each request applies all of it. */
  let state: StatusPatch = {};
  /** The state changed since it last reached the API server. */
  let dirty = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let lastError: unknown;

  /** Applies the whole state; true when it landed. */
  const where = { pod: env[POD_NAME_ENV], node: env[NODE_NAME_ENV] };
  const fieldManager = job.rank === undefined ? TRAINER_FIELD_MANAGER : rankFieldManager(job.rank.rank);
  const send = async (): Promise<boolean> => {
    const status = state;
    dirty = false;
    const body = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: job.name, namespace: job.namespace },
      status: statusBody(status, job.rank, where, new Date()),
    };
    try {
      await api.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace: job.namespace,
          plural: PLURAL,
          name: job.name,
          body,
          fieldManager,
          force: true,
        },
        options,
      );
      lastError = undefined;
      return true;
    } catch (e) {
      // Reporting is best effort: training goes on, and the next request carries this state too.
      if (state === status) dirty = true;
      lastError = e;
      warn(`could not report progress to ${job.namespace}/${job.name}: ${(e as Error).message}`);
      return false;
    }
  };
  const schedule = (): void => {
    timer ??= setTimeout(() => void flush(), intervalMs);
    timer.unref();
  };
  const flush = (): Promise<void> => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    inFlight = inFlight.then(async () => {
      if (dirty && !(await send())) schedule();
    });
    return inFlight;
  };
  return {
    report(patch) {
      state = { ...state, ...patch, ...(patch.rank ? { rank: { ...state.rank, ...patch.rank } } : {}) };
      dirty = true;
      schedule();
    },
    flush,
    async finish(timeoutMs = FINISH_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      for (let delay = 1000; ; delay = Math.min(2 * delay, 5000)) {
        await flush();
        if (!dirty) return true;
        if (!transient(lastError) || Date.now() + delay > deadline) break;
        await sleep(delay);
      }
      if (timer) clearTimeout(timer);
      timer = undefined;
      warn(
        `gave up reporting the final status to ${job.namespace}/${job.name}` +
          (transient(lastError) ? ` after ${Math.round(timeoutMs / 1000)} s` : '') +
          '; the summary is in the termination message',
      );
      return false;
    },
  };
}
