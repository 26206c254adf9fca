import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { validateJob } from '../../crds/index.ts';
import {
  formatQuantity,
  type JobPlan,
  jobPlanOf,
  parseJobPlan,
  planStatus,
} from '../../operator/children/job-plan.ts';
import { buildTrainerJob, JOB_FILE, TRAINER_EXIT } from '../../operator/children/trainer-job.ts';
import {
  buildJobConfigMap,
  buildTrainerRole,
  buildTrainerRoleBinding,
  buildTrainerServiceAccount,
} from '../../operator/children/trainer-rbac.ts';
import { buildInventory } from '../../operator/cluster/gpu-inventory.ts';
import { gpuMemoryTable } from '../../operator/cluster/gpu-memory-table.ts';
import { EXIT } from '../../trainer/train/exit-codes.ts';
import { makeNode, makeStj } from './builders.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const settings = {
  image: 'registry.local/tilestream:0.1.0',
  metricsPort: 9400,
  runAsUser: 1000,
  terminationGracePeriodSeconds: 120,
};

const a100Plan: JobPlan = {
  tileSize: 4096,
  gpuClass: 'a100-sxm4-40gb-40960mib',
  gpuProduct: 'A100-SXM4-40GB',
  gpuMemoryBytes: 40960 * MiB,
  resourceName: 'nvidia.com/gpu',
  selector: [
    { key: 'nvidia.com/gpu.product', values: ['A100-SXM4-40GB'] },
    { key: 'nvidia.com/gpu.memory', values: ['40960'] },
  ],
  predictedPeakStreamedBytes: 3.2 * GiB,
  predictedPeakConventionalBytes: 49.4 * GiB,
  savingsRatio: 0.9352,
  overheadFactor: 1.42,
};

const build = (stj = makeStj(), o: Partial<Parameters<typeof buildTrainerJob>[0]> = {}) =>
  buildTrainerJob({
    stj: stj.obj(),
    plan: a100Plan,
    attempt: 0,
    tileReductions: 0,
    restartsBefore: 0,
    suspend: false,
    settings,
    ...o,
  });

/** The restricted Pod Security Standard, checked independently of the builder. */
function restrictedViolations(
  pod: NonNullable<NonNullable<ReturnType<typeof build>['spec']>['template']['spec']>,
): string[] {
  const v: string[] = [];
  if (pod.securityContext?.runAsNonRoot !== true) v.push('pod runAsNonRoot');
  if (pod.securityContext?.seccompProfile?.type !== 'RuntimeDefault') v.push('seccompProfile');
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) v.push('host namespaces');
  for (const c of pod.containers) {
    const sc = c.securityContext;
    if (sc?.allowPrivilegeEscalation !== false) v.push(`${c.name}: allowPrivilegeEscalation`);
    if (!sc?.capabilities?.drop?.includes('ALL')) v.push(`${c.name}: capabilities.drop ALL`);
    if (sc?.privileged) v.push(`${c.name}: privileged`);
    if ((sc?.capabilities?.add ?? []).some((x) => x !== 'NET_BIND_SERVICE'))
      v.push(`${c.name}: capabilities.add`);
  }
  for (const vol of pod.volumes ?? []) if (vol.hostPath) v.push(`hostPath volume ${vol.name}`);
  return v;
}

