// The tenant policy's cases, shared by the CEL/TypeScript agreement test (tenant-policy.test.ts)
// and the real API server (admission.test.ts): a policy (the ConfigMap's data), a job, and which
// fields the policy refuses (empty: admitted).

import { edit, type Manifest, validManifest } from '../crds/invalid-manifests.ts';

export const TRAINER_REPO = 'ghcr.io/tilestream/tilestream-trainer';

/** The chart's default policy (values.yaml tenantPolicy, trainer.image). */
export const DEFAULT_POLICY: Record<string, string> = {
  allowedImages: `${TRAINER_REPO}:*\n${TRAINER_REPO}@*\n${TRAINER_REPO}-cpu:*\n${TRAINER_REPO}-cpu@*\n`,
  allowedVolumeKinds: 'persistentVolumeClaim\nconfigMap\nemptyDir\n',
  hostPathPrefixes: '',
  allowedEnvSources: 'configMapKeyRef\n',
  allowedServiceAccounts: '',
};

export const HOSTPATH_POLICY: Record<string, string> = {
  ...DEFAULT_POLICY,
  allowedImages: `${DEFAULT_POLICY.allowedImages}registry.hospital.local/ml/trainer:v2\n`,
  allowedVolumeKinds: 'persistentVolumeClaim\nhostPath\n',
  hostPathPrefixes: '/data/slides\n/scratch/\n',
};

/** An admin who lets users hand Secrets to their trainer and run it as the data-reader accounts. */
export const SECRETS_POLICY: Record<string, string> = {
  ...DEFAULT_POLICY,
  allowedVolumeKinds: 'persistentVolumeClaim\nconfigMap\nemptyDir\nsecret\nhostPath\n',
  hostPathPrefixes: '/data/slides\n',
  allowedEnvSources: 'configMapKeyRef\nsecretKeyRef\n',
  allowedServiceAccounts: 'data-reader-*\nslide-archive\n',
};

/** A job with everything spec.pod offers, each within SECRETS_POLICY. */
export function customPodJob(): Manifest {
  return edit(validManifest(), {
    'spec.pod': {
      env: [
        { name: 'LOG_LEVEL', value: 'debug' },
        { name: 'S3_ENDPOINT', valueFrom: { configMapKeyRef: { name: 'storage', key: 'endpoint' } } },
        { name: 'S3_SECRET', valueFrom: { secretKeyRef: { name: 'storage-creds', key: 'secret' } } },
      ],
      volumes: [
        { name: 'scratch', mountPath: '/scratch', readOnly: false, emptyDir: {} },
        { name: 'labels', mountPath: '/labels', configMap: { name: 'label-map' } },
        { name: 'creds', mountPath: '/var/run/creds', secret: { secretName: 'storage-creds' } },
        { name: 'archive', mountPath: '/archive', hostPath: { path: '/data/slides/archive' } },
      ],
      serviceAccountName: 'data-reader-pathology',
      imagePullSecrets: [{ name: 'registry-creds' }],
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: 'topology.kubernetes.io/zone', operator: 'In', values: ['a'] }] },
          ],
        },
      },
    },
  });
}

export interface PolicyCase {
  name: string;
  policy: Record<string, string>;
  job: Manifest;
  /** Message prefixes (the field) of the rules that refuse it, in rule order; [] = admitted. */
  refusedAt: string[];
}

const v = validManifest;
const pod = (p: Record<string, unknown>) => edit(v(), { 'spec.pod': p });
const hostData = (path: string) => edit(v(), { 'spec.data.volume': { hostPath: { path } } });
const hostCheckpoint = (path: string) => edit(v(), { 'spec.checkpoint.volume': { hostPath: { path } } });

/** A job of `replicas` pods of `gpus` GPUs (batch 16 splits over up to 16 ranks). */
const gpuJob = (replicas: number, gpus: number) =>
  edit(v(), {
    'spec.resources.replicas': replicas,
    'spec.resources.gpus': gpus,
    'spec.training.batchSize': 16,
  });
const GPU_LIMIT_POLICY = { ...DEFAULT_POLICY, maxGpusPerJob: '4\n' };

