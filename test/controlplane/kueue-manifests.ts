// What Kueue's manager needs to run beside the test control plane, as pure functions of the
// released manifests (copied by build-binaries.sh from sigs.k8s.io/kueue's module): its
// configuration file, its CRDs with the conversion webhook pointing at the local manager, its
// admission webhooks by URL, and the queue objects the tests use. The I/O is in kueue.ts.
//
// Why URLs: upstream's manifests reach the manager through a Service (kueue-webhook-service), which
// needs a cluster network; the API server calls `https://127.0.0.1:<port>/<path>` instead, with the
// CA of a serving certificate the harness mints (IP SAN 127.0.0.1). Kueue's own certificate
// management cannot be used: it issues the certificate for `<service>.<namespace>.svc` only.

export const KUEUE_GROUP = 'kueue.x-k8s.io';
export const KUEUE_API_VERSION = `${KUEUE_GROUP}/v1beta2`;
export const QUEUE_NAME_LABEL = `${KUEUE_GROUP}/queue-name`;

/** A Kubernetes object as parsed from YAML: only the fields these functions touch are typed. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export interface KueueConfigInput {
  /** Namespace Kueue treats as its own (MultiKueue secrets; its jobs are never managed). */
  namespace: string;
  webhookPort: number;
  /** Folder holding tls.crt and tls.key for the webhook server. */
  certDir: string;
  healthPort: number;
  /** Job integrations to enable (Kueue's names, e.g. batch/job). */
  frameworks: readonly string[];
}

/**
 * The manager's configuration (config.kueue.x-k8s.io/v1beta2) as JSON, which its YAML loader
 * reads: every listener on loopback, no leader election (one replica), certificates from the
 * harness, only jobs that name a queue are managed.
 */
export function kueueConfiguration(c: KueueConfigInput): Record<string, unknown> {
  return {
    apiVersion: 'config.kueue.x-k8s.io/v1beta2',
    kind: 'Configuration',
    namespace: c.namespace,
    health: { healthProbeBindAddress: `127.0.0.1:${c.healthPort}` },
    // "0" disables the metrics listener (a fixed :8443 would collide between parallel suites).
    metrics: { bindAddress: '0' },
    webhook: { host: '127.0.0.1', port: c.webhookPort, certDir: c.certDir },
    leaderElection: { leaderElect: false },
    internalCertManagement: { enable: false },
    manageJobsWithoutQueueName: false,
    integrations: { frameworks: [...c.frameworks] },
    // The visibility API server (on by default) would bind a fixed port, 8082, and register an
    // APIService; nothing here reads pending-workload positions.
    featureGates: { VisibilityOnDemand: false },
  };
}

/**
 * CRDs whose versions upstream converts through the manager's /convert (the ones its kustomize
 * patches `webhook_in_*.yaml` switch to strategy Webhook); the others have a single schema.
 */
export const CONVERTED_CRDS: readonly string[] = [
  'localqueues.kueue.x-k8s.io',
  'clusterqueues.kueue.x-k8s.io',
  'cohorts.kueue.x-k8s.io',
  'workloads.kueue.x-k8s.io',
  'multikueueclusters.kueue.x-k8s.io',
];

/** The CRD with upstream's conversion webhook, reached by URL; other CRDs are returned unchanged. */
export function withConversionWebhook(crd: KubeObject, baseUrl: string, caBundle: string): KubeObject {
  if (crd.kind !== 'CustomResourceDefinition' || !CONVERTED_CRDS.includes(crd.metadata.name)) return crd;
  const spec = crd.spec as Record<string, unknown>;
  return {
    ...crd,
    spec: {
      ...spec,
      conversion: {
        strategy: 'Webhook',
        webhook: {
          clientConfig: { url: `${baseUrl}/convert`, caBundle },
          conversionReviewVersions: ['v1'],
        },
      },
    },
  };
}

interface WebhookRule {
  apiGroups?: string[];
}
interface Webhook {
  name: string;
  clientConfig: { service?: { path?: string }; url?: string; caBundle?: string };
  rules?: WebhookRule[];
  [k: string]: unknown;
}

/** API groups whose webhooks are registered: Kueue's own objects and batch/v1 Jobs. */
export const WEBHOOK_GROUPS: readonly string[] = [KUEUE_GROUP, 'batch'];

/**
 * Upstream's Mutating/ValidatingWebhookConfiguration (config/components/webhook/manifests.yaml)
 * named as a release names them (`kueue-…`), each webhook reached at `<baseUrl><path>`. Only the
 * webhooks for `groups` are kept: the others belong to integrations that are off here (pods,
 * Deployments, JobSet, Kubeflow, Ray …), for which the manager registers no-op handlers; the pod
 * ones would put every pod of the plane through Kueue.
 */
export function webhookConfigurations(
  manifests: readonly KubeObject[],
  baseUrl: string,
  caBundle: string,
  groups: readonly string[] = WEBHOOK_GROUPS,
): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of manifests) {
    if (doc.kind !== 'MutatingWebhookConfiguration' && doc.kind !== 'ValidatingWebhookConfiguration')
      continue;
    const hooks = (doc.webhooks as Webhook[] | undefined) ?? [];
    const kept = hooks
      .filter((h) => (h.rules ?? []).some((r) => (r.apiGroups ?? []).some((g) => groups.includes(g))))
      .map((h) => {
        const path = h.clientConfig.service?.path;
        if (path === undefined)
          throw new Error(`Kueue webhook ${h.name} has no service path to map to a URL`);
        return { ...h, clientConfig: { url: `${baseUrl}${path}`, caBundle } };
      });
    if (kept.length === 0) continue;
    out.push({ ...doc, metadata: { name: `kueue-${doc.metadata.name}` }, webhooks: kept });
  }
  return out;
}

export interface Quota {
  cpu: string;
  memory: string;
  /** nvidia.com/gpu */
  gpu: string;
}

/** One ResourceFlavor without node labels (every node), as on a single-pool cluster. */
export function resourceFlavor(name: string): KubeObject {
  return { apiVersion: KUEUE_API_VERSION, kind: 'ResourceFlavor', metadata: { name }, spec: {} };
}

/** A ClusterQueue for every namespace with one flavor covering cpu, memory and nvidia.com/gpu. */
export function clusterQueue(name: string, flavor: string, quota: Quota): KubeObject {
  return {
    apiVersion: KUEUE_API_VERSION,
    kind: 'ClusterQueue',
    metadata: { name },
    spec: {
      namespaceSelector: {},
      resourceGroups: [
        {
          coveredResources: ['cpu', 'memory', 'nvidia.com/gpu'],
          flavors: [
            {
              name: flavor,
              resources: [
                { name: 'cpu', nominalQuota: quota.cpu },
                { name: 'memory', nominalQuota: quota.memory },
                { name: 'nvidia.com/gpu', nominalQuota: quota.gpu },
              ],
            },
          ],
        },
      ],
    },
  };
}

export function localQueue(namespace: string, name: string, clusterQueueName: string): KubeObject {
  return {
    apiVersion: KUEUE_API_VERSION,
    kind: 'LocalQueue',
    metadata: { name, namespace },
    spec: { clusterQueue: clusterQueueName },
  };
}
