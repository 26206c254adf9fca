// /metrics behind a TokenReview and a SubjectAccessReview (operator/metrics-auth.ts) with a nock'd
// API server: no token 401, a token the API server does not know 401, a user RBAC does not allow
// 403, an allowed one 200; verdicts are cached per token for their TTL; probes need no token.
// With --metrics-cert-dir, /metrics is HTTPS with the folder's pair, reloaded when it is rotated.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { Registry } from 'prom-client';
import { startProbeServers } from '../../operator/health.ts';
import { metricsAuthorizer } from '../../operator/metrics-auth.ts';
import { createPki, opensslAvailable } from '../controlplane/pki.ts';
import { waitFor } from '../controlplane/wait.ts';
import { api, testClient } from './kube-fixture.ts';

type Body = { spec: Record<string, unknown> };
const TR = '/apis/authentication.k8s.io/v1/tokenreviews';
const SAR = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

function reviews(o: { token: string; user?: string; allowed?: boolean }) {
  const scope = api()
    .post(TR, (b: Body) => b.spec.token === o.token)
    .reply(201, {
      status: o.user
        ? { authenticated: true, user: { username: o.user, uid: 'u1', groups: ['system:serviceaccounts'] } }
        : { authenticated: false, error: 'invalid bearer token' },
    });
  if (o.user)
    scope
      .post(
        SAR,
        (b: Body) =>
          b.spec.user === o.user &&
          JSON.stringify(b.spec.nonResourceAttributes) ===
            JSON.stringify({ path: '/metrics', verb: 'get' }) &&
          (b.spec.groups as string[]).includes('system:serviceaccounts'),
      )
      .reply(201, {
        status: { allowed: o.allowed === true, ...(!o.allowed && { reason: 'no RBAC policy matched' }) },
      });
  return scope;
}

describe('authenticated /metrics', () => {
  let now = 0;
  let servers: Awaited<ReturnType<typeof startProbeServers>> | undefined;
  beforeEach(async () => {
    nock.disableNetConnect();
    nock.enableNetConnect('127.0.0.1');
    const registry = new Registry();
    registry.setDefaultLabels({});
    servers = await startProbeServers({
      healthPort: 0,
      metricsPort: 0,
      host: '127.0.0.1',
      registry,
      readiness: () => ({ informers: true }),
      authorizeMetrics: metricsAuthorizer(testClient(), { now: () => now }),
    });
  });
  afterEach(async () => {
    await servers?.close();
    nock.cleanAll();
    nock.enableNetConnect();
  });
  const get = (path: string, token?: string) =>
    fetch(`http://127.0.0.1:${path === '/metrics' ? servers?.metricsPort : servers?.healthPort}${path}`, {
      ...(token && { headers: { authorization: `Bearer ${token}` } }),
    });

  it('without a bearer token: 401, and no API call', async () => {
    const r = await get('/metrics');
    assert.equal(r.status, 401);
    assert.match(await r.text(), /send a bearer token/);
  });

  it('a token the API server does not authenticate: 401', async () => {
    const calls = reviews({ token: 'forged' });
    assert.equal((await get('/metrics', 'forged')).status, 401);
    assert.deepEqual(calls.pendingMocks(), []);
  });

  it('a user without get on /metrics: 403 naming the user', async () => {
    const calls = reviews({ token: 'dev', user: 'system:serviceaccount:team-a:default' });
    const r = await get('/metrics', 'dev');
    assert.equal(r.status, 403);
    assert.match(await r.text(), /user "system:serviceaccount:team-a:default" may not get \/metrics/);
    assert.deepEqual(calls.pendingMocks(), []);
  });

  it('an allowed scraper: 200 with the exposition; cached for a minute, then asked again', async () => {
    const first = reviews({
      token: 'prom',
      user: 'system:serviceaccount:monitoring:prometheus',
      allowed: true,
    });
    assert.equal((await get('/metrics', 'prom')).status, 200);
    assert.deepEqual(first.pendingMocks(), []);
    now += 59_000;
    assert.equal((await get('/metrics', 'prom')).status, 200, 'from the cache: no API call was mocked');
    now += 2_000;
    const again = reviews({
      token: 'prom',
      user: 'system:serviceaccount:monitoring:prometheus',
      allowed: false,
    });
    assert.equal((await get('/metrics', 'prom')).status, 403, 'RBAC revoked: seen after the TTL');
    assert.deepEqual(again.pendingMocks(), []);
  });

  it('probes stay open to the kubelet', async () => {
    assert.equal((await get('/readyz')).status, 200);
    assert.equal((await get('/healthz')).status, 200);
  });
});

describe('/metrics over HTTPS (--metrics-cert-dir)', {
  skip: opensslAvailable() ? undefined : 'no openssl',
}, () => {
  function httpsGet(port: number, ca: string, token?: string): Promise<{ status: number }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/metrics',
          ca,
          servername: 'localhost',
          ...(token && { headers: { authorization: `Bearer ${token}` } }),
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('serves /metrics with the folder tls.crt/tls.key, still authenticated, and reloads a rotated pair', async () => {
    nock.disableNetConnect();
    nock.enableNetConnect('127.0.0.1');
    const dir = mkdtempSync(join(tmpdir(), 'tilestream-metrics-tls-'));
    const certDir = join(dir, 'tls');
    mkdirSync(certDir);
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    const first = createPki(join(dir, 'a'));
    const install = (pki: ReturnType<typeof createPki>) => {
      copyFileSync(pki.serving.certPath, join(certDir, 'tls.crt'));
      copyFileSync(pki.serving.keyPath, join(certDir, 'tls.key'));
    };
    install(first);
    const servers = await startProbeServers({
      healthPort: 0,
      metricsPort: 0,
      host: '127.0.0.1',
      registry: new Registry(),
      readiness: () => ({}),
      metricsCertDir: certDir,
      tlsReloadMs: 100,
      authorizeMetrics: metricsAuthorizer(testClient()),
    });
    try {
      const ca1 = readFileSync(first.caCertPath, 'utf8');
      assert.equal((await httpsGet(servers.metricsPort, ca1)).status, 401);
      reviews({ token: 'prom', user: 'system:serviceaccount:monitoring:prometheus', allowed: true });
      const ok = await httpsGet(servers.metricsPort, ca1, 'prom');
      assert.equal(ok.status, 200);
      await assert.rejects(
        fetch(`http://127.0.0.1:${servers.metricsPort}/metrics`),
        'no plain HTTP on the TLS port',
      );
      assert.equal(
        (await fetch(`http://127.0.0.1:${servers.healthPort}/readyz`)).status,
        200,
        'probes stay HTTP',
      );
      // cert-manager renews: a new pair from another CA is served without a restart
      const second = createPki(join(dir, 'b'));
      install(second);
      const ca2 = readFileSync(second.caCertPath, 'utf8');
      await waitFor(
        'the rotated certificate',
        async () => (await httpsGet(servers.metricsPort, ca2, 'prom').catch(() => undefined))?.status === 200,
        { timeoutMs: 5000 },
      );
    } finally {
      await servers.close();
      rmSync(dir, { recursive: true, force: true });
      nock.cleanAll();
      nock.enableNetConnect();
    }
  });
});
