// The pure parts of running Kueue beside the test plane: which webhooks are registered and how,
// which CRDs convert through the manager, and the configuration file.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CONVERTED_CRDS,
  type KubeObject,
  kueueConfiguration,
  webhookConfigurations,
  withConversionWebhook,
} from './kueue-manifests.ts';

const hook = (name: string, path: string, apiGroups: string[]) => ({
  name,
  clientConfig: { service: { name: 'webhook-service', namespace: 'system', path } },
  rules: [{ apiGroups, apiVersions: ['v1'], operations: ['CREATE'], resources: ['x'] }],
  failurePolicy: 'Fail',
  sideEffects: 'None',
});

const manifests: KubeObject[] = [
  {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'mutating-webhook-configuration' },
    webhooks: [
      hook('mjob.kb.io', '/mutate-batch-v1-job', ['batch']),
      hook('mpod.kb.io', '/mutate--v1-pod', ['']),
      hook('mworkload.kb.io', '/mutate-kueue-x-k8s-io-v1beta2-workload', ['kueue.x-k8s.io']),
    ],
  },
  {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: 'validating-webhook-configuration' },
    webhooks: [hook('vrayjob.kb.io', '/validate-ray-io-v1-rayjob', ['ray.io'])],
  },
];

describe('Kueue manifests for the test plane', () => {
  it('registers the batch and Kueue webhooks by URL with the CA, and drops the others', () => {
    const out = webhookConfigurations(manifests, 'https://127.0.0.1:9443', 'Q0E=');
    assert.equal(out.length, 1, 'a configuration left with no webhook is not registered');
    const [m] = out;
    assert.equal(m?.metadata.name, 'kueue-mutating-webhook-configuration');
    const hooks = m?.webhooks as { name: string; clientConfig: unknown; failurePolicy: string }[];
    assert.deepEqual(
      hooks.map((h) => [h.name, h.clientConfig]),
      [
        ['mjob.kb.io', { url: 'https://127.0.0.1:9443/mutate-batch-v1-job', caBundle: 'Q0E=' }],
        [
          'mworkload.kb.io',
          { url: 'https://127.0.0.1:9443/mutate-kueue-x-k8s-io-v1beta2-workload', caBundle: 'Q0E=' },
        ],
      ],
    );
    assert.equal(hooks[0]?.failurePolicy, 'Fail', 'upstream fields are kept');
  });

  it('points the conversion of multi-version CRDs at the manager and leaves the others alone', () => {
    const crd = (name: string): KubeObject => ({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name },
      spec: { group: 'kueue.x-k8s.io', versions: [] },
    });
    const wl = withConversionWebhook(crd('workloads.kueue.x-k8s.io'), 'https://127.0.0.1:1', 'Q0E=');
    assert.deepEqual((wl.spec as { conversion: unknown }).conversion, {
      strategy: 'Webhook',
      webhook: {
        clientConfig: { url: 'https://127.0.0.1:1/convert', caBundle: 'Q0E=' },
        conversionReviewVersions: ['v1'],
      },
    });
    const rf = crd('resourceflavors.kueue.x-k8s.io');
    assert.equal(withConversionWebhook(rf, 'https://127.0.0.1:1', 'Q0E='), rf);
    assert.ok(CONVERTED_CRDS.includes('localqueues.kueue.x-k8s.io'));
  });

  it('configures loopback listeners, no leader election, own certificates and queued jobs only', () => {
    const c = kueueConfiguration({
      namespace: 'kueue-system',
      webhookPort: 1234,
      certDir: '/tmp/c',
      healthPort: 5678,
      frameworks: ['batch/job'],
    });
    assert.deepEqual(c.webhook, { host: '127.0.0.1', port: 1234, certDir: '/tmp/c' });
    assert.deepEqual(c.health, { healthProbeBindAddress: '127.0.0.1:5678' });
    assert.deepEqual(c.leaderElection, { leaderElect: false });
    assert.deepEqual(c.internalCertManagement, { enable: false });
    assert.equal(c.manageJobsWithoutQueueName, false);
    assert.deepEqual(c.integrations, { frameworks: ['batch/job'] });
  });
});
