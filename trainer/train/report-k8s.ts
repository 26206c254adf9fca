// Progress reports to the trainer's own StreamingTrainingJob, when it runs in a pod: a server-side
// apply of status.progress (and the last checkpoint and final result) under the trainer's own field
// manager, so it never fights the operator over the fields the operator owns. The per-job service
// account may patch only this job's status. Outside a cluster this is off, silently.

import { existsSync } from 'node:fs';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../crds/index.ts';

export const TRAINER_FIELD_MANAGER = 'tilestream-trainer';
const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface StatusPatch {
  progress?: Record<string, unknown>;
  lastCheckpoint?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

export interface StatusReporter {
  /** Queues a patch; sends at most one request per interval (the newest wins). */
  report(patch: StatusPatch): void;
  /** Sends whatever is pending now. */
  flush(): Promise<void>;
}

/**
 * A reporter for job `namespace/name`, or undefined when there are no credentials: in a pod the
 * service account; for tests, the kubeconfig named by TILESTREAM_STATUS_KUBECONFIG. A developer's
 * own KUBECONFIG is deliberately not used, so a local run never patches a cluster.
 */
export function createStatusReporter(
  job: { namespace: string; name: string },
  intervalMs: number,
  warn: (message: string) => void,
  env: Record<string, string | undefined> = process.env,
): StatusReporter | undefined {
  const kc = new KubeConfig();
  const explicit = env.TILESTREAM_STATUS_KUBECONFIG;
  if (explicit) kc.loadFromFile(explicit);
  else if (env.KUBERNETES_SERVICE_HOST && existsSync(SA_TOKEN)) kc.loadFromCluster();
  else return undefined;
  const api = kc.makeApiClient(CustomObjectsApi);
  let pending: StatusPatch | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();

  const send = async (patch: StatusPatch): Promise<void> => {
    const body = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: job.name, namespace: job.namespace },
      status: patch,
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
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      );
    } catch (e) {
      // Reporting is best effort: training goes on, and the next report carries the newest state.
      warn(`could not report progress to ${job.namespace}/${job.name}: ${(e as Error).message}`);
    }
  };
  const flush = (): Promise<void> => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const patch = pending;
    pending = undefined;
    if (patch) inFlight = inFlight.then(() => send(patch));
    return inFlight;
  };
  return {
    report(patch) {
      pending = { ...pending, ...patch };
      timer ??= setTimeout(() => void flush(), intervalMs);
      timer.unref();
    },
    flush,
  };
}
