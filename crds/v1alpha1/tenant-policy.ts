// The tenant policy: what an admin lets users put in a StreamingTrainingJob (trainer images, volume
// kinds, hostPath prefixes). One definition, two evaluators: each rule is CEL text for the API
// server's ValidatingAdmissionPolicy (the chart ships it, generated from here by
// `npm run generate:crd`) and a TypeScript twin that the operator runs before it creates a job's
// children. test/crds/tenant-policy.test.ts evaluates both on the same cases and requires the same
// verdict and the same message.
//
// The parameter resource is a ConfigMap the admin owns (the chart's `<release>-tenant-policy` in
// the release namespace), one entry per line under each key:
//   allowedImages       image references; an entry ending in '*' is a prefix ('repo:*' = any tag)
//   allowedVolumeKinds  persistentVolumeClaim and/or hostPath
//   hostPathPrefixes    node folders a hostPath volume may be in (when hostPath is allowed)
//   allowedVolumeKinds  also configMap, secret and emptyDir, for spec.pod.volumes
//   allowedEnvSources   secretKeyRef and/or configMapKeyRef, for spec.pod.env[].valueFrom
//   allowedServiceAccounts  names spec.pod.serviceAccountName may take ('*' at the end: a prefix)
//   maxGpusPerJob       the most GPUs one job may ask for, counted over its pods: resources.replicas
//                       × resources.gpus (a whole number; unset or empty: no limit)
// Not ruled, and why: spec.pod.imagePullSecrets only let the kubelet pull an image allowedImages
// already admits (the pod never sees the secret); spec.pod.nodeAffinity only narrows where the pod
// may run among the nodes its tolerations and the GPU class already reach (taints isolate nodes).

import { ENV_SOURCES, POD_VOLUME_KINDS } from './schema.ts';
import type { PodEnvVar, PodVolume, StreamingTrainingJobSpec, VolumeSource } from './types.ts';

export const POLICY_KEYS = {
  allowedImages: 'allowedImages',
  allowedVolumeKinds: 'allowedVolumeKinds',
  hostPathPrefixes: 'hostPathPrefixes',
  allowedEnvSources: 'allowedEnvSources',
  allowedServiceAccounts: 'allowedServiceAccounts',
  maxGpusPerJob: 'maxGpusPerJob',
} as const;

export const VOLUME_KINDS = ['persistentVolumeClaim', 'hostPath'] as const;
export type VolumeKind = (typeof VOLUME_KINDS)[number];

export interface TenantPolicy {
  /** Where the policy lives, for messages: `namespace/name` of the ConfigMap. */
  source: { namespace: string; name: string };
  allowedImages: string[];
  allowedVolumeKinds: string[];
  hostPathPrefixes: string[];
  allowedEnvSources: string[];
  allowedServiceAccounts: string[];
  /** GPUs one job may ask for over all its pods (replicas × gpus); undefined: no limit. */
  maxGpusPerJob?: number;
}

