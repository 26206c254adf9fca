// The trainer Job a customised StreamingTrainingJob gets (issue 15 items 4 and 5): priority class,
// queueing labels and annotations, spec.pod's env, volumes, service account, pull secrets and node
// affinity, merged with what the operator sets itself; and placement honours the node affinity.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { JobPlan } from '../../operator/children/job-plan.ts';
import { managedElsewhere, queueNameOf } from '../../operator/children/pod-customisation.ts';
import { buildTrainerJob } from '../../operator/children/trainer-job.ts';
import { buildTrainerRoleBinding } from '../../operator/children/trainer-rbac.ts';
import type { GpuOffer } from '../../operator/cluster/gpu-inventory.ts';
import { nodeAffinityAdmits } from '../../operator/cluster/node-affinity.ts';
import { admits } from '../../operator/cluster/placement.ts';
import { FULL_POD } from '../crds/invalid-manifests.ts';
import { makeStj } from './builders.ts';

const settings = {
  image: 'registry.local/tilestream:0.1.0',
  imagePullSecrets: ['operator-pull', 'registry-creds'],
  metricsPort: 9400,
  runAsUser: 1000,
  terminationGracePeriodSeconds: 120,
};
const plan: JobPlan = {
  tileSize: 2048,
  gpuClass: 'a100',
  gpuProduct: 'A100',
  gpuMemoryBytes: 40 * 2 ** 30,
  resourceName: 'nvidia.com/gpu',
  selector: [{ key: 'nvidia.com/gpu.product', values: ['A100'] }],
};
const custom = () =>
  makeStj('custom', 'team')
    .spec((s) => {
      s.pod = structuredClone(FULL_POD);
    })
    .runPolicy({ priorityClassName: 'research-high', queueName: 'gpu' })
    .meta({
      labels: {
        'kueue.x-k8s.io/priority-class': 'urgent',
        'kueue.x-k8s.io/queue-name': 'ignored-for-runPolicy',
        team: 'pathology',
      },
      annotations: { 'kueue.x-k8s.io/max-exec-time-seconds': '3600', 'note.example.org/x': 'y' },
    });
const build = (stj = custom().obj()) =>
  buildTrainerJob({ stj, plan, attempt: 0, tileReductions: 0, restartsBefore: 0, suspend: true, settings });

describe('scheduling integration (issue 15 item 4)', () => {
  it('copies spec.runPolicy.priorityClassName to the pod', () => {
    assert.equal(build().spec?.template.spec?.priorityClassName, 'research-high');
    assert.equal(build(makeStj().obj()).spec?.template.spec?.priorityClassName, undefined);
  });

  it("propagates kueue.x-k8s.io/ labels and annotations to the Job, and nothing else of the job's", () => {
    const job = build();
    assert.equal(job.metadata?.labels?.['kueue.x-k8s.io/priority-class'], 'urgent');
    assert.equal(job.metadata?.labels?.team, undefined);
    assert.equal(job.metadata?.annotations?.['kueue.x-k8s.io/max-exec-time-seconds'], '3600');
    assert.equal(job.metadata?.annotations?.['note.example.org/x'], undefined);
  });

  it('spec.runPolicy.queueName wins over a queue-name label; the label alone queues the job', () => {
    assert.equal(build().metadata?.labels?.['kueue.x-k8s.io/queue-name'], 'gpu');
    const labelled = makeStj()
      .meta({ labels: { 'kueue.x-k8s.io/queue-name': 'team-q' } })
      .obj();
    assert.equal(queueNameOf(labelled), 'team-q');
    assert.equal(build(labelled).metadata?.labels?.['kueue.x-k8s.io/queue-name'], 'team-q');
    assert.equal(queueNameOf(makeStj().obj()), undefined);
    assert.equal(build(makeStj().obj()).metadata?.labels?.['kueue.x-k8s.io/queue-name'], undefined);
  });

  it('managedBy: unset or the operator runs it here; any other controller does', () => {
    assert.equal(managedElsewhere(makeStj().obj().spec), undefined);
    assert.equal(
      managedElsewhere(makeStj().runPolicy({ managedBy: 'tilestream.io/operator' }).obj().spec),
      undefined,
    );
    assert.equal(
      managedElsewhere(makeStj().runPolicy({ managedBy: 'kueue.x-k8s.io/multikueue' }).obj().spec),
      'kueue.x-k8s.io/multikueue',
    );
  });
});

