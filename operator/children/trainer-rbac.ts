// The trainer's identity and the job manifest it reads, per StreamingTrainingJob: a
// ServiceAccount whose Role allows exactly one thing, `patch` on this job's status subresource
// (the trainer reports progress there by server-side apply), a RoleBinding, and the ConfigMap with
// the manifest. Pure builders. A job with spec.pod.serviceAccountName runs as that account instead,
// bound to the same Role.

import type { V1ConfigMap, V1Role, V1RoleBinding, V1ServiceAccount } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, PLURAL, type StreamingTrainingJob } from '../../crds/index.ts';
import { childMeta, configMapName, trainerAccountName } from './names.ts';

export function buildTrainerServiceAccount(stj: StreamingTrainingJob): V1ServiceAccount {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: childMeta(stj, trainerAccountName(stj.metadata.name)),
  };
}

export function buildTrainerRole(stj: StreamingTrainingJob): V1Role {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: childMeta(stj, trainerAccountName(stj.metadata.name)),
    rules: [
      {
        apiGroups: [GROUP],
        resources: [`${PLURAL}/status`],
        resourceNames: [stj.metadata.name],
        verbs: ['patch'],
      },
    ],
  };
}

export function buildTrainerRoleBinding(stj: StreamingTrainingJob): V1RoleBinding {
  const name = trainerAccountName(stj.metadata.name);
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: childMeta(stj, name),
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
    // A job that runs as its own account for data access (spec.pod.serviceAccountName) still reports
    // progress: that account may patch this job's status too (and, being shared, so may its other pods).
    subjects: [...new Set([name, stj.spec.pod?.serviceAccountName ?? name])].map((sa) => ({
      kind: 'ServiceAccount',
      name: sa,
      namespace: stj.metadata.namespace as string,
    })),
  };
}

/** The manifest the trainer reads: the StreamingTrainingJob without status and server-set metadata. */
export function jobManifest(stj: StreamingTrainingJob): string {
  const m = stj.metadata;
  return stringify({
    apiVersion: stj.apiVersion,
    kind: stj.kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      ...(m.labels && Object.keys(m.labels).length > 0 && { labels: m.labels }),
    },
    spec: stj.spec,
  });
}

export function buildJobConfigMap(stj: StreamingTrainingJob): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: childMeta(stj, configMapName(stj.metadata.name)),
    data: { 'job.yaml': jobManifest(stj) },
  };
}
