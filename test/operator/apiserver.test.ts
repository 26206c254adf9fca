// The operator against a real kube-apiserver (test/controlplane; skipped with the reason when the
// binaries cannot be had): the CRD applied, a fake A100 node registered, a StreamingTrainingJob
// created → status.plan set and the trainer Job, ConfigMap and RBAC created with owner references;
// the operator runs with only the permissions operator/rbac.ts lists; the trainer's service account
// may patch this job's status and nothing else, and the operator's
// later status writes leave the trainer's progress alone. Every child carries a controller owner
// reference (the garbage collector's cue; waiting for it here would cost its 30 s rediscovery of the
// new CRD, so the control-plane suite covers collection itself).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { operatorConfig } from '../../operator/config.ts';
import { ApiError, CONTENT_TYPE, KubeClient } from '../../operator/kube/client.ts';
import type { Job } from '../../operator/kube/types.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';

const started = await startControlPlaneOrSkip({
  controllers: ['node-lifecycle-controller', 'serviceaccount-controller', 'serviceaccount-token-controller'],
});
if (started.skip) process.stderr.write(`SKIP operator API-server smoke test: ${started.skip}\n`);

const STJ = '/apis/tilestream.io/v1alpha1/namespaces/team/streamingtrainingjobs';
const manifest = (name: string) => ({
  apiVersion: 'tilestream.io/v1alpha1',
  kind: 'StreamingTrainingJob',
  metadata: { name, namespace: 'team' },
  spec: {
    model: { architecture: 'smallcnn', width: 8, head: { pooling: 'max', classes: 1 } },
    data: { root: 'data', train: 'train.csv', imageSize: { height: 16384, width: 16384 }, channels: 1 },
    training: { epochs: 1, loss: 'binary-cross-entropy' },
  },
});

interface Stj {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    phase?: string;
    plan?: { tileSize?: number; gpuProduct?: string; memorySaved?: string };
    progress?: { epoch?: number; percent?: string };
    conditions?: { type: string; status: string; reason: string }[];
  };
}

describe('the operator on a real kube-apiserver', { skip: started.skip, timeout: 180_000 }, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  let exit: Promise<number>;
  let nodes: Awaited<ReturnType<typeof registerFakeGpuNodes>>;

  before(async () => {
    await installCrd(plane);
    nodes = await registerFakeGpuNodes(
      plane.kubeConfig,
      [{ name: 'gpu-40g', product: 'A100-SXM4-40GB', memoryMiB: 40960, gpuCount: 8 }],
      { kubeConfigForNode: (n) => plane.nodeKubeConfig(n) },
    );
    await plane.createNamespace('team');
    // The operator runs as a service account holding exactly the rules operator/rbac.ts lists.
    const { kubeConfig: operatorKc } = await createOperatorAccount(plane, 'team');
    const config = operatorConfig({
      leaseNamespace: 'team',
      identity: 'smoke-0',
      metricsPort: 0,
      healthPort: 0,
      trainerImage: 'tilestream:smoke',
    });
    exit = runOperator(config, {
      signal: stop.signal,
      kubeConfig: operatorKc,
      log: silentLogger,
      handleSignals: false,
    });
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await nodes?.stop();
    await plane.stop();
  });

  it('plans the job, creates its trainer Job and identity, and scopes the trainer to its own status', async () => {
    await admin.request('POST', STJ, { body: manifest('demo') });
    const stj = await waitFor('status.plan', async () => {
      const s = await admin.request<Stj>('GET', `${STJ}/demo`);
      return s.status?.plan?.tileSize ? s : undefined;
    });
    assert.equal(stj.status?.plan?.gpuProduct, 'A100-SXM4-40GB');
    assert.equal(stj.status?.phase, 'Planned');
    assert.deepEqual(
      stj.status?.conditions?.map((c) => `${c.type}=${c.status}/${c.reason}`),
      ['Planned=True/PlanFound', 'Running=False/TrainerStarting', 'SpecApplied=True/SpecCurrent'],
    );
    const job = await admin.request<
      Job & { spec: { template: { spec: { containers: { args: string[] }[] } } } }
    >('GET', '/apis/batch/v1/namespaces/team/jobs/demo-0');
    assert.deepEqual(job.spec.template.spec.containers[0]?.args.slice(0, 4), [
      'train',
      '/etc/tilestream/job.yaml',
      '--tile-size',
      String(stj.status?.plan?.tileSize),
    ]);
    assert.equal(job.metadata.ownerReferences?.[0]?.name, 'demo');
    for (const path of [
      '/api/v1/namespaces/team/configmaps/demo-job',
      '/api/v1/namespaces/team/serviceaccounts/demo-trainer',
      '/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/demo-trainer',
      '/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/demo-trainer',
    ]) {
      const child = await admin.request<Job>('GET', path);
      assert.deepEqual(
        child.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.controller, r.blockOwnerDeletion]),
        [['StreamingTrainingJob', 'demo', true, true]],
        path,
      );
    }
    const printed = await plane.kubectl(['get', 'stj', '-n', 'team', 'demo']);
    assert.match(printed.stdout, /demo\s+Planned\s+\d+\s+A100-SXM4-40GB\s+\S+Gi \(\d+%\)/);

    // The trainer's identity: patch this job's status (server-side apply), nothing else.
    const trainerKc = new KubeConfig();
    trainerKc.loadFromFile(await plane.serviceAccountKubeconfig('team', 'demo-trainer'));
    const trainer = new KubeClient(trainerKc);
    const progress = (name: string) =>
      trainer.request('PATCH', `${STJ}/${name}/status`, {
        body: {
          apiVersion: 'tilestream.io/v1alpha1',
          kind: 'StreamingTrainingJob',
          metadata: { name, namespace: 'team' },
          status: { progress: { epoch: 1, percent: '42%' } },
        },
        contentType: CONTENT_TYPE.apply,
        query: { fieldManager: 'tilestream-trainer', force: true },
      });
    await progress('demo');
    await admin.request('POST', STJ, { body: manifest('other') });
    await assert.rejects(progress('other'), (e: Error) => e instanceof ApiError && e.status === 403);
    await assert.rejects(
      trainer.request('GET', `${STJ}/demo`),
      (e: Error) => e instanceof ApiError && e.status === 403,
    );
    await assert.rejects(
      trainer.request('DELETE', '/apis/batch/v1/namespaces/team/jobs/demo-0'),
      (e: Error) => e instanceof ApiError && e.status === 403,
    );

    // Suspending makes the operator write its status again; the trainer's progress stays.
    await admin.request('PATCH', `${STJ}/demo`, {
      body: { spec: { runPolicy: { suspend: true } } },
      contentType: CONTENT_TYPE.mergePatch,
    });
    const suspended = await waitFor('phase Suspended', async () => {
      const s = await admin.request<Stj>('GET', `${STJ}/demo`);
      return s.status?.phase === 'Suspended' ? s : undefined;
    });
    assert.equal(suspended.status?.observedGeneration, 2);
    assert.deepEqual(suspended.status?.progress, { epoch: 1, percent: '42%' });
    const suspendedJob = await admin.request<{ spec: { suspend: boolean } }>(
      'GET',
      '/apis/batch/v1/namespaces/team/jobs/demo-0',
    );
    assert.equal(suspendedJob.spec.suspend, true);
  });
});