describe('pod customisation (issue 15 item 5)', () => {
  const pod = build().spec?.template.spec;
  const trainer = pod?.containers[0];

  it("adds spec.pod.env after the operator's variables, valueFrom as written", () => {
    const env = trainer?.env ?? [];
    assert.deepEqual(
      env.map((e) => e.name),
      [
        'TILESTREAM_TERMINATION_MESSAGE_PATH',
        'HOME',
        'TILESTREAM_GPU_MEMORY',
        'LOG_LEVEL',
        'S3_ENDPOINT',
        'S3_SECRET',
      ],
    );
    assert.deepEqual(env.at(-1), {
      name: 'S3_SECRET',
      valueFrom: { secretKeyRef: { name: 'storage-creds', key: 'secret', optional: true } },
    });
    assert.deepEqual(env.at(-3), { name: 'LOG_LEVEL', value: 'debug' });
  });

  it('mounts the extra volumes read-only unless readOnly: false, after the operator volumes', () => {
    const mounts = Object.fromEntries((trainer?.volumeMounts ?? []).map((m) => [m.name, m]));
    assert.deepEqual(mounts.scratch, { name: 'scratch', mountPath: '/scratch', readOnly: false });
    assert.deepEqual(mounts.labels, { name: 'labels', mountPath: '/labels', readOnly: true, subPath: 'v2' });
    assert.equal(mounts.creds?.readOnly, true);
    assert.equal(mounts.data?.mountPath, '/data');
    const vols = Object.fromEntries((pod?.volumes ?? []).map((v) => [v.name, v]));
    assert.deepEqual(vols.scratch, { name: 'scratch', emptyDir: {} });
    assert.deepEqual(vols.labels, { name: 'labels', configMap: { name: 'label-map' } });
    assert.deepEqual(vols.creds, { name: 'creds', secret: { secretName: 'storage-creds' } });
    assert.deepEqual(vols.more, {
      name: 'more',
      persistentVolumeClaim: { claimName: 'more-data', readOnly: true },
    });
    assert.deepEqual(vols.archive, {
      name: 'archive',
      hostPath: { path: '/data/slides/archive', type: 'Directory' },
    });
    assert.deepEqual(
      (pod?.volumes ?? []).map((v) => v.name).slice(0, 3),
      ['workspace', 'job', 'tmp'],
      "the operator's volumes come first",
    );
  });

  it('runs as spec.pod.serviceAccountName, which the RoleBinding lets report status', () => {
    assert.equal(pod?.serviceAccountName, 'data-reader');
    assert.deepEqual(
      buildTrainerRoleBinding(custom().obj()).subjects?.map((s) => s.name),
      ['custom-trainer', 'data-reader'],
    );
    assert.equal(build(makeStj().obj()).spec?.template.spec?.serviceAccountName, 'demo-trainer');
    assert.deepEqual(
      buildTrainerRoleBinding(makeStj().obj()).subjects?.map((s) => s.name),
      ['demo-trainer'],
    );
  });

  it("names the operator's pull secrets and the job's, each once", () => {
    assert.deepEqual(pod?.imagePullSecrets, [{ name: 'operator-pull' }, { name: 'registry-creds' }]);
  });

  it('adds the GPU class pin to every required node affinity term and keeps the preferences', () => {
    const na = pod?.affinity?.nodeAffinity;
    const pin = { key: 'nvidia.com/gpu.product', operator: 'In', values: ['A100'] };
    assert.deepEqual(
      na?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms.map((t) => t.matchExpressions),
      [
        [
          { key: 'topology.kubernetes.io/zone', operator: 'In', values: ['a', 'b'] },
          { key: 'example.org/retired', operator: 'DoesNotExist' },
          pin,
        ],
        [{ key: 'gpu-generation', operator: 'Gt', values: ['7'] }, pin],
      ],
    );
    assert.deepEqual(
      na?.preferredDuringSchedulingIgnoredDuringExecution,
      FULL_POD.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution,
    );
    // Without spec.pod: the pin alone, as before.
    assert.deepEqual(
      build(makeStj().obj()).spec?.template.spec?.affinity?.nodeAffinity
        ?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
      [{ matchExpressions: [pin] }],
    );
  });

  it('keeps the restricted Pod Security settings whatever spec.pod says', () => {
    assert.equal(pod?.securityContext?.runAsNonRoot, true);
    assert.equal(trainer?.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(trainer?.securityContext?.readOnlyRootFilesystem, true);
  });
});

describe('placement honours the required node affinity', () => {
  const spec = custom().obj().spec;
  const offer = (labels: Record<string, string>): GpuOffer => ({
    node: 'n',
    resourceName: 'nvidia.com/gpu',
    product: 'A100',
    memoryBytes: 1,
    memorySource: 'gfd',
    allocatable: 1,
    selector: [],
    taints: [],
    labels,
  });
  const cases: [string, Record<string, string>, boolean][] = [
    ['zone a, not retired', { 'topology.kubernetes.io/zone': 'a' }, true],
    ['zone c', { 'topology.kubernetes.io/zone': 'c' }, false],
    ['zone a but retired', { 'topology.kubernetes.io/zone': 'a', 'example.org/retired': 'yes' }, false],
    ['no zone, generation 8 (second term)', { 'gpu-generation': '8' }, true],
    ['no zone, generation 7 (Gt is strict)', { 'gpu-generation': '7' }, false],
    ['a generation that is no integer', { 'gpu-generation': 'ampere' }, false],
  ];
  for (const [name, labels, want] of cases) {
    it(`${name}: ${want ? 'admitted' : 'refused'}`, () => {
      assert.equal(nodeAffinityAdmits(spec, labels), want);
      assert.equal(admits(spec, offer(labels)), want);
    });
  }
  it('a job without node affinity admits every node', () => {
    assert.equal(nodeAffinityAdmits(makeStj().obj().spec, {}), true);
  });
});
