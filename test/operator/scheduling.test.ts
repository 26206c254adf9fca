// Scheduling integration and pod customisation (issue 15 items 4 and 5) with the operator on a real
// kube-apiserver, running as a service account with exactly operator/rbac.ts's rules: the priority
// class, Kueue labels and annotations reach the trainer Job; a queued job whose Kueue is missing,
// then whose LocalQueue is missing, says so in QueueAvailable (and an event) and says it no more
// once the queue exists; a job managed by another controller is left alone; a customised pod (env
// from Secret and ConfigMap keys, extra volumes, its own service account, pull secrets, node
// affinity) is built into a Job the API server accepts, and that account may report the status.
// The unit part checks the Kueue probe's answers on a scripted client.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { ConditionReason, type StreamingTrainingJob } from '../../crds/index.ts';
import { operatorConfig } from '../../operator/config.ts';
import { ApiError, CONTENT_TYPE, KubeClient } from '../../operator/kube/client.ts';
import type { Job } from '../../operator/kube/types.ts';
import { diagnoseQueue, KueueDiscovery, QUEUE_RECHECK_MS, queueRecheckMs } from '../../operator/kueue.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { FULL_POD } from '../crds/invalid-manifests.ts';
import { makeStj } from './builders.ts';

/** A client that answers GETs from a table; a path not in it is a 404, a number an error status. */
function scriptedClient(answers: Record<string, unknown>): { client: KubeClient; asked: string[] } {
  const asked: string[] = [];
  const request = async (_method: string, path: string) => {
    asked.push(path);
    const a = answers[path];
    if (a === undefined) throw new ApiError(404, 'NotFound', `${path} not found`);
    if (typeof a === 'number') throw new ApiError(a, 'Forbidden', `${path}: forbidden`);
    return a;
  };
  // Only request() is used by the probe; the cast keeps the fake to what it reads.
  return { client: { request } as unknown as KubeClient, asked };
}
const KUEUE_GROUP_DOC = { preferredVersion: { groupVersion: 'kueue.x-k8s.io/v1beta2' } };

describe('the Kueue probe (scripted API)', () => {
  const queued = makeStj('q', 'team').runPolicy({ queueName: 'gpu' }).obj();

  it('no kueue.x-k8s.io group: KueueNotInstalled, and discovery is asked again next time', async () => {
    const { client, asked } = scriptedClient({});
    const d = new KueueDiscovery(client);
    const r = await diagnoseQueue(client, d, queued);
    assert.equal(r?.status, 'False');
    assert.equal(r?.reason, ConditionReason.KueueNotInstalled);
    assert.match(
      r?.message ?? '',
      /^spec\.runPolicy\.queueName names LocalQueue gpu, but this cluster serves no kueue/,
    );
    await diagnoseQueue(client, d, queued);
    assert.deepEqual(asked, ['/apis/kueue.x-k8s.io', '/apis/kueue.x-k8s.io']);
  });

  it('the queue missing in the preferred version: LocalQueueNotFound; the group is remembered', async () => {
    const { client, asked } = scriptedClient({ '/apis/kueue.x-k8s.io': KUEUE_GROUP_DOC });
    const d = new KueueDiscovery(client, { ttlMs: 60_000, now: () => 0 });
    const r = await diagnoseQueue(client, d, queued);
    assert.equal(r?.reason, ConditionReason.LocalQueueNotFound);
    assert.match(r?.message ?? '', /LocalQueue team\/gpu does not exist/);
    await diagnoseQueue(client, d, queued);
    assert.deepEqual(asked, [
      '/apis/kueue.x-k8s.io',
      '/apis/kueue.x-k8s.io/v1beta2/namespaces/team/localqueues/gpu',
      '/apis/kueue.x-k8s.io/v1beta2/namespaces/team/localqueues/gpu',
    ]);
  });

  it('the queue found: True; a queue-name label counts as the queue', async () => {
    const { client } = scriptedClient({
      '/apis/kueue.x-k8s.io': KUEUE_GROUP_DOC,
      '/apis/kueue.x-k8s.io/v1beta2/namespaces/team/localqueues/lq': {},
    });
    const labelled = makeStj('l', 'team')
      .meta({ labels: { 'kueue.x-k8s.io/queue-name': 'lq' } })
      .obj();
    const r = await diagnoseQueue(client, new KueueDiscovery(client), labelled);
    assert.deepEqual([r?.status, r?.reason], ['True', ConditionReason.LocalQueueFound]);
  });

  it('forbidden is Unknown with the error, not a missing queue; no queue name: no condition', async () => {
    const { client } = scriptedClient({
      '/apis/kueue.x-k8s.io': KUEUE_GROUP_DOC,
      '/apis/kueue.x-k8s.io/v1beta2/namespaces/team/localqueues/gpu': 403,
    });
    const r = await diagnoseQueue(client, new KueueDiscovery(client), queued);
    assert.deepEqual([r?.status, r?.reason], ['Unknown', ConditionReason.QueueCheckFailed]);
    assert.match(r?.message ?? '', /forbidden/);
    assert.equal(await diagnoseQueue(client, new KueueDiscovery(client), makeStj().obj()), undefined);
  });
});

