// A data-parallel job end to end on the real test control plane (skipped with the reason when the
// binaries cannot be had): the operator runs a 2-pod StreamingTrainingJob (spec.resources.replicas 2,
// one fake GPU each) as an Indexed Job with a headless Service; the node agent runs both pods as
// local processes, their `<pod hostname>.<service>` names resolving to this host (pod-dns.ts); the
// two ranks train together and the job succeeds with the result of the same job on one rank (the
// summed gradients of 2 ranks with batch B equal one rank accumulating B), each rank reporting its
// own status.ranks entry and the operator summing them in status.distributed.
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
import { CLASS_LABEL } from '../controlplane/gpu-node-spec.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { jobWatch } from './job-watch.ts';
import { conditionOf, tinyJob } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const started = await startControlPlaneOrSkip();
if (started.skip) process.stderr.write(`SKIP multi-rank end-to-end: ${started.skip}\n`);

const NS = 'ranks';
const PEER_TIMEOUT_SECONDS = 60;
const work = mkdtempSync(join(tmpdir(), 'tilestream-ranks-'));
const dataDir = join(work, 'data');

interface Stj {
  status?: {
    phase?: string;
    plan?: { gpuClass?: string; tileSize?: number };
    progress?: { step?: number; fraction?: number; loss?: number };
    result?: { validationLoss?: number; trainLoss?: number; validationAccuracy?: number };
    conditions?: { type: string; status: string; reason: string; message?: string }[];
    ranks?: { rank: number; replicaIndex?: number; pod?: string; node?: string; phase?: string }[];
    distributed?: { worldSize?: number; replicas?: number; ranks?: string; ranksReporting?: number };
    restarts?: number;
  };
}
interface EnvVar {
  name: string;
  value?: string;
}
interface Job {
  metadata: { name: string };
  spec: {
    completionMode?: string;
    completions?: number;
    parallelism?: number;
    template: { spec: { subdomain?: string; containers: { env?: EnvVar[] }[] } };
  };
}
interface Pod {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { hostname?: string; subdomain?: string; nodeName?: string };
  status?: { phase?: string };
}

