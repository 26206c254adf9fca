// The benchmark's out-of-memory storm: every trainer pod reports at once that the trainer exited 3
// (out of memory), as a kubelet would, so that every job is re-planned with a smaller tile at the
// same time. There is no node agent in the benchmark, so the benchmark plays the kubelet for every
// trainer pod, bound to a node or still waiting for a GPU; the Job controller then fails each trainer
// Job through its pod failure policy and the operator shrinks the tile on a new attempt.

import { LABEL, TRAINER_CONTAINER } from '../../operator/children/names.ts';
import { CONTENT_TYPE, type KubeClient } from '../../operator/kube/client.ts';

const OUT_OF_MEMORY_EXIT = 3;

export interface TrainerPod {
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec?: { nodeName?: string; containers?: { name: string; image?: string }[] };
  status?: { phase?: string };
}

/** The pods/status merge patch of a trainer pod whose trainer ran out of memory just now. */
export function oomExitStatus(pod: TrainerPod, now: Date): Record<string, unknown> {
  const at = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const image = pod.spec?.containers?.find((c) => c.name === TRAINER_CONTAINER)?.image ?? '';
  return {
    status: {
      phase: 'Failed',
      containerStatuses: [
        {
          name: TRAINER_CONTAINER,
          image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: {
            terminated: {
              exitCode: OUT_OF_MEMORY_EXIT,
              reason: 'Error',
              message: 'out of memory (benchmark: OOM storm)',
              startedAt: at,
              finishedAt: at,
            },
          },
        },
      ],
    },
  };
}

/** The StreamingTrainingJob a trainer pod belongs to. */
export const stjOfPod = (pod: TrainerPod): string | undefined => pod.metadata.labels?.[LABEL.job];

/** Trainer pods that have not finished and are not being deleted: those a storm can fail. */
export const livePods = (pods: readonly TrainerPod[]): TrainerPod[] =>
  pods.filter(
    (p) =>
      stjOfPod(p) !== undefined &&
      !p.metadata.deletionTimestamp &&
      p.status?.phase !== 'Failed' &&
      p.status?.phase !== 'Succeeded',
  );

/**
 * Reports the out-of-memory exit of every pod, `concurrency` requests in flight. Calls `sent` with
 * the pod's StreamingTrainingJob just before its patch goes out.
 */
export async function failWithOom(
  client: KubeClient,
  pods: readonly TrainerPod[],
  o: { concurrency: number; sent?: (stj: string) => void },
): Promise<void> {
  let next = 0;
  const one = async () => {
    for (;;) {
      const pod = pods[next++];
      if (pod === undefined) return;
      const ns = pod.metadata.namespace as string;
      o.sent?.(stjOfPod(pod) as string);
      await client.request('PATCH', `/api/v1/namespaces/${ns}/pods/${pod.metadata.name}/status`, {
        body: oomExitStatus(pod, new Date()),
        contentType: CONTENT_TYPE.mergePatch,
      });
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, one));
}
