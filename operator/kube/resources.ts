// The API resources the operator touches, and their REST paths. A static table instead of
// discovery: the set is small and fixed, and tests can script every request.

import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../crds/index.ts';

export interface ResourceType {
  readonly apiVersion: string;
  readonly kind: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

export const RESOURCES = {
  stj: { apiVersion: API_VERSION, kind: KIND, plural: PLURAL, namespaced: true },
  job: { apiVersion: 'batch/v1', kind: 'Job', plural: 'jobs', namespaced: true },
  pod: { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true },
  node: { apiVersion: 'v1', kind: 'Node', plural: 'nodes', namespaced: false },
  configMap: { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true },
  serviceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
  service: { apiVersion: 'v1', kind: 'Service', plural: 'services', namespaced: true },
  role: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', plural: 'roles', namespaced: true },
  roleBinding: {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    plural: 'rolebindings',
    namespaced: true,
  },
  event: { apiVersion: 'v1', kind: 'Event', plural: 'events', namespaced: true },
  lease: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', plural: 'leases', namespaced: true },
} as const satisfies Record<string, ResourceType>;

export type ResourceName = keyof typeof RESOURCES;

function groupPrefix(apiVersion: string): string {
  return apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
}

/** The collection: `/apis/batch/v1/namespaces/ns/jobs`, or all namespaces when `namespace` is undefined. */
export function collectionPath(r: ResourceType, namespace?: string): string {
  const ns = r.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${groupPrefix(r.apiVersion)}${ns}/${r.plural}`;
}

export function objectPath(r: ResourceType, namespace: string | undefined, name: string): string {
  if (r.namespaced && namespace === undefined) throw new Error(`${r.kind} ${name}: a namespace is required`);
  return `${collectionPath(r, namespace)}/${encodeURIComponent(name)}`;
}

/** The resource of an object by apiVersion and kind, for the kinds in RESOURCES. */
export function resourceOf(obj: { apiVersion?: string; kind?: string }): ResourceType {
  const r = Object.values(RESOURCES).find((x) => x.apiVersion === obj.apiVersion && x.kind === obj.kind);
  if (!r) throw new Error(`internal: the operator does not manage ${obj.apiVersion}/${obj.kind}`);
  return r;
}

export { GROUP, VERSION };