describe('a queue not usable yet is checked again soon', () => {
  const cond = (type: string, status: 'True' | 'False') => ({
    type,
    status,
    reason: 'R',
    message: '',
    lastTransitionTime: '2026-01-01T00:00:00Z',
  });
  const queued = () => makeStj('q', 'team').runPolicy({ queueName: 'gpu' });
  const cases: [string, StreamingTrainingJob, number | undefined][] = [
    ['queued, not checked yet', queued().obj(), QUEUE_RECHECK_MS],
    [
      'queued, queue missing',
      queued()
        .status({ conditions: [cond('QueueAvailable', 'False')] })
        .obj(),
      QUEUE_RECHECK_MS,
    ],
    [
      'queued, queue found',
      queued()
        .status({ conditions: [cond('QueueAvailable', 'True')] })
        .obj(),
      undefined,
    ],
    [
      'queued and finished',
      queued()
        .status({ conditions: [cond('QueueAvailable', 'False'), cond('Succeeded', 'True')] })
        .obj(),
      undefined,
    ],
    ['not queued', makeStj().obj(), undefined],
  ];
  for (const [name, stj, want] of cases)
    it(`${name}: ${want ?? 'resync'}`, () => assert.equal(queueRecheckMs(stj), want));
});

// ---------------------------------------------------------------- on a real API server

const started = await startControlPlaneOrSkip({
  controllers: ['node-lifecycle-controller', 'serviceaccount-controller', 'serviceaccount-token-controller'],
});

const NS = 'sched';
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;
const JOBS = `/apis/batch/v1/namespaces/${NS}/jobs`;
const base = (name: string, extra: Record<string, unknown> = {}, meta: Record<string, unknown> = {}) => ({
  apiVersion: 'tilestream.io/v1alpha1',
  kind: 'StreamingTrainingJob',
  metadata: { name, namespace: NS, ...meta },
  spec: {
    model: { architecture: 'smallcnn', width: 8, head: { pooling: 'max', classes: 1 } },
    data: { root: '/data', train: 'train.csv', imageSize: { height: 4096, width: 4096 }, channels: 1 },
    training: { epochs: 1, loss: 'binary-cross-entropy' },
    ...extra,
  },
});

/** A LocalQueue CRD shaped as Kueue's (group, kind, scope), enough for discovery and GET. */
const LOCALQUEUE_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'localqueues.kueue.x-k8s.io' },
  spec: {
    group: 'kueue.x-k8s.io',
    scope: 'Namespaced',
    names: { plural: 'localqueues', singular: 'localqueue', kind: 'LocalQueue', shortNames: ['queue', 'lq'] },
    versions: [
      {
        name: 'v1beta2',
        served: true,
        storage: true,
        schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
      },
    ],
  },
};

type Obj = StreamingTrainingJob & {
  status?: { conditions?: { type: string; status: string; reason: string }[] };
};

