import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { kubeconfigDocument } from './kubeconfig.ts';

describe('kubeconfigDocument', () => {
  it('is loadable by client-node with the server, CA and token it was given', () => {
    const kc = new KubeConfig();
    kc.loadFromString(
      kubeconfigDocument({
        server: 'https://127.0.0.1:6443',
        caPem: 'CA',
        userName: 'u',
        user: { token: 't' },
        namespace: 'ns',
      }),
    );
    assert.equal(kc.getCurrentCluster()?.server, 'https://127.0.0.1:6443');
    assert.equal(Buffer.from(kc.getCurrentCluster()?.caData ?? '', 'base64').toString(), 'CA');
    assert.equal(kc.getCurrentUser()?.token, 't');
    assert.equal(kc.getContextObject(kc.getCurrentContext())?.namespace, 'ns');
  });
  it('refuses a user without credentials or a cert without key', () => {
    assert.throws(
      () => kubeconfigDocument({ server: 's', caPem: 'c', userName: 'u', user: {} }),
      /certificate or a token/,
    );
    assert.throws(
      () =>
        kubeconfigDocument({ server: 's', caPem: 'c', userName: 'u', user: { clientCertificatePem: 'x' } }),
      /needs its key/,
    );
  });
});