/** One entry per line, trimmed, blank lines dropped: what the CEL variables compute. */
function lines(s: string | undefined): string[] {
  return (s ?? '')
    .split('\n')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

/** The policy from its ConfigMap (a missing key allows nothing of that kind). */
export function policyFromConfigMap(cm: {
  metadata?: { namespace?: string; name?: string };
  data?: Record<string, string>;
}): TenantPolicy {
  return {
    source: { namespace: cm.metadata?.namespace ?? '', name: cm.metadata?.name ?? '' },
    allowedImages: lines(cm.data?.[POLICY_KEYS.allowedImages]),
    allowedVolumeKinds: lines(cm.data?.[POLICY_KEYS.allowedVolumeKinds]),
    hostPathPrefixes: lines(cm.data?.[POLICY_KEYS.hostPathPrefixes]),
    allowedEnvSources: lines(cm.data?.[POLICY_KEYS.allowedEnvSources]),
    allowedServiceAccounts: lines(cm.data?.[POLICY_KEYS.allowedServiceAccounts]),
    ...gpuLimit(cm.data?.[POLICY_KEYS.maxGpusPerJob]),
  };
}

/** maxGpusPerJob as the CEL variable reads it: a whole number, else no limit. */
function gpuLimit(text: string | undefined): { maxGpusPerJob?: number } {
  const t = text?.trim() ?? '';
  return /^[0-9]{1,9}$/.test(t) ? { maxGpusPerJob: Number(t) } : {};
}

// ---------------------------------------------------------------- the rules

/** A rule of the ValidatingAdmissionPolicy and its TypeScript twin. */
export interface PolicyRule {
  /** CEL over `object` (the job), `params` (the ConfigMap) and `variables`; true = allowed. */
  expression: string;
  /** CEL string naming the field and the rule; evaluated only when expression is false. */
  messageExpression: string;
  check: (spec: StreamingTrainingJobSpec, p: TenantPolicy) => boolean;
  message: (spec: StreamingTrainingJobSpec, p: TenantPolicy) => string;
}

const celList = (key: string) =>
  `has(params.data) && '${key}' in params.data ? params.data['${key}'].split('\\n').map(s, s.trim()).filter(s, s != '') : []`;

/** CEL variables (`variables.<name>`) shared by the rules. */
export const POLICY_VARIABLES = [
  { name: 'allowedImages', expression: celList(POLICY_KEYS.allowedImages) },
  { name: 'allowedVolumeKinds', expression: celList(POLICY_KEYS.allowedVolumeKinds) },
  { name: 'hostPathPrefixes', expression: celList(POLICY_KEYS.hostPathPrefixes) },
  { name: 'allowedEnvSources', expression: celList(POLICY_KEYS.allowedEnvSources) },
  { name: 'allowedServiceAccounts', expression: celList(POLICY_KEYS.allowedServiceAccounts) },
  {
    // -1: no limit (unset, empty or not a whole number, as policyFromConfigMap reads it).
    name: 'maxGpusPerJob',
    expression:
      `has(params.data) && '${POLICY_KEYS.maxGpusPerJob}' in params.data && ` +
      `params.data['${POLICY_KEYS.maxGpusPerJob}'].trim().matches('^[0-9]{1,9}$') ? ` +
      `int(params.data['${POLICY_KEYS.maxGpusPerJob}'].trim()) : -1`,
  },
] as const;

const CEL_SOURCE = `params.metadata.namespace + '/' + params.metadata.name`;
const source = (p: TenantPolicy) => `${p.source.namespace}/${p.source.name}`;
const celAllows = (variable: string) =>
  `(size(variables.${variable}) == 0 ? 'nothing' : variables.${variable}.join(', '))`;
const allows = (xs: string[]) => (xs.length === 0 ? 'nothing' : xs.join(', '));

/** `name` is one of `allowed`, where an entry ending in '*' is a prefix (images, service accounts). */
export function nameAllowed(name: string, allowed: readonly string[]): boolean {
  return allowed.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}
/** CEL twin of nameAllowed over `variables.<list>`. */
const celNameAllowed = (value: string, list: string) =>
  `variables.${list}.exists(p, p.endsWith('*') ? ${value}.startsWith(p.substring(0, size(p) - 1)) : ${value} == p)`;

export function imageAllowed(image: string, allowed: readonly string[]): boolean {
  return allowed.some((p) => (p.endsWith('*') ? image.startsWith(p.slice(0, -1)) : image === p));
}

/** `path` is `prefix` or below it, and has no '.' or '..' segment to climb out with. */
export function hostPathAllowed(path: string, prefixes: readonly string[]): boolean {
  if (path.split('/').some((s) => s === '.' || s === '..')) return false;
  return prefixes.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`));
}

const imageRule: PolicyRule = {
  expression:
    "!has(object.spec.image) || variables.allowedImages.exists(p, p.endsWith('*') ? " +
    'object.spec.image.startsWith(p.substring(0, size(p) - 1)) : object.spec.image == p)',
  messageExpression:
    `'spec.image: ' + object.spec.image + ' is not an allowed trainer image; the tenant policy (ConfigMap ' + ` +
    `${CEL_SOURCE} + ', allowedImages) allows ' + ${celAllows('allowedImages')}`,
  check: (s, p) => s.image === undefined || imageAllowed(s.image, p.allowedImages),
  message: (s, p) =>
    `spec.image: ${s.image} is not an allowed trainer image; the tenant policy (ConfigMap ${source(p)}, ` +
    `allowedImages) allows ${allows(p.allowedImages)}`,
};

interface VolumeField {
  /** Field path in messages. */
  path: string;
  /** CEL: the volume is set. */
  present: string;
  /** CEL: the volume. */
  cel: string;
  get: (s: StreamingTrainingJobSpec) => VolumeSource | undefined;
}

const VOLUME_FIELDS: readonly VolumeField[] = [
  {
    path: 'spec.data.volume',
    present: 'has(object.spec.data.volume)',
    cel: 'object.spec.data.volume',
    get: (s) => s.data.volume,
  },
  {
    path: 'spec.checkpoint.volume',
    present: 'has(object.spec.checkpoint) && has(object.spec.checkpoint.volume)',
    cel: 'object.spec.checkpoint.volume',
    get: (s) => s.checkpoint?.volume,
  },
];

function kindRule(f: VolumeField, kind: VolumeKind): PolicyRule {
  return {
    expression: `!(${f.present} && has(${f.cel}.${kind})) || '${kind}' in variables.allowedVolumeKinds`,
    messageExpression:
      `'${f.path}.${kind}: ${kind} volumes are not allowed; the tenant policy (ConfigMap ' + ${CEL_SOURCE} + ` +
      `', allowedVolumeKinds) allows ' + ${celAllows('allowedVolumeKinds')}`,
    check: (s, p) => f.get(s)?.[kind] === undefined || p.allowedVolumeKinds.includes(kind),
    message: (_s, p) =>
      `${f.path}.${kind}: ${kind} volumes are not allowed; the tenant policy (ConfigMap ${source(p)}, ` +
      `allowedVolumeKinds) allows ${allows(p.allowedVolumeKinds)}`,
  };
}

function hostPathRule(f: VolumeField): PolicyRule {
  const path = `${f.cel}.hostPath.path`;
  return {
    expression:
      `!(${f.present} && has(${f.cel}.hostPath)) || (!${path}.split('/').exists(s, s == '.' || s == '..') && ` +
      `variables.hostPathPrefixes.exists(p, ${path} == p || ${path}.startsWith(p.endsWith('/') ? p : p + '/')))`,
    messageExpression:
      `'${f.path}.hostPath.path: ' + ${path} + ' is not under an allowed folder; the tenant policy (ConfigMap ' + ` +
      `${CEL_SOURCE} + ', hostPathPrefixes) allows ' + ${celAllows('hostPathPrefixes')}`,
    check: (s, p) => {
      const hp = f.get(s)?.hostPath;
      return hp === undefined || hostPathAllowed(hp.path, p.hostPathPrefixes);
    },
    message: (s, p) =>
      `${f.path}.hostPath.path: ${f.get(s)?.hostPath?.path} is not under an allowed folder; the tenant policy ` +
      `(ConfigMap ${source(p)}, hostPathPrefixes) allows ${allows(p.hostPathPrefixes)}`,
  };
}

// ---------------------------------------------------------------- spec.pod

const POD = 'has(object.spec.pod)';
const POD_VOLUMES = `${POD} && has(object.spec.pod.volumes)`;
const POD_ENV = `${POD} && has(object.spec.pod.env)`;
const podVolumes = (s: StreamingTrainingJobSpec): PodVolume[] => s.pod?.volumes ?? [];
const podEnv = (s: StreamingTrainingJobSpec): PodEnvVar[] => s.pod?.env ?? [];
type PodVolumeKind = (typeof POD_VOLUME_KINDS)[number];
type EnvSource = (typeof ENV_SOURCES)[number];

function podVolumeKindRule(kind: PodVolumeKind): PolicyRule {
  const first = `object.spec.pod.volumes.filter(v, has(v.${kind}))[0].name`;
  return {
    expression: `!(${POD_VOLUMES} && object.spec.pod.volumes.exists(v, has(v.${kind}))) || '${kind}' in variables.allowedVolumeKinds`,
    messageExpression:
      `'spec.pod.volumes[' + ${first} + '].${kind}: ${kind} volumes are not allowed; the tenant policy (ConfigMap ' + ` +
      `${CEL_SOURCE} + ', allowedVolumeKinds) allows ' + ${celAllows('allowedVolumeKinds')}`,
    check: (s, p) => !podVolumes(s).some((v) => v[kind] !== undefined) || p.allowedVolumeKinds.includes(kind),
    message: (s, p) =>
      `spec.pod.volumes[${podVolumes(s).find((v) => v[kind] !== undefined)?.name}].${kind}: ${kind} volumes are not ` +
      `allowed; the tenant policy (ConfigMap ${source(p)}, allowedVolumeKinds) allows ${allows(p.allowedVolumeKinds)}`,
  };
}

const celHostPathOk = (v: string) =>
  `(!${v}.hostPath.path.split('/').exists(s, s == '.' || s == '..') && variables.hostPathPrefixes.exists(p, ` +
  `${v}.hostPath.path == p || ${v}.hostPath.path.startsWith(p.endsWith('/') ? p : p + '/')))`;

const podHostPathRule: PolicyRule = {
  expression: `!(${POD_VOLUMES}) || object.spec.pod.volumes.all(v, !has(v.hostPath) || ${celHostPathOk('v')})`,
  messageExpression:
    `'spec.pod.volumes[' + object.spec.pod.volumes.filter(v, has(v.hostPath) && !${celHostPathOk('v')})[0].name + ` +
    `'].hostPath.path: ' + object.spec.pod.volumes.filter(v, has(v.hostPath) && !${celHostPathOk('v')})[0].hostPath.path + ` +
    `' is not under an allowed folder; the tenant policy (ConfigMap ' + ${CEL_SOURCE} + ', hostPathPrefixes) allows ' + ` +
    `${celAllows('hostPathPrefixes')}`,
  check: (s, p) =>
    podVolumes(s).every(
      (v) => v.hostPath === undefined || hostPathAllowed(v.hostPath.path, p.hostPathPrefixes),
    ),
  message: (s, p) => {
    const v = podVolumes(s).find(
      (x) => x.hostPath !== undefined && !hostPathAllowed(x.hostPath.path, p.hostPathPrefixes),
    );
    return (
      `spec.pod.volumes[${v?.name}].hostPath.path: ${v?.hostPath?.path} is not under an allowed folder; the tenant ` +
      `policy (ConfigMap ${source(p)}, hostPathPrefixes) allows ${allows(p.hostPathPrefixes)}`
    );
  },
};

function envSourceRule(src: EnvSource): PolicyRule {
  const uses = `has(e.valueFrom) && has(e.valueFrom.${src})`;
  return {
    expression: `!(${POD_ENV} && object.spec.pod.env.exists(e, ${uses})) || '${src}' in variables.allowedEnvSources`,
    messageExpression:
      `'spec.pod.env[' + object.spec.pod.env.filter(e, ${uses})[0].name + '].valueFrom.${src}: environment from ` +
      `${src} is not allowed; the tenant policy (ConfigMap ' + ${CEL_SOURCE} + ', allowedEnvSources) allows ' + ` +
      `${celAllows('allowedEnvSources')}`,
    check: (s, p) =>
      !podEnv(s).some((e) => e.valueFrom?.[src] !== undefined) || p.allowedEnvSources.includes(src),
    message: (s, p) =>
      `spec.pod.env[${podEnv(s).find((e) => e.valueFrom?.[src] !== undefined)?.name}].valueFrom.${src}: environment ` +
      `from ${src} is not allowed; the tenant policy (ConfigMap ${source(p)}, allowedEnvSources) allows ` +
      `${allows(p.allowedEnvSources)}`,
  };
}