describe('scheduling and pod customisation on a real kube-apiserver', {
  skip: started.skip,
  timeout: 240_000,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  let exit: Promise<number>;
  let nodes: Awaited<ReturnType<typeof registerFakeGpuNodes>>;

  const get = (name: string) => admin.request<Obj>('GET', `${STJ}/${name}`);
  const condition = async (name: string, type: string) =>
    (await get(name)).status?.conditions?.find((c) => c.type === type);
  /** A label edit: a new resourceVersion, so the operator reconciles the job again now. */
  const touch = (name: string, n: number) =>
    admin.request('PATCH', `${STJ}/${name}`, {
      body: { metadata: { labels: { touched: String(n) } } },
      contentType: CONTENT_TYPE.mergePatch,
    });

  before(async () => {
    await installCrd(plane);
    nodes = await registerFakeGpuNodes(
      plane.kubeConfig,
      [{ name: 'gpu-40g', product: 'A100-SXM4-40GB', memoryMiB: 40960, gpuCount: 8 }],
      { kubeConfigForNode: (n) => plane.nodeKubeConfig(n) },
    );
    await plane.createNamespace(NS);
    await admin.request('POST', '/apis/scheduling.k8s.io/v1/priorityclasses', {
      body: { metadata: { name: 'research-high' }, value: 1000, description: 'test' },
    });
    const { kubeConfig: operatorKc } = await createOperatorAccount(plane, NS);
    exit = runOperator(
      operatorConfig({
        leaseNamespace: NS,
        identity: 'sched-0',
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:sched',
      }),
      { signal: stop.signal, kubeConfig: operatorKc, log: silentLogger, handleSignals: false },
    );
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await nodes?.stop();
    await plane.stop();
  });

  it('copies the priority class to the pod and the Kueue labels and annotations to the Job', async () => {
    await admin.request('POST', STJ, {
      body: base(
        'prio',
        { runPolicy: { priorityClassName: 'research-high' } },
        {
          labels: { 'kueue.x-k8s.io/priority-class': 'urgent', team: 'pathology' },
          annotations: { 'kueue.x-k8s.io/max-exec-time-seconds': '3600' },
        },
      ),
    });
    const job = await waitFor('the trainer Job', () =>
      admin.request<Job>('GET', `${JOBS}/prio-0`).catch(() => undefined),
    );
    const spec = job.spec as { template: { spec: { priorityClassName?: string } } };
    assert.equal(spec.template.spec.priorityClassName, 'research-high');
    assert.equal(job.metadata.labels?.['kueue.x-k8s.io/priority-class'], 'urgent');
    assert.equal(job.metadata.labels?.team, undefined);
    assert.equal(job.metadata.annotations?.['kueue.x-k8s.io/max-exec-time-seconds'], '3600');
  });

  it('a queued job without Kueue, then without its LocalQueue, says so; the queue found, it waits for admission', async (t) => {
    await admin.request('POST', STJ, { body: base('queued', { runPolicy: { queueName: 'gpu-queue' } }) });
    const noKueue = await waitFor('QueueAvailable', () => condition('queued', 'QueueAvailable'));
    assert.deepEqual([noKueue.status, noKueue.reason], ['False', 'KueueNotInstalled']);
    t.diagnostic(
      `${(await get('queued')).status?.conditions?.map((c) => `${c.type}=${c.status}/${c.reason}`)}`,
    );
    const events = await waitFor('the Warning event', async () => {
      const list = await admin.request<{ items: { reason: string; type: string; message: string }[] }>(
        'GET',
        `/api/v1/namespaces/${NS}/events`,
        { query: { fieldSelector: 'involvedObject.name=queued' } },
      );
      const e = list.items.filter((x) => x.reason === 'KueueNotInstalled');
      return e.length > 0 ? e : undefined;
    });
    assert.equal(events[0]?.type, 'Warning');
    assert.match(events[0]?.message ?? '', /spec\.runPolicy\.queueName names LocalQueue gpu-queue/);
    // The trainer Job waits suspended for an admission that nobody would give.
    const job = await admin.request<{ spec: { suspend: boolean }; metadata: Job['metadata'] }>(
      'GET',
      `${JOBS}/queued-0`,
    );
    assert.equal(job.spec.suspend, true);
    assert.equal(job.metadata.labels?.['kueue.x-k8s.io/queue-name'], 'gpu-queue');

    await admin.request('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
      body: LOCALQUEUE_CRD,
    });
    await waitFor('LocalQueue served', () =>
      admin
        .request('GET', `/apis/kueue.x-k8s.io/v1beta2/namespaces/${NS}/localqueues`)
        .catch(() => undefined),
    );
    let n = 0;
    const missing = await waitFor('LocalQueueNotFound', async () => {
      await touch('queued', ++n);
      const c = await condition('queued', 'QueueAvailable');
      return c?.reason === 'LocalQueueNotFound' ? c : undefined;
    });
    assert.equal(missing.status, 'False');

    await admin.request('POST', `/apis/kueue.x-k8s.io/v1beta2/namespaces/${NS}/localqueues`, {
      body: {
        apiVersion: 'kueue.x-k8s.io/v1beta2',
        kind: 'LocalQueue',
        metadata: { name: 'gpu-queue' },
        spec: {},
      },
    });
    const found = await waitFor('LocalQueueFound', async () => {
      await touch('queued', ++n);
      const c = await condition('queued', 'QueueAvailable');
      return c?.reason === 'LocalQueueFound' ? c : undefined;
    });
    assert.equal(found.status, 'True');
    assert.equal((await get('queued')).status?.phase, 'Suspended');
  });

  it('a kueue.x-k8s.io/queue-name label alone queues the job: its trainer Job waits suspended for Kueue', async () => {
    await admin.request('POST', STJ, {
      body: base('labelled', {}, { labels: { 'kueue.x-k8s.io/queue-name': 'gpu-queue' } }),
    });
    const c = await waitFor('QueueAvailable', () => condition('labelled', 'QueueAvailable'));
    assert.equal(c.reason, 'LocalQueueFound', 'the LocalQueue of the test before');
    const job = await admin.request<{ spec: { suspend: boolean }; metadata: Job['metadata'] }>(
      'GET',
      `${JOBS}/labelled-0`,
    );
    assert.equal(job.metadata.labels?.['kueue.x-k8s.io/queue-name'], 'gpu-queue');
    assert.equal(job.spec.suspend, true, 'suspended until Kueue admits it, not resumed by the operator');
    assert.equal((await get('labelled')).status?.phase, 'Suspended');
  });

  it('leaves a job managed by another controller alone: no children, no status', async () => {
    await admin.request('POST', STJ, {
      body: base('remote', { runPolicy: { managedBy: 'kueue.x-k8s.io/multikueue' } }),
    });
    // A job created after it, planned: the operator has had its turn at the first.
    await admin.request('POST', STJ, { body: base('local') });
    await waitFor('the later job planned', async () => (await get('local')).status?.phase);
    await touch('remote', 1);
    await waitFor('the later job touched and reconciled', async () => {
      await touch('local', 1);
      return (await get('local')).status?.observedGeneration;
    });
    assert.equal((await get('remote')).status, undefined);
    await assert.rejects(
      admin.request('GET', `${JOBS}/remote-0`),
      (e: Error) => e instanceof ApiError && e.status === 404,
    );
  });

  it('builds a customised pod the API server accepts, and its own service account reports the status', async (t) => {
    await admin.request('POST', `/api/v1/namespaces/${NS}/serviceaccounts`, {
      body: { metadata: { name: 'data-reader' } },
    });
    // FULL_POD's node affinity (zones, a GPU generation) matches no fake node: no class is placed.
    await admin.request('POST', STJ, { body: base('nowhere', { pod: FULL_POD }) });
    const unplaced = await waitFor('Planned=False', async () => {
      const c = await condition('nowhere', 'Planned');
      return c?.status === 'False' ? c : undefined;
    });
    const why = (unplaced as { message?: string }).message ?? '';
    t.diagnostic(`${unplaced.reason}: ${why}`);
    assert.equal(unplaced.reason, 'NoGPUNodes');
    assert.match(why, /none admits this job \(.*spec\.pod\.nodeAffinity\)/);
    const onA100 = {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [
          {
            matchExpressions: [{ key: 'nvidia.com/gpu.product', operator: 'In', values: ['A100-SXM4-40GB'] }],
          },
          { matchExpressions: [{ key: 'gpu-generation', operator: 'Gt', values: ['7'] }] },
        ],
      },
    };
    await admin.request('POST', STJ, {
      body: base('custom', { pod: { ...FULL_POD, nodeAffinity: onA100 } }),
    });
    const job = await waitFor('the customised trainer Job', () =>
      admin.request<Job>('GET', `${JOBS}/custom-0`).catch(() => undefined),
    );
    const pod = (job.spec as { template: { spec: Record<string, unknown> } }).template.spec as {
      serviceAccountName: string;
      imagePullSecrets: { name: string }[];
      volumes: { name: string }[];
      containers: { env: { name: string }[]; volumeMounts: { name: string; readOnly?: boolean }[] }[];
      affinity: {
        nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: unknown[] } };
      };
    };
    assert.equal(pod.serviceAccountName, 'data-reader');
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'registry-creds' }]);
    assert.deepEqual(pod.containers[0]?.env.map((e) => e.name).slice(-3), [
      'LOG_LEVEL',
      'S3_ENDPOINT',
      'S3_SECRET',
    ]);
    for (const v of ['scratch', 'labels', 'creds', 'more', 'archive'])
      assert.ok(
        pod.volumes.some((x) => x.name === v),
        v,
      );
    assert.equal(
      pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.length,
      2,
    );

    // The account the job names may report progress on this job's status (the RoleBinding names it).
    const kc = new KubeConfig();
    kc.loadFromFile(await plane.serviceAccountKubeconfig(NS, 'data-reader'));
    await new KubeClient(kc).request('PATCH', `${STJ}/custom/status`, {
      body: {
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name: 'custom', namespace: NS },
        status: { progress: { epoch: 1 } },
      },
      contentType: CONTENT_TYPE.apply,
      query: { fieldManager: 'tilestream-trainer', force: true },
    });
  });
});
