// The batch/v1 Job that runs the trainer for a StreamingTrainingJob, built by a pure function of
// the spec and the plan. The pod runs
//   tilestream train /etc/tilestream/job.yaml --tile-size N --metrics-port 9400 --json
// with the job manifest from the `<name>-job` ConfigMap, one GPU of the planned class (node
// affinity), the data volume read-only and the checkpoint volume read-write, under the restricted
// Pod Security profile. The pod failure policy fails the Job at once on the trainer's
// out-of-memory exit (3, the operator re-plans with a smaller tile), on an invalid manifest (2),
// on a full checkpoint volume (4) and on missing data (5), and does not count evictions and preemptions
// (DisruptionTarget) against backoffLimit. The Job then fails with reason PodFailurePolicy; which
// it was, the operator reads from the failed pod's exit code (status/observe.ts), not from the
// condition's message.

import type { V1Job, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { StreamingTrainingJob, VolumeSource } from '../../crds/index.ts';
import { EXIT as TRAINER_EXIT } from '../../trainer/train/exit-codes.ts';
import { resourceToleration } from '../cluster/tolerations.ts';
import { attemptSpecOf } from './attempt-spec.ts';
import type { JobPlan } from './job-plan.ts';
import {
  ANNOTATION,
  childMeta,
  configMapName,
  LABEL,
  TRAINER_CONTAINER,
  trainerAccountName,
  trainerJobName,
} from './names.ts';
import {
  customEnv,
  customVolumes,
  imagePullSecrets,
  schedulingMetadata,
  trainerAffinity,
} from './pod-customisation.ts';
import { isDistributed, rankEnv, rankLayout, ranksServiceName } from './ranks.ts';

/**
 * Exit codes of `tilestream train`, defined once by the trainer (a module with no imports, so the
 * operator loads nothing of the trainer's runtime with it).
 */
export { TRAINER_EXIT };

export const JOB_FILE_DIR = '/etc/tilestream';
export const JOB_FILE = `${JOB_FILE_DIR}/job.yaml`;
export const TERMINATION_MESSAGE_PATH = '/dev/termination-log';

/** Operator-wide settings of trainer pods (flags/Helm values). */
export interface TrainerSettings {
  /** Used when spec.image is unset. */
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /**
   * Secrets in each job's namespace for pulling the trainer image (a private or air-gapped
   * registry); the pod names them, so nodes need no registry credentials of their own.
   */
  imagePullSecrets?: string[];
  /** Unset: the image's entrypoint (`tilestream`) takes the arguments. */
  command?: string[];
  metricsPort: number;
  /** UID/GID of the trainer (restricted Pod Security needs a non-root user). */
  runAsUser: number;
  /** Time to write a checkpoint after SIGTERM. */
  terminationGracePeriodSeconds: number;
  /** How long a rank of a data-parallel job waits for its peers (default DEFAULT_PEER_TIMEOUT_SECONDS). */
  peerTimeoutSeconds?: number;
}

export const DEFAULT_TRAINER_SETTINGS: Omit<TrainerSettings, 'image'> = {
  metricsPort: 9400,
  runAsUser: 1000,
  terminationGracePeriodSeconds: 120,
};

export interface TrainerJobInput {
  stj: StreamingTrainingJob;
  plan: JobPlan;
  attempt: number;
  tileReductions: number;
  restartsBefore: number;
  /** The first start of an earlier attempt, carried on this one (RFC 3339). */
  firstStart?: string;
  /** The trainer ran in an earlier attempt. */
  trainerRan?: boolean;
  /** Why this attempt was planned (the Planned condition's reason and message). */
  planned?: { reason: string; message: string };
  suspend: boolean;
  /** Seconds left of spec.runPolicy.activeDeadlineSeconds for this attempt. */
  activeDeadlineSeconds?: number;
  settings: TrainerSettings;
}

function volumeSource(v: VolumeSource, readOnly: boolean): Omit<V1Volume, 'name'> {
  return v.persistentVolumeClaim
    ? { persistentVolumeClaim: { claimName: v.persistentVolumeClaim.claimName, readOnly } }
    : { hostPath: { path: (v.hostPath as { path: string }).path, type: 'Directory' } };
}

function volumes(stj: StreamingTrainingJob): { volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const name = stj.metadata.name;
  const vols: V1Volume[] = [
    // The job file's folder is writable: a relative data root or checkpoint path resolves there.
    { name: 'workspace', emptyDir: {} },
    { name: 'job', configMap: { name: configMapName(name), items: [{ key: 'job.yaml', path: 'job.yaml' }] } },
    { name: 'tmp', emptyDir: {} },
  ];
  const mounts: V1VolumeMount[] = [
    { name: 'workspace', mountPath: JOB_FILE_DIR },
    { name: 'job', mountPath: JOB_FILE, subPath: 'job.yaml', readOnly: true },
    { name: 'tmp', mountPath: '/tmp' },
  ];
  const { data, checkpoint } = stj.spec;
  if (data.volume) {
    vols.push({ name: 'data', ...volumeSource(data.volume, true) });
    mounts.push({ name: 'data', mountPath: data.root, readOnly: true });
  }
  if (checkpoint?.volume) {
    vols.push({ name: 'checkpoints', ...volumeSource(checkpoint.volume, false) });
    mounts.push({ name: 'checkpoints', mountPath: checkpoint.path });
  }
  // spec.pod.volumes: the CRD keeps their names and mount paths apart from the ones above.
  const custom = customVolumes(stj.spec);
  return { volumes: [...vols, ...custom.volumes], mounts: [...mounts, ...custom.mounts] };
}

/** Host memory of a trainer besides its images and a CPU step: Node.js, TensorFlow and CUDA's host libraries. */
export const HOST_BASELINE_BYTES = 2 ** 30;
/** Decoded images (H·W·C bytes) held on the host at once: the one in training, the next read, its decode buffer. */
export const HOST_IMAGES = 3;
/** Backend threads to reserve: a GPU step needs one host thread feeding the device; a CPU step computes on two. */
export const DEFAULT_CPU = { gpu: 1, cpu: 2 } as const;
const MiB = 2 ** 20;

/**
 * Requests for a job without spec.resources.memory/cpu, so that its pods are Burstable, not
 * BestEffort (the first evicted under memory pressure). Memory: the host baseline, HOST_IMAGES
 * decoded images, and on a CPU placement the memory budget the step was planned in; CPU: the
 * backend's threads. No limits: a memory limit at an estimate would turn an underestimate into an
 * OOM kill (exit 137, not the trainer's retry-smaller exit 3), and a CPU limit only throttles.
 * spec.resources.memory sets request = limit instead.
 */
export function defaultRequests(stj: StreamingTrainingJob, plan: JobPlan): { memory: string; cpu: string } {
  const { imageSize, channels } = stj.spec.data;
  const imageBytes = imageSize.height * imageSize.width * (channels ?? 3);
  const onCpu = plan.gpuClass === undefined;
  const bytes = HOST_BASELINE_BYTES + HOST_IMAGES * imageBytes + (onCpu ? (plan.budgetBytes ?? 0) : 0);
  return { memory: `${Math.ceil(bytes / MiB)}Mi`, cpu: String(onCpu ? DEFAULT_CPU.cpu : DEFAULT_CPU.gpu) };
}

function resources(stj: StreamingTrainingJob, plan: JobPlan) {
  const r = stj.spec.resources;
  const limits: Record<string, string> = {};
  const requests: Record<string, string> = {};
  const defaults = defaultRequests(stj, plan);
  if (r.gpus > 0 && plan.resourceName) limits[plan.resourceName] = String(r.gpus);
  if (r.memory !== undefined) {
    limits.memory = String(r.memory);
    requests.memory = String(r.memory);
  } else requests.memory = defaults.memory;
  requests.cpu = r.cpu !== undefined ? String(r.cpu) : defaults.cpu;
  return {
    ...(Object.keys(limits).length > 0 && { limits }),
    ...(Object.keys(requests).length > 0 && { requests }),
  };
}

export function buildTrainerJob(i: TrainerJobInput): V1Job {
  const { stj, plan, settings } = i;
  const spec = stj.spec;
  const name = trainerJobName(stj.metadata.name, i.attempt);
  const attemptLabel = { [LABEL.attempt]: String(i.attempt) };
  const scheduling = schedulingMetadata(stj);
  const affinity = trainerAffinity(spec.pod?.nodeAffinity, plan.selector);
  const pullSecrets = imagePullSecrets(spec, settings.imagePullSecrets);
  const { volumes: vols, mounts } = volumes(stj);
  const gpu = spec.resources.gpus > 0 && plan.resourceName !== undefined;
  const distributed = isDistributed(spec);
  const { replicas } = rankLayout(spec);
  const env = [
    { name: 'TILESTREAM_TERMINATION_MESSAGE_PATH', value: TERMINATION_MESSAGE_PATH },
    { name: 'HOME', value: '/tmp' },
    ...(plan.gpuMemoryBytes !== undefined
      ? [{ name: 'TILESTREAM_GPU_MEMORY', value: String(plan.gpuMemoryBytes) }]
      : []),
    ...(distributed ? rankEnv(stj, name, settings.peerTimeoutSeconds) : []),
  ];
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: childMeta(stj, name, {
      labels: { ...scheduling.labels, ...attemptLabel },
      annotations: {
        ...scheduling.annotations,
        [ANNOTATION.plan]: JSON.stringify(plan),
        [ANNOTATION.tileReductions]: String(i.tileReductions),
        [ANNOTATION.restartsBefore]: String(i.restartsBefore),
        [ANNOTATION.spec]: JSON.stringify(attemptSpecOf(spec)),
        ...(i.firstStart !== undefined && { [ANNOTATION.firstStart]: i.firstStart }),
        ...(i.trainerRan && { [ANNOTATION.trainerRan]: 'true' }),
        ...(i.planned !== undefined && { [ANNOTATION.planned]: JSON.stringify(i.planned) }),
      },
    }),
    spec: {
      suspend: i.suspend,
      // A data-parallel job's pods are the indexes of one Indexed Job: Kueue admits them as one
      // Workload, and each pod learns its replica index (JOB_COMPLETION_INDEX) and host name from it.
      ...(distributed && { completionMode: 'Indexed' }),
      completions: replicas,
      parallelism: replicas,
      // A rank that fails fails its peers' collective: the operator restarts all ranks in a new attempt
      // (counting it against spec.runPolicy.backoffLimit), so the Job itself never replaces a pod.
      backoffLimit: distributed ? 0 : spec.runPolicy.backoffLimit,
      ...(i.activeDeadlineSeconds !== undefined && { activeDeadlineSeconds: i.activeDeadlineSeconds }),
      // One trainer at a time writes the checkpoints: a replacement starts only after the old pod is gone.
      podReplacementPolicy: 'Failed',
      podFailurePolicy: {
        rules: [
          { action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] },
          {
            action: 'FailJob',
            onExitCodes: {
              containerName: TRAINER_CONTAINER,
              operator: 'In',
              values: [TRAINER_EXIT.outOfMemory],
            },
          },
          {
            action: 'FailJob',
            onExitCodes: {
              containerName: TRAINER_CONTAINER,
              operator: 'In',
              values: [TRAINER_EXIT.invalidInput],
            },
          },
          {
            action: 'FailJob',
            onExitCodes: {
              containerName: TRAINER_CONTAINER,
              operator: 'In',
              values: [TRAINER_EXIT.checkpointVolumeFull],
            },
          },
          {
            action: 'FailJob',
            onExitCodes: {
              containerName: TRAINER_CONTAINER,
              operator: 'In',
              values: [TRAINER_EXIT.dataNotFound],
            },
          },
          // Any other exit of a rank (6: its peers were unavailable) fails the attempt at once, and
          // the Job controller stops the other ranks. Except 143: ranks stopped by a suspension (Kueue
          // evicting the job, spec.runPolicy.suspend) exit so, and the Job controller judges those
          // pods when the Job is resumed — counting them would fail every resumed attempt.
          ...(distributed
            ? [
                {
                  action: 'Ignore',
                  onExitCodes: {
                    containerName: TRAINER_CONTAINER,
                    operator: 'In',
                    values: [TRAINER_EXIT.stopped],
                  },
                },
                {
                  action: 'FailJob',
                  onExitCodes: { containerName: TRAINER_CONTAINER, operator: 'NotIn', values: [0] },
                },
              ]
            : []),
        ],
      },
      template: {
        metadata: {
          labels: { ...childMeta(stj, name).labels, ...attemptLabel },
          annotations: { 'kubectl.kubernetes.io/default-container': TRAINER_CONTAINER },
        },
        spec: {
          restartPolicy: 'Never',
          // The Indexed Job names each pod's host <Job>-<index>; the headless Service makes it resolvable.
          ...(distributed && { subdomain: ranksServiceName(stj.metadata.name) }),
          serviceAccountName: spec.pod?.serviceAccountName ?? trainerAccountName(stj.metadata.name),
          ...(spec.runPolicy.priorityClassName !== undefined && {
            priorityClassName: spec.runPolicy.priorityClassName,
          }),
          automountServiceAccountToken: true,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: settings.terminationGracePeriodSeconds,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: settings.runAsUser,
            runAsGroup: settings.runAsUser,
            fsGroup: settings.runAsUser,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          ...(affinity !== undefined && { affinity }),
          ...(spec.resources.nodeSelector !== undefined && { nodeSelector: spec.resources.nodeSelector }),
          ...(pullSecrets.length > 0 && { imagePullSecrets: pullSecrets }),
          tolerations: [
            ...(spec.resources.tolerations ?? []),
            ...(gpu ? [resourceToleration(plan.resourceName as string)] : []),
          ],
          containers: [
            {
              name: TRAINER_CONTAINER,
              image: spec.image ?? settings.image,
              ...(settings.imagePullPolicy !== undefined && { imagePullPolicy: settings.imagePullPolicy }),
              ...(settings.command !== undefined && { command: settings.command }),
              args: [
                'train',
                JOB_FILE,
                '--tile-size',
                String(plan.tileSize),
                '--metrics-port',
                String(settings.metricsPort),
                '--json',
              ],
              env: [...env, ...customEnv(spec)],
              ports: [{ name: 'metrics', containerPort: settings.metricsPort, protocol: 'TCP' }],
              resources: resources(stj, plan),
              volumeMounts: mounts,
              terminationMessagePath: TERMINATION_MESSAGE_PATH,
              terminationMessagePolicy: 'FallbackToLogsOnError',
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
          volumes: vols,
        },
      },
    },
  };
}