describe('trainer Job (pure builder)', () => {
  it('runs the trainer on the job file with the planned tile, metrics port and JSON logs', () => {
    const job = build();
    const c = job.spec?.template.spec?.containers[0];
    assert.equal(job.metadata?.name, 'demo-0');
    assert.equal(c?.image, settings.image);
    assert.equal(c?.command, undefined, "the image's entrypoint is tilestream");
    assert.deepEqual(c?.args, ['train', JOB_FILE, '--tile-size', '4096', '--metrics-port', '9400', '--json']);
    assert.deepEqual(
      c?.env?.find((e) => e.name === 'TILESTREAM_TERMINATION_MESSAGE_PATH')?.value,
      '/dev/termination-log',
    );
    assert.equal(c?.env?.find((e) => e.name === 'TILESTREAM_GPU_MEMORY')?.value, String(40960 * MiB));
    assert.deepEqual(c?.ports, [{ name: 'metrics', containerPort: 9400, protocol: 'TCP' }]);
    assert.equal(c?.terminationMessagePolicy, 'FallbackToLogsOnError');
    assert.equal(
      build(makeStj().spec((s) => (s.image = 'mine:1'))).spec?.template.spec?.containers[0]?.image,
      'mine:1',
    );
    assert.equal(job.spec?.template.spec?.imagePullSecrets, undefined);
  });

  it("names the operator's trainer image pull secrets on the pod (a private or air-gapped registry)", () => {
    const job = build(makeStj(), { settings: { ...settings, imagePullSecrets: ['regcred', 'mirror'] } });
    assert.deepEqual(job.spec?.template.spec?.imagePullSecrets, [{ name: 'regcred' }, { name: 'mirror' }]);
  });

  it('asks for one GPU of the planned resource, pins the class by node affinity, and tolerates the GPU taint', () => {
    const job = build(makeStj().resources({ memory: '32Gi', cpu: '4', nodeSelector: { zone: 'a' } }));
    const pod = job.spec?.template.spec;
    assert.deepEqual(pod?.containers[0]?.resources, {
      limits: { 'nvidia.com/gpu': '1', memory: '32Gi' },
      requests: { memory: '32Gi', cpu: '4' },
    });
    assert.deepEqual(
      pod?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
      [
        {
          matchExpressions: [
            { key: 'nvidia.com/gpu.product', operator: 'In', values: ['A100-SXM4-40GB'] },
            { key: 'nvidia.com/gpu.memory', operator: 'In', values: ['40960'] },
          ],
        },
      ],
    );
    assert.deepEqual(pod?.nodeSelector, { zone: 'a' });
    assert.deepEqual(pod?.tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  });

  it('without spec.resources.memory/cpu: requests from the plan (Burstable, not BestEffort), no memory or CPU limit', () => {
    // GPU: 1 GiB host baseline + 3 decoded 8192² RGB images (192 MiB each), one CPU
    const gpu = build(
      makeStj()
        .image(8192)
        .spec((s) => ((s.data as { channels: number }).channels = 3)),
    );
    assert.deepEqual(gpu.spec?.template.spec?.containers[0]?.resources, {
      limits: { 'nvidia.com/gpu': '1' },
      requests: { memory: `${1024 + 3 * 192}Mi`, cpu: '1' },
    });
    // CPU placement: the step's planned budget is host memory too; two CPUs for the backend's threads
    const cpuPlan: JobPlan = { tileSize: 512, budgetBytes: 4 * GiB };
    const cpu = build(makeStj().resources({ gpus: 0 }), { plan: cpuPlan });
    assert.deepEqual(cpu.spec?.template.spec?.containers[0]?.resources, {
      requests: { memory: `${1024 + 4096 + Math.ceil((3 * 512 * 512) / MiB)}Mi`, cpu: '2' },
    });
    // each given value wins on its own
    const mixed = build(makeStj().image(8192).resources({ cpu: '6' }));
    assert.equal(mixed.spec?.template.spec?.containers[0]?.resources?.requests?.cpu, '6');
    assert.equal(mixed.spec?.template.spec?.containers[0]?.resources?.requests?.memory, `${1024 + 3 * 64}Mi`);
  });

  it('a MIG-mixed class requests its MIG resource', () => {
    const inv = buildInventory([makeNode('m').migMixed('A100-SXM4-80GB', '3g.40gb', 2, 40192).obj()], {
      memoryTable: gpuMemoryTable(),
    });
    const cls = inv.classes[0];
    assert.ok(cls);
    const plan = jobPlanOf({ kind: 'gpu', cls, tile: 2048, freeGpus: 2, freePods: 2 });
    const job = build(makeStj(), { plan });
    assert.deepEqual(job.spec?.template.spec?.containers[0]?.resources?.limits, {
      'nvidia.com/mig-3g.40gb': '1',
    });
    assert.deepEqual(job.spec?.template.spec?.tolerations, [
      { key: 'nvidia.com/mig-3g.40gb', operator: 'Exists', effect: 'NoSchedule' },
    ]);
  });

  it('mounts the job file, the data read-only at its root and the checkpoints read-write at their path', () => {
    const job = build(
      makeStj().checkpoint({ path: '/ckpt', volume: { persistentVolumeClaim: { claimName: 'ckpt' } } }),
    );
    const pod = job.spec?.template.spec;
    const mounts = Object.fromEntries((pod?.containers[0]?.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    assert.deepEqual(mounts['/etc/tilestream/job.yaml'], {
      name: 'job',
      mountPath: '/etc/tilestream/job.yaml',
      subPath: 'job.yaml',
      readOnly: true,
    });
    assert.equal(mounts['/etc/tilestream']?.name, 'workspace');
    assert.deepEqual(mounts['/data'], { name: 'data', mountPath: '/data', readOnly: true });
    assert.deepEqual(mounts['/ckpt'], { name: 'checkpoints', mountPath: '/ckpt' });
    const vols = Object.fromEntries((pod?.volumes ?? []).map((v) => [v.name, v]));
    assert.deepEqual(vols.data?.persistentVolumeClaim, { claimName: 'slides', readOnly: true });
    assert.deepEqual(vols.checkpoints?.persistentVolumeClaim, { claimName: 'ckpt', readOnly: false });
    assert.equal(vols.job?.configMap?.name, 'demo-job');
  });

  it('meets the restricted Pod Security Standard with PVC volumes', () => {
    assert.deepEqual(restrictedViolations(build().spec?.template.spec as never), []);
    assert.equal(build().spec?.template.spec?.containers[0]?.securityContext?.readOnlyRootFilesystem, true);
  });

  it('fails fast on the out-of-memory, invalid-manifest, full-checkpoint-volume and data-not-found exits, and ignores disruptions', () => {
    const job = build(makeStj().runPolicy({ backoffLimit: 5 }), { activeDeadlineSeconds: 3000 });
    assert.deepEqual(job.spec?.podFailurePolicy?.rules, [
      { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
      { action: 'FailJob', onExitCodes: { containerName: 'trainer', operator: 'In', values: [3] } },
      { action: 'FailJob', onExitCodes: { containerName: 'trainer', operator: 'In', values: [2] } },
      { action: 'FailJob', onExitCodes: { containerName: 'trainer', operator: 'In', values: [4] } },
      { action: 'FailJob', onExitCodes: { containerName: 'trainer', operator: 'In', values: [5] } },
    ]);
    assert.equal(job.spec?.template.spec?.restartPolicy, 'Never', 'podFailurePolicy requires Never');
    assert.equal(job.spec?.backoffLimit, 5);
    assert.equal(job.spec?.activeDeadlineSeconds, 3000);
    assert.equal(job.spec?.podReplacementPolicy, 'Failed');
  });

  it("the exit codes are the trainer's own (one definition)", () => {
    assert.equal(TRAINER_EXIT, EXIT);
  });

  it('is owned by the StreamingTrainingJob, labelled, and carries its plan and attempt', () => {
    const job = build(makeStj().runPolicy({ queueName: 'gpu-queue' }), {
      attempt: 2,
      tileReductions: 1,
      restartsBefore: 3,
      suspend: true,
    });
    assert.equal(job.metadata?.name, 'demo-2');
    assert.deepEqual(job.metadata?.ownerReferences, [
      {
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        name: 'demo',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    assert.equal(job.metadata?.labels?.['kueue.x-k8s.io/queue-name'], 'gpu-queue');
    assert.equal(job.metadata?.labels?.['tilestream.io/job-name'], 'demo');
    assert.equal(job.metadata?.labels?.['tilestream.io/attempt'], '2');
    assert.equal(job.spec?.template.metadata?.labels?.['tilestream.io/job-name'], 'demo');
    assert.equal(job.spec?.suspend, true);
    assert.deepEqual(parseJobPlan(job.metadata?.annotations?.['tilestream.io/plan']), a100Plan);
    assert.equal(job.metadata?.annotations?.['tilestream.io/tile-reductions'], '1');
    assert.equal(job.metadata?.annotations?.['tilestream.io/restarts-before'], '3');
  });

  it('is deterministic: the same inputs give the same object', () => {
    assert.deepEqual(build(), build());
  });
});

describe('trainer identity and manifest', () => {
  const stj = makeStj().obj();
  it('the Role allows only patch on this job status', () => {
    assert.deepEqual(buildTrainerRole(stj).rules, [
      {
        apiGroups: ['tilestream.io'],
        resources: ['streamingtrainingjobs/status'],
        resourceNames: ['demo'],
        verbs: ['patch'],
      },
    ]);
    const rb = buildTrainerRoleBinding(stj);
    assert.deepEqual(rb.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: 'demo-trainer',
    });
    assert.deepEqual(rb.subjects, [{ kind: 'ServiceAccount', name: 'demo-trainer', namespace: 'team' }]);
    assert.equal(buildTrainerServiceAccount(stj).metadata?.name, 'demo-trainer');
    assert.equal(build().spec?.template.spec?.serviceAccountName, 'demo-trainer');
  });

  it('the ConfigMap holds the manifest without status, and it validates as it was', () => {
    const withStatus = makeStj().status({ phase: 'Running' }).obj();
    const cm = buildJobConfigMap(withStatus);
    assert.equal(cm.metadata?.name, 'demo-job');
    const parsed = parse(cm.data?.['job.yaml'] ?? '') as Record<string, unknown>;
    assert.equal(parsed.status, undefined);
    assert.deepEqual(parsed.metadata, { name: 'demo', namespace: 'team' });
    const v = validateJob(parsed);
    assert.ok(v.ok);
    assert.deepEqual(v.job.spec, withStatus.spec);
  });
});

describe('status.plan', () => {
  it('prints memory saved as kubectl shows it', () => {
    assert.deepEqual(planStatus(a100Plan), {
      tileSize: 4096,
      gpuClass: 'a100-sxm4-40gb-40960mib',
      gpuProduct: 'A100-SXM4-40GB',
      gpuMemoryBytes: 40960 * MiB,
      predictedPeakStreamedBytes: 3.2 * GiB,
      predictedPeakConventionalBytes: 49.4 * GiB,
      savingsRatio: 0.9352,
      memorySaved: '46.2Gi (94%)',
      overheadFactor: 1.42,
    });
    assert.equal(formatQuantity(512 * MiB), '512.0Mi');
    assert.equal(formatQuantity(100), '100');
  });
  it('without a prediction only the placement is shown', () => {
    assert.deepEqual(planStatus({ tileSize: 1024, gpuClass: 'x', gpuProduct: 'X', gpuMemoryBytes: 1 }), {
      tileSize: 1024,
      gpuClass: 'x',
      gpuProduct: 'X',
      gpuMemoryBytes: 1,
    });
  });
  it('a damaged plan annotation reads as no plan', () => {
    assert.equal(parseJobPlan('{'), undefined);
    assert.equal(parseJobPlan('{"tileSize":"big"}'), undefined);
  });
});