const serviceAccountRule: PolicyRule = {
  expression: `!(${POD} && has(object.spec.pod.serviceAccountName)) || ${celNameAllowed('object.spec.pod.serviceAccountName', 'allowedServiceAccounts')}`,
  messageExpression:
    `'spec.pod.serviceAccountName: ' + object.spec.pod.serviceAccountName + ' is not an allowed service account; ` +
    `the tenant policy (ConfigMap ' + ${CEL_SOURCE} + ', allowedServiceAccounts) allows ' + ` +
    `${celAllows('allowedServiceAccounts')}`,
  check: (s, p) =>
    s.pod?.serviceAccountName === undefined ||
    nameAllowed(s.pod.serviceAccountName, p.allowedServiceAccounts),
  message: (s, p) =>
    `spec.pod.serviceAccountName: ${s.pod?.serviceAccountName} is not an allowed service account; the tenant ` +
    `policy (ConfigMap ${source(p)}, allowedServiceAccounts) allows ${allows(p.allowedServiceAccounts)}`,
};

// ---------------------------------------------------------------- GPUs

/** GPUs a job asks for over all its pods (the CRD defaults both fields; a quota counts the same). */
const jobGpus = (s: StreamingTrainingJobSpec): number => (s.resources.replicas ?? 1) * s.resources.gpus;
const CEL_JOB_GPUS =
  '(has(object.spec.resources) && has(object.spec.resources.replicas) ? object.spec.resources.replicas : 1) * ' +
  '(has(object.spec.resources) && has(object.spec.resources.gpus) ? object.spec.resources.gpus : 1)';

