// A reconcile context over static caches, the nock'd API server, a manual clock and a real
// metrics registry, for the reconcile and controller tests.
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { DEFAULT_TRAINER_SETTINGS } from '../../operator/children/trainer-job.ts';
import { asyncSizer } from '../../operator/cluster/async-sizer.ts';
import { gpuMemoryTable } from '../../operator/cluster/gpu-memory-table.ts';
import { PlannerPool } from '../../operator/cluster/planner-pool.ts';
import { ManualClock } from '../../operator/controller/clock.ts';
import { Expectations } from '../../operator/controller/expectations.ts';
import { StaticStore } from '../../operator/controller/informer.ts';
import type { ReconcileContext } from '../../operator/controller/reconcile.ts';
import { apiEventRecorder } from '../../operator/events.ts';
import type { Job, KubeObject, Node, Pod } from '../../operator/kube/types.ts';
import { silentLogger } from '../../operator/log.ts';
import { createOperatorMetrics } from '../../operator/metrics.ts';
import { makeNode } from './builders.ts';
import { testClient } from './kube-fixture.ts';

export const RESYNC_MS = 600_000;
// The operator's sizer: planner threads (idle ones do not keep the test process alive).
const sizer = asyncSizer(new PlannerPool());

export interface World {
  ctx: ReconcileContext;
  clock: ManualClock;
  stjs: StaticStore<StreamingTrainingJob & KubeObject>;
  jobs: StaticStore<Job>;
  pods: StaticStore<Pod>;
  nodes: StaticStore<Node>;
  metricsText(): Promise<string>;
}

export function makeWorld(
  o: { stjs?: StreamingTrainingJob[]; jobs?: Job[]; pods?: Pod[]; nodes?: Node[]; timeoutMs?: number } = {},
): World {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12, 0, 0));
  const client = testClient({ timeoutMs: o.timeoutMs ?? 2000 });
  const stjs = new StaticStore<StreamingTrainingJob & KubeObject>(
    (o.stjs ?? []) as (StreamingTrainingJob & KubeObject)[],
  );
  const jobs = new StaticStore<Job>(o.jobs ?? []);
  const pods = new StaticStore<Pod>(o.pods ?? []);
  const nodes = new StaticStore<Node>(
    o.nodes ?? [
      makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
      makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
    ],
  );
  const metrics = createOperatorMetrics({ version: 'test' });
  const ctx: ReconcileContext = {
    client,
    stores: { stjs, jobs, pods, nodes },
    clock,
    log: silentLogger,
    metrics,
    events: apiEventRecorder(
      client,
      { component: 'tilestream-operator', instance: 'test-0' },
      { clock, warn: () => {} },
    ),
    expectations: new Expectations(clock),
    sizer,
    config: {
      fieldManager: 'tilestream-operator',
      trainer: { image: 'registry.local/tilestream:test', ...DEFAULT_TRAINER_SETTINGS },
      memoryTable: gpuMemoryTable(),
      resyncMs: RESYNC_MS,
    },
  };
  return { ctx, clock, stjs, jobs, pods, nodes, metricsText: () => metrics.registry.metrics() };
}

/** The value of one series in Prometheus text exposition, or undefined. */
export function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

export const STJ_PATH = '/apis/tilestream.io/v1alpha1/namespaces/team/streamingtrainingjobs/demo';
export const JOBS_PATH = '/apis/batch/v1/namespaces/team/jobs';
export const APPLY = { fieldManager: 'tilestream-operator', force: 'true' };
