// Gang admission by real Kueue (sigs.k8s.io/kueue's manager, built from its Go module) on the real
// test control plane: a 2-pod Indexed Job is admitted as one Workload with both pods' resources
// counted; a second one that does not fit the remaining quota stays suspended as a whole (no pod,
// no partial admission) and is admitted only when the first has finished.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BatchV1Api, CoreV1Api, type V1Job } from '@kubernetes/client-node';
import { type FakeGpuNodes, registerFakeGpuNodes } from './fake-gpu-nodes.ts';
import { startControlPlaneWithKueueOrSkip } from './kueue.ts';
import { QUEUE_NAME_LABEL } from './kueue-manifests.ts';
import { type NodeAgent, startNodeAgent } from './node-agent.ts';
import { waitFor } from './wait.ts';

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}
interface Workload {
  metadata: { name: string; ownerReferences?: { uid: string; kind: string; name: string }[] };
  spec: { queueName?: string; podSets: { name: string; count: number }[] };
  status?: {
    conditions?: Condition[];
    admission?: {
      clusterQueue: string;
      podSetAssignments: { name: string; count?: number; resourceUsage?: Record<string, string> }[];
    };
  };
}
interface ClusterQueueStatus {
  status?: {
    pendingWorkloads?: number;
    admittedWorkloads?: number;
    flavorsReservation?: { name: string; resources: { name: string; total: string }[] }[];
  };
}

const condition = (w: Workload | undefined, type: string) =>
  w?.status?.conditions?.find((c) => c.type === type);

const ns = 'gang';
const queue = 'team-queue';
const started = await startControlPlaneWithKueueOrSkip({
  namespaces: [ns],
  // Room for one 2-GPU job, not two: the second must wait as a whole.
  kueue: { quota: { cpu: '8', memory: '16Gi', gpu: '3' }, localQueues: { [ns]: queue } },
});
if (started.skip !== undefined) process.stderr.write(`SKIP Kueue suite: ${started.skip}\n`);