const gpuLimitRule: PolicyRule = {
  expression: `variables.maxGpusPerJob < 0 || ${CEL_JOB_GPUS} <= variables.maxGpusPerJob`,
  messageExpression:
    `'spec.resources: the job asks for ' + string(${CEL_JOB_GPUS}) + ' GPUs (replicas × gpus); the tenant policy ' + ` +
    `'(ConfigMap ' + ${CEL_SOURCE} + ', maxGpusPerJob) allows ' + string(variables.maxGpusPerJob) + ' per job'`,
  check: (s, p) => p.maxGpusPerJob === undefined || jobGpus(s) <= p.maxGpusPerJob,
  message: (s, p) =>
    `spec.resources: the job asks for ${jobGpus(s)} GPUs (replicas × gpus); the tenant policy (ConfigMap ` +
    `${source(p)}, maxGpusPerJob) allows ${p.maxGpusPerJob} per job`,
};

export const POLICY_RULES: readonly PolicyRule[] = [
  imageRule,
  ...VOLUME_FIELDS.flatMap((f) => [...VOLUME_KINDS.map((k) => kindRule(f, k)), hostPathRule(f)]),
  ...POD_VOLUME_KINDS.map(podVolumeKindRule),
  podHostPathRule,
  ...ENV_SOURCES.map(envSourceRule),
  serviceAccountRule,
  gpuLimitRule,
];