describe('a data-parallel job on the test control plane', { skip: started.skip, timeout: 600_000 }, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  let exit: Promise<number> | undefined;
  let cluster: TrainingCluster | undefined;

  const job = (name: string, replicas: number) =>
    tinyJob(name, {
      namespace: NS,
      dataDir,
      checkpointsDir: join(work, 'checkpoints', name),
      image: 'tilestream:e2e',
      replicas,
    });
  const { get, podsOf, until } = jobWatch<Stj, Pod>({ admin, namespace: NS, cluster: () => cluster });

  before(async () => {
    cluster = await startTrainingCluster(plane, dataDir, {
      'tilestream:e2e': [process.execPath, POD_TRAINER],
    });
    await plane.createNamespace(NS);
    const { kubeConfig } = await createOperatorAccount(plane, NS, { prefix: 'ranks' });
    exit = runOperator(
      operatorConfig({
        identity: 'ranks-0',
        leaseNamespace: NS,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:e2e',
        // Long enough for two rank processes to start side by side on a busy machine; short enough
        // to see a rank give up on a peer that never comes.
        peerTimeoutSeconds: PEER_TIMEOUT_SECONDS,
      }),
      { signal: stop.signal, kubeConfig, log: silentLogger, handleSignals: false },
    );
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await cluster?.stop();
    await plane?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('runs 2 pods as one Indexed Job with a headless Service, to Succeeded with the result of one rank', async () => {
    for (const m of [job('one', 1), job('two', 2)]) {
      const r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(m) });
      assert.equal(r.code, 0, r.stderr);
    }
    // The operator's children: the Indexed Job, its Service, each pod's host name in it.
    const trainer = await waitFor(
      'two: its trainer Job',
      async () => {
        const list = await admin.request<{ items: Job[] }>('GET', `/apis/batch/v1/namespaces/${NS}/jobs`, {
          query: { labelSelector: 'tilestream.io/job-name=two' },
        });
        return list.items[0];
      },
      { timeoutMs: 60_000, intervalMs: 300 },
    );
    assert.deepEqual(
      [trainer.spec.completionMode, trainer.spec.completions, trainer.spec.parallelism],
      ['Indexed', 2, 2],
    );
    assert.equal(trainer.spec.template.spec.subdomain, 'two-ranks');
    const env = Object.fromEntries(
      (trainer.spec.template.spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]),
    );
    assert.equal(env.TILESTREAM_REPLICAS, '2');
    assert.equal(env.TILESTREAM_RANKS_PER_REPLICA, '1');
    assert.equal(
      env.TILESTREAM_REPLICA_HOSTS,
      `${trainer.metadata.name}-0.two-ranks,${trainer.metadata.name}-1.two-ranks`,
    );
    const service = await admin.request<{ spec: { clusterIP?: string; publishNotReadyAddresses?: boolean } }>(
      'GET',
      `/api/v1/namespaces/${NS}/services/two-ranks`,
    );
    assert.equal(service.spec.clusterIP, 'None');
    assert.equal(service.spec.publishNotReadyAddresses, true);
    const running = await until(
      'two',
      'both pods running',
      (s) => s.status?.distributed?.ranks === '2/2' || s.status?.phase === 'Succeeded',
      120_000,
    );
    assert.equal(running.status?.distributed?.worldSize, 2);
    const pods = await podsOf('two');
    assert.deepEqual(pods.map((p) => `${p.spec.hostname}.${p.spec.subdomain}`).sort(), [
      `${trainer.metadata.name}-0.two-ranks`,
      `${trainer.metadata.name}-1.two-ranks`,
    ]);
    // Both on the one planned class (its node has room for both).
    assert.equal(new Set(pods.map((p) => p.spec.nodeName)).size, 1);

    const [one, two] = await Promise.all([
      until('one', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 300_000),
      until('two', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 300_000),
    ]);
    assert.equal(two.status?.plan?.gpuClass, one.status?.plan?.gpuClass);
    assert.equal(two.status?.progress?.step, 8, 'the optimizer steps of one rank: 16 images, batch 2');
    assert.equal(two.status?.restarts, 0);
    // The same weights to float tolerance, so the same validation loss and the same recent training loss.
    const figures = (x: Stj) => ({
      validationLoss: x.status?.result?.validationLoss,
      trainLoss: x.status?.progress?.loss,
    });
    for (const [k, a] of Object.entries(figures(one))) {
      const b = figures(two)[k as keyof ReturnType<typeof figures>];
      assert.ok(typeof a === 'number' && typeof b === 'number', `${k}: ${a} and ${b}`);
      assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(a)), `${k}: one rank ${a}, two ranks ${b}`);
    }
    // Each rank applied its own entry; the operator counted them. The list holds the entries in the
    // order the ranks first applied them, so compare them by rank.
    assert.deepEqual(
      (two.status?.ranks ?? [])
        .map((r) => [r.rank, r.replicaIndex])
        .sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0)),
      [
        [0, 0],
        [1, 1],
      ],
    );
    assert.ok((two.status?.ranks ?? []).every((r) => r.pod?.startsWith(`${trainer.metadata.name}-`)));
    assert.equal(two.status?.distributed?.ranksReporting, 2);
  });
  it('without a queue, a rank whose peer never gets a GPU exits 6: PeersUnavailable, then Failed when backoffLimit is used', async () => {
    // 3 of the 4 GPUs of the 16 GiB node are taken, so only one of the job's two pods can start.
    const hog = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'gpu-hog',
        namespace: NS,
        // Seen by the operator's pod cache, which counts the GPUs in use.
        labels: { 'app.kubernetes.io/managed-by': 'tilestream-operator' },
      },
      spec: {
        nodeName: 'gpu-16g-0',
        restartPolicy: 'Never',
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
        containers: [
          {
            name: 'hog',
            image: 'hog',
            command: ['sleep', '600'],
            resources: { limits: { 'nvidia.com/gpu': '3' } },
          },
        ],
      },
    };
    let r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(hog) });
    assert.equal(r.code, 0, r.stderr);
    const m = job('alone', 2);
    const alone = {
      ...m,
      spec: {
        ...m.spec,
        resources: { ...m.spec.resources, nodeSelector: { [CLASS_LABEL]: 'gpu-16g' } },
        runPolicy: { backoffLimit: 0 },
      },
    };
    // The hog must be in the operator's cache before the job is planned.
    await waitFor(
      'the GPU hog runs',
      async () =>
        (await admin.request<Pod>('GET', `/api/v1/namespaces/${NS}/pods/gpu-hog`)).status?.phase ===
          'Running' || undefined,
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(alone) });
    assert.equal(r.code, 0, r.stderr);
    const planned = await until(
      'alone',
      'planned',
      (s) => conditionOf(s, 'Planned')?.status === 'True',
      60_000,
    );
    assert.match(
      conditionOf(planned, 'Planned')?.message ?? '',
      /has free GPUs for 1 of the job's 2 trainer pods now: the others wait for GPUs/,
    );
    const failed = await waitFor(
      'alone: Failed',
      async () => {
        const s = await get('alone');
        return conditionOf(s, 'Failed')?.status === 'True' ? s : undefined;
      },
      { timeoutMs: (PEER_TIMEOUT_SECONDS + 120) * 1000, intervalMs: 1000 },
    );
    const reason = conditionOf(failed, 'Failed');
    assert.equal(reason?.reason, 'PeersUnavailable', JSON.stringify(failed.status?.conditions));
    assert.match(
      reason?.message ?? '',
      /a rank in pod alone-0-0-\w+ \(replica 0\) exited with code 6: a peer did not arrive within the peer timeout/,
    );
    assert.match(reason?.message ?? '', /name a Kueue LocalQueue/);
    r = await plane.kubectl(['delete', 'pod', 'gpu-hog', '-n', NS, '--wait=false']);
    assert.equal(r.code, 0, r.stderr);
  });
});