export const POLICY_CASES: readonly PolicyCase[] = [
  { name: 'claims and the default image', policy: DEFAULT_POLICY, job: v(), refusedAt: [] },
  {
    name: 'a tag of the chart trainer image',
    policy: DEFAULT_POLICY,
    job: edit(v(), { 'spec.image': `${TRAINER_REPO}:0.1.0` }),
    refusedAt: [],
  },
  {
    name: 'a digest of the chart trainer image',
    policy: DEFAULT_POLICY,
    job: edit(v(), { 'spec.image': `${TRAINER_REPO}@sha256:${'a'.repeat(64)}` }),
    refusedAt: [],
  },
  {
    name: 'the CPU build of the chart trainer image',
    policy: DEFAULT_POLICY,
    job: edit(v(), { 'spec.image': `${TRAINER_REPO}-cpu:0.1.0` }),
    refusedAt: [],
  },
  {
    name: 'another image',
    policy: DEFAULT_POLICY,
    job: edit(v(), { 'spec.image': 'docker.io/library/busybox:1' }),
    refusedAt: ['spec.image:'],
  },
  {
    name: 'a look-alike repository (prefix without the tag separator)',
    policy: DEFAULT_POLICY,
    job: edit(v(), { 'spec.image': `${TRAINER_REPO}-evil:1` }),
    refusedAt: ['spec.image:'],
  },
  {
    name: 'the node root as data (issue 15)',
    policy: DEFAULT_POLICY,
    job: hostData('/'),
    refusedAt: ['spec.data.volume.hostPath:', 'spec.data.volume.hostPath.path:'],
  },
  {
    name: 'the node root as checkpoints (issue 15)',
    policy: DEFAULT_POLICY,
    job: hostCheckpoint('/'),
    refusedAt: ['spec.checkpoint.volume.hostPath:', 'spec.checkpoint.volume.hostPath.path:'],
  },
  {
    name: 'image and both volumes at once',
    policy: DEFAULT_POLICY,
    job: edit(hostCheckpoint('/var/lib/kubelet'), {
      'spec.image': 'evil:latest',
      'spec.data.volume': { hostPath: { path: '/etc' } },
    }),
    refusedAt: [
      'spec.image:',
      'spec.data.volume.hostPath:',
      'spec.data.volume.hostPath.path:',
      'spec.checkpoint.volume.hostPath:',
      'spec.checkpoint.volume.hostPath.path:',
    ],
  },
  {
    name: 'hostPath allowed: the prefix itself',
    policy: HOSTPATH_POLICY,
    job: hostData('/data/slides'),
    refusedAt: [],
  },
  {
    name: 'hostPath allowed: below the prefix',
    policy: HOSTPATH_POLICY,
    job: hostData('/data/slides/2024'),
    refusedAt: [],
  },
  {
    name: 'hostPath allowed: a prefix written with a trailing slash',
    policy: HOSTPATH_POLICY,
    job: hostCheckpoint('/scratch/ckpt'),
    refusedAt: [],
  },
  {
    name: 'hostPath allowed: a sibling folder with the same start',
    policy: HOSTPATH_POLICY,
    job: hostData('/data/slides-other'),
    refusedAt: ['spec.data.volume.hostPath.path:'],
  },
  {
    name: 'hostPath allowed: climbing out with ..',
    policy: HOSTPATH_POLICY,
    job: hostData('/data/slides/../../etc'),
    refusedAt: ['spec.data.volume.hostPath.path:'],
  },
  {
    name: 'hostPath allowed: outside every prefix',
    policy: HOSTPATH_POLICY,
    job: hostCheckpoint('/'),
    refusedAt: ['spec.checkpoint.volume.hostPath.path:'],
  },
  {
    name: 'an image the admin added',
    policy: HOSTPATH_POLICY,
    job: edit(v(), { 'spec.image': 'registry.hospital.local/ml/trainer:v2' }),
    refusedAt: [],
  },
  {
    name: 'claims refused by a hostPath-only policy',
    policy: { ...HOSTPATH_POLICY, allowedVolumeKinds: 'hostPath' },
    job: v(),
    refusedAt: ['spec.data.volume.persistentVolumeClaim:', 'spec.checkpoint.volume.persistentVolumeClaim:'],
  },
  // --- spec.pod (issue 15 item 5)
  {
    name: 'spec.pod within an admin policy that allows it all',
    policy: SECRETS_POLICY,
    job: customPodJob(),
    refusedAt: [],
  },
  {
    name: 'spec.pod under the default policy: secrets, hostPath and a custom service account refused',
    policy: DEFAULT_POLICY,
    job: customPodJob(),
    refusedAt: [
      'spec.pod.volumes[archive].hostPath:',
      'spec.pod.volumes[creds].secret:',
      'spec.pod.volumes[archive].hostPath.path:',
      'spec.pod.env[S3_SECRET].valueFrom.secretKeyRef:',
      'spec.pod.serviceAccountName:',
    ],
  },
  {
    name: 'plain env, a ConfigMap key, scratch space and pull secrets under the default policy',
    policy: DEFAULT_POLICY,
    job: pod({
      env: [
        { name: 'A', value: '1' },
        { name: 'B', valueFrom: { configMapKeyRef: { name: 'cm', key: 'b' } } },
      ],
      volumes: [
        { name: 'scratch', mountPath: '/scratch', readOnly: false, emptyDir: {} },
        { name: 'more-data', mountPath: '/more', persistentVolumeClaim: { claimName: 'more' } },
      ],
      imagePullSecrets: [{ name: 'registry-creds' }],
    }),
    refusedAt: [],
  },
  {
    name: 'a ConfigMap key refused by a policy that allows only Secret keys',
    policy: { ...SECRETS_POLICY, allowedEnvSources: 'secretKeyRef' },
    job: pod({ env: [{ name: 'B', valueFrom: { configMapKeyRef: { name: 'cm', key: 'b' } } }] }),
    refusedAt: ['spec.pod.env[B].valueFrom.configMapKeyRef:'],
  },
  {
    name: 'a pod hostPath outside the prefixes, climbing out with ..',
    policy: SECRETS_POLICY,
    job: pod({
      volumes: [
        { name: 'ok', mountPath: '/ok', hostPath: { path: '/data/slides/x' } },
        { name: 'climb', mountPath: '/climb', hostPath: { path: '/data/slides/../../etc' } },
      ],
    }),
    refusedAt: ['spec.pod.volumes[climb].hostPath.path:'],
  },
  {
    name: 'a service account matched by a prefix entry, and one named exactly',
    policy: SECRETS_POLICY,
    job: pod({ serviceAccountName: 'slide-archive' }),
    refusedAt: [],
  },
  {
    name: 'a service account that only starts like an allowed name',
    policy: SECRETS_POLICY,
    job: pod({ serviceAccountName: 'slide-archive-admin' }),
    refusedAt: ['spec.pod.serviceAccountName:'],
  },
  {
    name: 'an empty policy allows only the operator default image and no volume',
    policy: {},
    job: v(),
    refusedAt: ['spec.data.volume.persistentVolumeClaim:', 'spec.checkpoint.volume.persistentVolumeClaim:'],
  },
  // --- maxGpusPerJob: GPUs counted over a data-parallel job's pods (issue 18)
  {
    name: 'GPU limit: 2 pods of 2 GPUs within 4',
    policy: GPU_LIMIT_POLICY,
    job: gpuJob(2, 2),
    refusedAt: [],
  },
  {
    name: 'GPU limit: 2 pods of 4 GPUs over 4 (replicas count, not only gpus)',
    policy: GPU_LIMIT_POLICY,
    job: gpuJob(2, 4),
    refusedAt: ['spec.resources:'],
  },
  {
    name: 'GPU limit: CPU pods ask for none',
    policy: GPU_LIMIT_POLICY,
    job: edit(gpuJob(8, 0), { 'spec.resources.minGpuMemory': undefined }),
    refusedAt: [],
  },
  { name: 'no GPU limit without the key', policy: DEFAULT_POLICY, job: gpuJob(2, 8), refusedAt: [] },
];
