// /metrics behind a TokenReview and a SubjectAccessReview (operator/metrics-auth.ts) with a nock'd
// API server: no token 401, a token the API server does not know 401, a user RBAC does not allow
// 403, an allowed one 200; verdicts are cached per token for their TTL; probes need no token.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { Registry } from 'prom-client';
import { startProbeServers } from '../../operator/health.ts';
import { metricsAuthorizer } from '../../operator/metrics-auth.ts';
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