/** The operator's re-check: every rule the spec breaks, as the API server would word it. */
export function policyViolations(spec: StreamingTrainingJobSpec, policy: TenantPolicy): string[] {
  return POLICY_RULES.filter((r) => !r.check(spec, policy)).map((r) => r.message(spec, policy));
}

// ---------------------------------------------------------------- the admission objects

export const POLICY_NAME = 'tilestream-tenant-policy';

/**
 * The ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1). The chart renames it and binds
 * it to its ConfigMap. Only creates and spec changes are checked, so that a tightened policy
 * never blocks the finalizer or label edits of jobs admitted before.
 */
export function buildValidatingAdmissionPolicy(name = POLICY_NAME) {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name },
    spec: {
      failurePolicy: 'Fail',
      paramKind: { apiVersion: 'v1', kind: 'ConfigMap' },
      matchConstraints: {
        resourceRules: [
          {
            apiGroups: ['tilestream.io'],
            apiVersions: ['*'],
            operations: ['CREATE', 'UPDATE'],
            resources: ['streamingtrainingjobs'],
          },
        ],
      },
      matchConditions: [
        {
          name: 'create-or-spec-change',
          expression: "request.operation == 'CREATE' || object.spec != oldObject.spec",
        },
      ],
      variables: POLICY_VARIABLES.map((v) => ({ ...v })),
      validations: POLICY_RULES.map((r) => ({
        expression: r.expression,
        messageExpression: r.messageExpression,
        reason: 'Forbidden',
      })),
    },
  };
}

/** Binds the policy to its ConfigMap; a missing ConfigMap refuses every job (fail closed). */
export function buildPolicyBinding(policyName: string, param: { namespace: string; name: string }) {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name: policyName },
    spec: {
      policyName,
      validationActions: ['Deny'],
      paramRef: { name: param.name, namespace: param.namespace, parameterNotFoundAction: 'Deny' },
    },
  };
}