describe('Kueue gang admission on the real control plane', () => {
  if (started.skip !== undefined) {
    it('admits a multi-pod Job as one Workload', { skip: started.skip }, () => {});
    return;
  }
  const { plane, kueue } = started;
  const batch = plane.kubeConfig.makeApiClient(BatchV1Api);
  const core = plane.kubeConfig.makeApiClient(CoreV1Api);
  const work = mkdtempSync(join(tmpdir(), 'tilestream-kueue-'));
  const release = join(work, 'release');
  let nodes: FakeGpuNodes;
  let agent: NodeAgent;

  before(async () => {
    // Two 4-GPU nodes: 8 GPUs, so the ClusterQueue's 3 is what holds the second job back.
    nodes = await registerFakeGpuNodes(
      plane.kubeConfig,
      [{ name: 'gpu-16g', memoryMiB: 16384, gpuCount: 4, nodes: 2, product: 'Tesla-V100-SXM2-16GB' }],
      {
        kubeConfigForNode: plane.nodeKubeConfig,
      },
    );
    agent = await startNodeAgent(plane.kubeConfig, nodes.names, { kubeConfigForNode: plane.nodeKubeConfig });
  });

  after(async () => {
    await agent?.stop();
    await nodes?.stop();
    await kueue.stop();
    await plane.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** A suspended 2-pod Indexed Job in the queue; its pods wait for the release file, then exit 0. */
  const gangJob = (name: string): V1Job => ({
    metadata: { name, namespace: ns, labels: { [QUEUE_NAME_LABEL]: queue } },
    spec: {
      suspend: true,
      completionMode: 'Indexed',
      completions: 2,
      parallelism: 2,
      backoffLimit: 0,
      template: {
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'rank',
              image: 'busybox',
              command: [
                'sh',
                '-c',
                `while [ ! -e '${release}' ]; do sleep 0.2; done; test -n "$JOB_COMPLETION_INDEX"`,
              ],
              resources: {
                requests: { cpu: '1', memory: '1Gi', 'nvidia.com/gpu': '1' },
                limits: { 'nvidia.com/gpu': '1' },
              },
            },
          ],
        },
      },
    },
  });

  const workloadsOf = async (job: V1Job): Promise<Workload[]> =>
    (await kueue.list<Workload>('workloads', ns)).filter((w) =>
      (w.metadata.ownerReferences ?? []).some((o) => o.uid === job.metadata?.uid),
    );
  const podsOf = async (jobName: string) =>
    (
      await core.listNamespacedPod({
        namespace: ns,
        labelSelector: `batch.kubernetes.io/job-name=${jobName}`,
      })
    ).items;

  it("serves Kueue's v1beta1 API through the manager's conversion webhook", async () => {
    // Storage is v1beta2; a v1beta1 read is converted by the manager at https://127.0.0.1:<port>/convert.
    const r = await plane.kubectl([
      'get',
      '-n',
      ns,
      `localqueues.v1beta1.kueue.x-k8s.io/${queue}`,
      '-o',
      'json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lq = JSON.parse(r.stdout) as { apiVersion: string; spec: { clusterQueue: string } };
    assert.equal(lq.apiVersion, 'kueue.x-k8s.io/v1beta1');
    assert.equal(lq.spec.clusterQueue, kueue.clusterQueue);
  });

  it('admits a 2-pod Job as one Workload, and holds a second one back whole until quota frees', async () => {
    const first = await batch.createNamespacedJob({ namespace: ns, body: gangJob('first') });
    const admitted = await waitFor(
      'the first Job admitted by Kueue',
      async () => {
        const [w] = await workloadsOf(first);
        return condition(w, 'Admitted')?.status === 'True' ? w : undefined;
      },
      { timeoutMs: 30_000 },
    );
    // One Workload for the whole Job, both pods in one pod set and both counted in the admission.
    assert.equal((await workloadsOf(first)).length, 1);
    assert.deepEqual(
      admitted.spec.podSets.map((p) => p.count),
      [2],
    );
    assert.equal(admitted.spec.queueName, queue);
    assert.equal(admitted.status?.admission?.clusterQueue, kueue.clusterQueue);
    const [assignment] = admitted.status?.admission?.podSetAssignments ?? [];
    assert.equal(assignment?.count, 2);
    assert.deepEqual(
      {
        gpu: assignment?.resourceUsage?.['nvidia.com/gpu'],
        cpu: assignment?.resourceUsage?.cpu,
        memory: assignment?.resourceUsage?.memory,
      },
      { gpu: '2', cpu: '2', memory: '2Gi' },
    );
    // Kueue unsuspends the Job; the Job controller then creates both pods, which run on GPU nodes.
    const running = await waitFor('both pods of the first Job running', async () => {
      const pods = await podsOf('first');
      return pods.length === 2 && pods.every((p) => p.status?.phase === 'Running') ? pods : undefined;
    });
    assert.equal((await batch.readNamespacedJob({ name: 'first', namespace: ns })).spec?.suspend, false);
    assert.deepEqual(
      running.map((p) => p.metadata?.annotations?.['batch.kubernetes.io/job-completion-index']).sort(),
      ['0', '1'],
    );
    // The ClusterQueue's status (written asynchronously) counts both pods' GPUs as reserved.
    await waitFor("the ClusterQueue reserving the first gang's 2 GPUs", async () => {
      const cq = await kueue.get<ClusterQueueStatus>('clusterqueues', kueue.clusterQueue);
      const gpu = cq.status?.flavorsReservation?.[0]?.resources.find((r) => r.name === 'nvidia.com/gpu');
      return gpu?.total === '2';
    });

    // The second gang needs 2 GPUs, 1 is left: Kueue tries it and keeps it pending, whole.
    const second = await batch.createNamespacedJob({ namespace: ns, body: gangJob('second') });
    const pending = await waitFor(
      'the second Job evaluated and left pending by Kueue',
      async () => {
        const [w] = await workloadsOf(second);
        const reserved = condition(w, 'QuotaReserved');
        return reserved?.status === 'False' && /insufficient/i.test(reserved.message ?? '') ? w : undefined;
      },
      { timeoutMs: 30_000 },
    );
    assert.match(condition(pending, 'QuotaReserved')?.message ?? '', /nvidia\.com\/gpu/);
    assert.deepEqual(
      pending.spec.podSets.map((p) => p.count),
      [2],
      'the pending Workload still asks for both pods (no partial admission)',
    );
    assert.equal(pending.status?.admission, undefined);
    const secondJob = await batch.readNamespacedJob({ name: 'second', namespace: ns });
    assert.equal(secondJob.spec?.suspend, true);
    assert.equal((await podsOf('second')).length, 0, 'no pod of a gang that is not admitted');
    await waitFor(
      'the ClusterQueue counting one pending Workload',
      async () =>
        (await kueue.get<ClusterQueueStatus>('clusterqueues', kueue.clusterQueue)).status
          ?.pendingWorkloads === 1,
    );

    // The first finishes; its quota comes back and the second gang is admitted and runs.
    writeFileSync(release, '');
    const isComplete = (j: V1Job) =>
      (j.status?.conditions ?? []).some((c) => c.type === 'Complete' && c.status === 'True');
    await waitFor(
      'the first Job Complete',
      async () => isComplete(await batch.readNamespacedJob({ name: 'first', namespace: ns })),
      {
        timeoutMs: 30_000,
      },
    );
    const secondAdmitted = await waitFor(
      'the second Job admitted after the first finished',
      async () => {
        const [w] = await workloadsOf(second);
        return condition(w, 'Admitted')?.status === 'True' ? w : undefined;
      },
      { timeoutMs: 30_000 },
    );
    assert.equal(secondAdmitted.status?.admission?.podSetAssignments[0]?.count, 2);
    const [firstWorkload] = await workloadsOf(first);
    const finishedAt = Date.parse(condition(firstWorkload, 'Finished')?.lastTransitionTime ?? '');
    const admittedAt = Date.parse(condition(secondAdmitted, 'Admitted')?.lastTransitionTime ?? '');
    assert.ok(admittedAt >= finishedAt, `second admitted ${admittedAt} before first finished ${finishedAt}`);
    await waitFor(
      'the second Job Complete',
      async () => isComplete(await batch.readNamespacedJob({ name: 'second', namespace: ns })),
      {
        timeoutMs: 30_000,
      },
    );
  });
});
