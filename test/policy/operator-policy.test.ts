// The operator's re-check of the tenant policy on a real API server, with no admission policy
// installed (a job admitted before the policy existed, or a binding an admin removed): the operator,
// running as exactly operator/rbac.ts's rules with --tenant-policy, reads the ConfigMap, refuses a
// job outside it (Planned=False PolicyViolation, a Warning Event, no trainer Job), and runs a job
// inside it, whose trainer Job requests the default memory and CPU of its plan.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { parseJobPlan } from '../../operator/children/job-plan.ts';
import { defaultRequests } from '../../operator/children/trainer-job.ts';
import { operatorConfig } from '../../operator/config.ts';
import { isNotFound, KubeClient } from '../../operator/kube/client.ts';
import type { Job } from '../../operator/kube/types.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { DEFAULT_POLICY, TRAINER_REPO } from './cases.ts';

const started = await startControlPlaneOrSkip({
  controllers: ['node-lifecycle-controller', 'serviceaccount-controller', 'serviceaccount-token-controller'],
});

const NS = 'team';
const POLICY = { namespace: 'tilestream-system', name: 'tilestream-tenant-policy' };
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;
const manifest = (name: string, image: string) => ({
  apiVersion: 'tilestream.io/v1alpha1',
  kind: 'StreamingTrainingJob',
  metadata: { name, namespace: NS },
  spec: {
    image,
    model: { architecture: 'smallcnn', width: 8, head: { pooling: 'max', classes: 1 } },
    data: { root: 'data', train: 'train.csv', imageSize: { height: 16384, width: 16384 }, channels: 1 },
    training: { epochs: 1, loss: 'binary-cross-entropy' },
  },
});
type Stj = StreamingTrainingJob & {
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
};

describe('the operator re-checks the tenant policy', { skip: started.skip, timeout: 180_000 }, () => {
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
    await plane.createNamespace(NS);
    await plane.createNamespace(POLICY.namespace);
    await admin.request('POST', `/api/v1/namespaces/${POLICY.namespace}/configmaps`, {
      body: { metadata: { name: POLICY.name }, data: DEFAULT_POLICY },
    });
    const { kubeConfig } = await createOperatorAccount(plane, NS);
    const config = operatorConfig({
      leaseNamespace: NS,
      identity: 'policy-0',
      metricsPort: 0,
      healthPort: 0,
      trainerImage: `${TRAINER_REPO}:0.1.0`,
      tenantPolicy: `${POLICY.namespace}/${POLICY.name}`,
    });
    exit = runOperator(config, { signal: stop.signal, kubeConfig, log: silentLogger, handleSignals: false });
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await nodes?.stop();
    await plane.stop();
  });

  it('refuses a job outside the policy: PolicyViolation, a Warning Event, no trainer Job', async () => {
    await admin.request('POST', STJ, { body: manifest('outside', 'docker.io/library/busybox:1') });
    const stj = await waitFor('Planned=False', async () => {
      const s = await admin.request<Stj>('GET', `${STJ}/outside`);
      return s.status?.conditions?.find((c) => c.type === 'Planned' && c.status === 'False') && s;
    });
    const planned = stj.status?.conditions?.find((c) => c.type === 'Planned');
    assert.equal(planned?.reason, 'PolicyViolation');
    assert.equal(
      planned?.message,
      'the tenant policy refuses this job: spec.image: docker.io/library/busybox:1 is not an allowed trainer ' +
        `image; the tenant policy (ConfigMap ${POLICY.namespace}/${POLICY.name}, allowedImages) allows ` +
        `${TRAINER_REPO}:*, ${TRAINER_REPO}@*, ${TRAINER_REPO}-cpu:*, ${TRAINER_REPO}-cpu@*`,
    );
    await assert.rejects(admin.request('GET', `/apis/batch/v1/namespaces/${NS}/jobs/outside-0`), isNotFound);
    const events = await admin.request<{
      items: { reason: string; type: string; involvedObject: { name: string } }[];
    }>('GET', `/api/v1/namespaces/${NS}/events`);
    assert.ok(
      events.items.some(
        (e) => e.reason === 'PolicyViolation' && e.type === 'Warning' && e.involvedObject.name === 'outside',
      ),
    );
  });

  it('runs a job inside the policy, its trainer requesting the default memory and CPU of its plan', async () => {
    await admin.request('POST', STJ, { body: manifest('inside', `${TRAINER_REPO}:0.1.0`) });
    const job = await waitFor('the trainer Job', () =>
      admin.request<Job>('GET', `/apis/batch/v1/namespaces/${NS}/jobs/inside-0`).catch((e) => {
        if (isNotFound(e)) return undefined;
        throw e;
      }),
    );
    const stj = await admin.request<Stj>('GET', `${STJ}/inside`);
    const plan = parseJobPlan(job.metadata.annotations?.['tilestream.io/plan']);
    assert.ok(plan?.gpuClass, 'a GPU plan');
    const container = (
      job as unknown as { spec: { template: { spec: { containers: { resources: unknown }[] } } } }
    ).spec.template.spec.containers[0];
    assert.deepEqual(container?.resources, {
      limits: { 'nvidia.com/gpu': '1' },
      requests: defaultRequests(stj, plan),
    });
    // 1 GiB + 3 × 16384² grey bytes (256 MiB each)
    assert.deepEqual(defaultRequests(stj, plan), { memory: `${1024 + 3 * 256}Mi`, cpu: '1' });
  });
});
