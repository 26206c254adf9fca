// The informers the operator runs and how their events become work-queue keys: a
// StreamingTrainingJob maps to itself; a trainer Job or Pod to the job named in its
// tilestream.io/job-name label; a Node change that matters for placement (GPUs, labels, taints,
// cordon, readiness) to every job still waiting to be placed.

import type { StreamingTrainingJob } from '../../crds/index.ts';
import { LABEL, MANAGED_SELECTOR } from '../children/names.ts';
import type { KubeClient } from '../kube/client.ts';
import { RESOURCES } from '../kube/resources.ts';
import { type Job, type KubeObject, keyOf, type Node, type Pod } from '../kube/types.ts';
import type { Logger } from '../log.ts';
import type { OperatorMetrics } from '../metrics.ts';
import type { Clock } from './clock.ts';
import { Informer, MultiStore } from './informer.ts';
import type { Stores } from './reconcile.ts';

export interface Watches {
  stores: Stores;
  informers: Informer<KubeObject>[];
  /** Keys of every StreamingTrainingJob in the cache. */
  allKeys(): string[];
}

/** What of a Node matters for GPU inventory and placement. */
export function nodeFingerprint(n: Node): string {
  const labels = Object.entries(n.metadata.labels ?? {}).filter(
    ([k]) => k.startsWith('nvidia.com/') || k.includes('accelerator') || k.includes('gpu'),
  );
  return JSON.stringify([
    labels.sort(),
    Object.entries(n.status?.allocatable ?? {})
      .filter(([k]) => k.startsWith('nvidia.com/'))
      .sort(),
    n.spec?.unschedulable ?? false,
    n.spec?.taints ?? [],
    n.status?.conditions?.find((c) => c.type === 'Ready')?.status,
  ]);
}

/** Jobs that a new node (or a changed one) could place: not yet running, not finished. */
function waitingForPlacement(stj: StreamingTrainingJob): boolean {
  const phase = stj.status?.phase;
  return phase === undefined || phase === 'Pending' || phase === 'Planned';
}

export function createWatches(o: {
  client: KubeClient;
  clock: Clock;
  log: Logger;
  metrics: OperatorMetrics;
  namespaces: string[] | undefined;
  enqueue: (key: string) => void;
}): Watches {
  const make = <T extends KubeObject>(
    resource: (typeof RESOURCES)[keyof typeof RESOURCES],
    namespace?: string,
    labelSelector?: string,
  ) => {
    const name = resource.plural;
    return new Informer<T>({
      client: o.client,
      resource,
      ...(namespace !== undefined && { namespace }),
      ...(labelSelector !== undefined && { labelSelector }),
      clock: o.clock,
      log: o.log.child({ informer: name, ...(namespace !== undefined && { namespace }) }),
      onRelist: (reason) => o.metrics.relists.inc({ resource: name, reason }),
      onWatchError: () => o.metrics.watchErrors.inc({ resource: name }),
    });
  };
  const scopes = o.namespaces ?? [undefined];
  const stjs = scopes.map((ns) => make<StreamingTrainingJob & KubeObject>(RESOURCES.stj, ns));
  const jobs = scopes.map((ns) => make<Job>(RESOURCES.job, ns, MANAGED_SELECTOR));
  const pods = scopes.map((ns) => make<Pod>(RESOURCES.pod, ns, MANAGED_SELECTOR));
  const nodes = make<Node>(RESOURCES.node);
  const stjStore = new MultiStore(stjs);

  const self = {
    add: (obj: KubeObject) => o.enqueue(keyOf(obj)),
    update: (_: KubeObject, obj: KubeObject) => o.enqueue(keyOf(obj)),
    delete: (obj: KubeObject) => o.enqueue(keyOf(obj)),
  };
  for (const i of stjs) i.on(self);
  const owner = (obj: KubeObject) => {
    const job = obj.metadata.labels?.[LABEL.job];
    if (job && obj.metadata.namespace) o.enqueue(`${obj.metadata.namespace}/${job}`);
  };
  for (const i of [...jobs, ...pods] as Informer<KubeObject>[])
    i.on({ add: owner, update: (_, x) => owner(x), delete: owner });
  const waiting = () => {
    for (const s of stjStore.list()) if (waitingForPlacement(s)) o.enqueue(keyOf(s));
  };
  nodes.on({
    add: waiting,
    delete: waiting,
    update: (before, after) => {
      if (nodeFingerprint(before) !== nodeFingerprint(after)) waiting();
    },
  });
  return {
    stores: { stjs: stjStore, jobs: new MultiStore(jobs), pods: new MultiStore(pods), nodes },
    informers: [...stjs, ...jobs, ...pods, nodes] as Informer<KubeObject>[],
    allKeys: () => stjStore.list().map((s) => keyOf(s)),
  };
}
