// The permissions the operator's code uses, kept beside it (as Kueue keeps RBAC markers beside its
// controllers) for the Helm chart's ClusterRole and Role. Creating the per-job trainer Role needs
// the operator to hold what that Role grants (patch on streamingtrainingjobs/status), which it does.

import { GROUP, PLURAL } from '../crds/index.ts';

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** Cluster-wide (or per watched namespace, with Roles) rules of the operator's service account. */
export const OPERATOR_RULES: readonly PolicyRule[] = [
  // watch; delete after ttlSecondsAfterFinished
  { apiGroups: [GROUP], resources: [PLURAL], verbs: ['get', 'list', 'watch', 'delete'] },
  // server-side apply of the operator's status fields
  { apiGroups: [GROUP], resources: [`${PLURAL}/status`], verbs: ['get', 'patch', 'update'] },
  // trainer Jobs: apply, suspend/resume, delete older attempts
  {
    apiGroups: ['batch'],
    resources: ['jobs'],
    verbs: ['get', 'list', 'watch', 'create', 'patch', 'update', 'delete'],
  },
  // trainer pods: exit codes, restarts, GPU use
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  // the job manifest, the trainer's identity, and the headless Service of a data-parallel job's ranks
  {
    apiGroups: [''],
    resources: ['configmaps', 'serviceaccounts', 'services'],
    verbs: ['get', 'create', 'patch', 'update'],
  },
  {
    apiGroups: ['rbac.authorization.k8s.io'],
    resources: ['roles', 'rolebindings'],
    verbs: ['get', 'create', 'patch', 'update'],
  },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  // a queued job's Kueue LocalQueue exists (kueue.ts; discovery of the group needs no rule)
  { apiGroups: ['kueue.x-k8s.io'], resources: ['localqueues'], verbs: ['get'] },
];

/**
 * Cluster-scoped (a ClusterRole even when namespaces are restricted): the GPU inventory reads nodes;
 * an authenticated /metrics (--metrics-auth) asks who a scraper is and whether it may read.
 */
export const OPERATOR_NODE_RULES: readonly PolicyRule[] = [
  { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
  { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
];

/** In the lease namespace only: leader election. */
export const LEADER_ELECTION_RULES: readonly PolicyRule[] = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];
