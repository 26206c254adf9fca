// Watching StreamingTrainingJobs of one namespace from an end-to-end test: the job, its pods, their
// trainer logs (kept by the node agent), and a wait that ends early — with the conditions and the
// logs in the error — when the job fails.
import { existsSync, readFileSync } from 'node:fs';
import type { KubeClient } from '../../operator/kube/client.ts';
import { waitFor } from '../controlplane/wait.ts';
import { conditionOf } from './tiny-job.ts';
import type { TrainingCluster } from './training-cluster.ts';

export const JOB_LABEL = 'tilestream.io/job-name';

interface Watched {
  status?: { conditions?: { type: string; status: string }[] };
}

export interface JobWatchOptions<S extends Watched> {
  admin: KubeClient;
  namespace: string;
  /** The cluster once started (the node agent knows where each pod's log is). */
  cluster: () => TrainingCluster | undefined;
  /** When the wait gives up early; default: the job's Failed condition is True. */
  gaveUp?: (s: S) => boolean;
  intervalMs?: number;
}

export function jobWatch<S extends Watched, P extends { metadata: { name: string } }>(o: JobWatchOptions<S>) {
  const base = `/apis/tilestream.io/v1alpha1/namespaces/${o.namespace}/streamingtrainingjobs`;
  const gaveUp = o.gaveUp ?? ((s: S) => conditionOf(s, 'Failed')?.status === 'True');
  const get = (name: string) => o.admin.request<S>('GET', `${base}/${name}`);
  const podsOf = async (name: string) =>
    (
      await o.admin.request<{ items: P[] }>('GET', `/api/v1/namespaces/${o.namespace}/pods`, {
        query: { labelSelector: `${JOB_LABEL}=${name}` },
      })
    ).items;
  /** The trainer logs of a job's pods, each cut to its last `tail` characters (all with Infinity). */
  const logsOf = async (name: string, tail = 3000) => {
    const out: string[] = [];
    for (const p of await podsOf(name)) {
      const path = o.cluster()?.agent.logPath(o.namespace, p.metadata.name, 'trainer');
      out.push(
        `--- ${p.metadata.name}: ${path && existsSync(path) ? readFileSync(path, 'utf8').slice(-tail) : '(no log)'}`,
      );
    }
    return out.join('\n');
  };
  /**
   * Waits for `ok`; a job that gives up first (see `gaveUp`) ends the wait at once (waitFor would
   * keep polling through a thrown error), with its status and logs in the error.
   */
  const until = async (name: string, what: string, ok: (s: S) => boolean, timeoutMs: number): Promise<S> => {
    const seen = await waitFor(
      `${name}: ${what}`,
      async () => {
        const s = await get(name);
        if (gaveUp(s)) return { s, gaveUp: true };
        return ok(s) ? { s, gaveUp: false } : undefined;
      },
      { timeoutMs, intervalMs: o.intervalMs ?? 500 },
    ).catch(async (err: Error) => {
      const status = await get(name).then((s) => JSON.stringify(s.status?.conditions, null, 1));
      throw new Error(`${err.message}\nconditions: ${status}\n${await logsOf(name)}`);
    });
    if (seen.gaveUp) {
      throw new Error(
        `${name} failed or restarted before ${what}: ${JSON.stringify(seen.s.status, null, 1)}\n${await logsOf(name)}`,
      );
    }
    return seen.s;
  };
  return { get, podsOf, logsOf, until };
}
