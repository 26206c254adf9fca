// The tenant policy's cases, shared by the CEL/TypeScript agreement test (tenant-policy.test.ts)
// and the real API server (admission.test.ts): a policy (the ConfigMap's data), a job, and which
// fields the policy refuses (empty: admitted).

import { edit, type Manifest, validManifest } from '../crds/invalid-manifests.ts';

export const TRAINER_REPO = 'ghcr.io/tilestream/tilestream-trainer';

/** The chart's default policy (values.yaml tenantPolicy, trainer.image). */
export const DEFAULT_POLICY: Record<string, string> = {
  allowedImages: `${TRAINER_REPO}:*\n${TRAINER_REPO}@*\n${TRAINER_REPO}-cpu:*\n${TRAINER_REPO}-cpu@*\n`,
  allowedVolumeKinds: 'persistentVolumeClaim\n',
  hostPathPrefixes: '',
};

export const HOSTPATH_POLICY: Record<string, string> = {
  ...DEFAULT_POLICY,
  allowedImages: `${DEFAULT_POLICY.allowedImages}registry.hospital.local/ml/trainer:v2\n`,
  allowedVolumeKinds: 'persistentVolumeClaim\nhostPath\n',
  hostPathPrefixes: '/data/slides\n/scratch/\n',
};

export interface PolicyCase {
  name: string;
  policy: Record<string, string>;
  job: Manifest;
  /** Message prefixes (the field) of the rules that refuse it, in rule order; [] = admitted. */
  refusedAt: string[];
}

const v = validManifest;
const hostData = (path: string) => edit(v(), { 'spec.data.volume': { hostPath: { path } } });
const hostCheckpoint = (path: string) => edit(v(), { 'spec.checkpoint.volume': { hostPath: { path } } });

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
  {
    name: 'an empty policy allows only the operator default image and no volume',
    policy: {},
    job: v(),
    refusedAt: ['spec.data.volume.persistentVolumeClaim:', 'spec.checkpoint.volume.persistentVolumeClaim:'],
  },
];
