// Gang admission of a data-parallel job by real Kueue (test/controlplane/kueue.ts; skipped with the
// reason when Kueue cannot run here): a StreamingTrainingJob of 2 pods named a LocalQueue, so the
// operator creates its Indexed Job suspended with Kueue's queue label, and Kueue admits it as one
// Workload of 2 pods. A second such job, for which the ClusterQueue's GPU quota has no room while
// the first runs, waits as a whole (no pod at all, condition Suspended: waiting for Kueue) and is
// admitted once the first has finished; both succeed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { operatorConfig } from '../../operator/config.ts';
import { KubeClient } from '../../operator/kube/client.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { startControlPlaneWithKueueOrSkip } from '../controlplane/kueue.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { jobWatch } from './job-watch.ts';
import { conditionOf, tinyJob } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const NS = 'gang-ranks';
const QUEUE = 'ranks-queue';
const started = await startControlPlaneWithKueueOrSkip({
  namespaces: [NS],
  // Room for one 2-GPU job at a time: the second must wait as a whole.
  kueue: { quota: { cpu: '16', memory: '64Gi', gpu: '3' }, localQueues: { [NS]: QUEUE } },
});
if (started.skip !== undefined) process.stderr.write(`SKIP multi-rank Kueue suite: ${started.skip}\n`);

const work = mkdtempSync(join(tmpdir(), 'tilestream-gang-'));
const dataDir = join(work, 'data');

interface Stj {
  status?: {
    phase?: string;
    conditions?: { type: string; status: string; reason: string; message?: string }[];
    distributed?: { worldSize?: number };
    restarts?: number;
  };
}
interface Workload {
  metadata: { name: string; ownerReferences?: { kind: string; name: string }[] };
  spec: { queueName?: string; podSets: { name: string; count: number }[] };
  status?: { conditions?: { type: string; status: string }[]; admission?: { clusterQueue: string } };
}

describe('gang admission of a data-parallel job through a Kueue LocalQueue', () => {
  if (started.skip !== undefined) {
    it('admits all pods of a 2-pod job as one Workload', { skip: started.skip }, () => {});
    return;
  }
  const { plane, kueue } = started;
  const admin = new KubeClient(plane.kubeConfig);
  const stop = new AbortController();
  let exit: Promise<number> | undefined;
  let cluster: TrainingCluster | undefined;

  const { until } = jobWatch<Stj, { metadata: { name: string } }>({
    admin,
    namespace: NS,
    cluster: () => cluster,
  });
  const workloadsOf = async (name: string) =>
    (await kueue.list<Workload>('workloads', NS)).filter((w) =>
      (w.metadata.ownerReferences ?? []).some((o) => o.kind === 'Job' && o.name.startsWith(`${name}-`)),
    );

  before(async () => {
    cluster = await startTrainingCluster(plane, dataDir, {
      'tilestream:e2e': [process.execPath, POD_TRAINER],
    });
    const { kubeConfig } = await createOperatorAccount(plane, NS, { prefix: 'gang' });
    exit = runOperator(
      operatorConfig({
        identity: 'gang-0',
        leaseNamespace: NS,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:e2e',
        peerTimeoutSeconds: 180,
      }),
      { signal: stop.signal, kubeConfig, log: silentLogger, handleSignals: false },
    );
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await cluster?.stop();
    await kueue.stop();
    await plane.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('admits all pods of a 2-pod job as one Workload; a second waits whole until the first is done', async () => {
    // The first trains 4 epochs, long enough to watch the second wait.
    const job = (name: string) =>
      tinyJob(name, {
        epochs: name === 'first' ? 4 : 1,
        namespace: NS,
        dataDir,
        checkpointsDir: join(work, 'checkpoints', name),
        image: 'tilestream:e2e',
        replicas: 2,
        runPolicy: { queueName: QUEUE },
      });
    let r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(job('first')) });
    assert.equal(r.code, 0, r.stderr);
    const admitted = await waitFor(
      'first: an admitted Workload',
      async () =>
        (await workloadsOf('first')).find((w) =>
          w.status?.conditions?.some((c) => c.type === 'Admitted' && c.status === 'True'),
        ),
      { timeoutMs: 60_000, intervalMs: 300 },
    );
    assert.deepEqual(
      admitted.spec.podSets.map((p) => p.count),
      [2],
      'one Workload holds both pods',
    );
    assert.equal(admitted.spec.queueName, QUEUE);
    await until('first', 'both pods running', (s) => s.status?.phase === 'Running', 120_000);

    // 2 of the 3 GPUs are taken: the second job's 2 pods cannot all be admitted, so none is.
    r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(job('second')) });
    assert.equal(r.code, 0, r.stderr);
    const held = await until(
      'second',
      'Suspended, waiting for Kueue',
      (s) => conditionOf(s, 'Suspended')?.status === 'True',
      30_000,
    );
    assert.match(
      conditionOf(held, 'Suspended')?.message ?? '',
      /waiting for Kueue to admit the trainer Job from LocalQueue ranks-queue/,
    );
    // While the first job's pods run (and hold its quota), the second has no pod at all (not one of
    // two). Its pods are read before the first's: both seen at once means both ran together.
    const running = async (name: string) =>
      (
        await admin.request<{ items: { status?: { phase?: string } }[] }>(
          'GET',
          `/api/v1/namespaces/${NS}/pods`,
          {
            query: { labelSelector: `tilestream.io/job-name=${name}` },
          },
        )
      ).items.filter((p) => p.status?.phase === 'Running' || p.status?.phase === 'Pending').length;
    for (let samples = 0; ; samples++) {
      const second = await running('second');
      const first = await running('first');
      if (first < 2) {
        assert.ok(samples > 0, 'the first job ran while the second waited');
        break;
      }
      assert.equal(second, 0, 'no pod of a job Kueue has not admitted while the first holds the quota');
      await new Promise((res) => setTimeout(res, 500));
    }
    const first = await until('first', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 300_000);
    assert.equal(first.status?.restarts, 0);
    const second = await until('second', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 300_000);
    assert.equal(second.status?.distributed?.worldSize, 2);
    assert.equal(second.status?.restarts, 0);
  });
});
