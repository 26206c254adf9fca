// Progress reports to the trainer's own StreamingTrainingJob, when it runs in a pod: a server-side
// apply of status.progress (and the last checkpoint and final result) under the trainer's own field
// manager, so it never fights the operator over the fields the operator owns. The per-job service
// account may patch only this job's status. Outside a cluster this is off, silently.

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
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../crds/index.ts';

export const TRAINER_FIELD_MANAGER = 'tilestream-trainer';
const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface StatusPatch {
  progress?: Record<string, unknown>;
  lastCheckpoint?: Record<string, unknown>;
  result?: Record<string, unknown>;
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
  job: { namespace: string; name: string },
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
  const send = async (): Promise<boolean> => {
    const status = state;
    dirty = false;
    const body = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: job.name, namespace: job.namespace },
      status,
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
          fieldManager: TRAINER_FIELD_MANAGER,
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
      state = { ...state, ...patch };
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
