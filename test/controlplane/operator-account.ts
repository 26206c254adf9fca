// The operator's identity on a test control plane: a ServiceAccount bound to exactly the rules of
// operator/rbac.ts (a ClusterRole for jobs, children and nodes; a Role for the leader-election Lease in
// its own namespace), returned as a kubeconfig holding that account's token — so every real-API-server
// suite runs the operator with the permissions the chart grants, never with the admin's.

import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../../operator/kube/client.ts';
import { LEADER_ELECTION_RULES, OPERATOR_NODE_RULES, OPERATOR_RULES } from '../../operator/rbac.ts';
import type { ControlPlane } from './harness.ts';

const RBAC = '/apis/rbac.authorization.k8s.io/v1';

export interface OperatorAccount {
  kubeConfig: KubeConfig;
  /** The kubeconfig file (for an operator started as a separate process). */
  kubeconfigPath: string;
}

/**
 * Creates ServiceAccount `name` in `namespace`, ClusterRole/Binding `<prefix>-operator` and
 * Role/Binding `<prefix>-leader`; `namespace` must exist. The prefix keeps two accounts on one plane apart.
 */
export async function createOperatorAccount(
  plane: ControlPlane,
  namespace: string,
  opts: { name?: string; prefix?: string } = {},
): Promise<OperatorAccount> {
  const name = opts.name ?? 'operator';
  const prefix = opts.prefix ?? 'tilestream';
  const admin = new KubeClient(plane.kubeConfig);
  const subjects = [{ kind: 'ServiceAccount', name, namespace }];
  const bind = (kind: 'ClusterRole' | 'Role', role: string) => ({
    metadata: { name: role },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind, name: role },
    subjects,
  });
  await admin.request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, {
    body: { metadata: { name } },
  });
  await admin.request('POST', `${RBAC}/clusterroles`, {
    body: { metadata: { name: `${prefix}-operator` }, rules: [...OPERATOR_RULES, ...OPERATOR_NODE_RULES] },
  });
  await admin.request('POST', `${RBAC}/clusterrolebindings`, {
    body: bind('ClusterRole', `${prefix}-operator`),
  });
  await admin.request('POST', `${RBAC}/namespaces/${namespace}/roles`, {
    body: { metadata: { name: `${prefix}-leader` }, rules: LEADER_ELECTION_RULES },
  });
  await admin.request('POST', `${RBAC}/namespaces/${namespace}/rolebindings`, {
    body: bind('Role', `${prefix}-leader`),
  });
  const kubeconfigPath = await plane.serviceAccountKubeconfig(namespace, name);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfigPath);
  return { kubeConfig, kubeconfigPath };
}
