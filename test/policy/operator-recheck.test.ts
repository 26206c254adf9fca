// The operator re-checks the tenant policy before it creates a job's children: a job admitted before
// the policy was installed or tightened (or on a cluster without the admission objects) gets
// Planned=False PolicyViolation with the admission policy's message, a Warning event and no
// children; a job the policy allows proceeds; a missing ConfigMap refuses (fail closed).

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { reconcile, TerminalError } from '../../operator/controller/reconcile.ts';
import { makeStj } from '../operator/builders.ts';
import { api } from '../operator/kube-fixture.ts';
import { APPLY, JOBS_PATH, makeWorld, STJ_PATH } from '../operator/reconcile-fixture.ts';
import { DEFAULT_POLICY, TRAINER_REPO } from './cases.ts';

type Body = Record<string, unknown>;
const REF = { namespace: 'tilestream-system', name: 'ts-tilestream-tenant-policy' };
const CM_PATH = `/api/v1/namespaces/${REF.namespace}/configmaps/${REF.name}`;
const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: REF, data: DEFAULT_POLICY };

function world(image: string) {
  const stj = makeStj()
    .image(20480)
    .spec((s) => {
      s.image = image;
    })
    .obj();
  const w = makeWorld({ stjs: [stj] });
  w.ctx.config.tenantPolicy = REF;
  return w;
}

interface Refusal {
  status: { phase: string; conditions: { type: string; status: string; reason: string; message: string }[] };
}

async function refusedWith(w: ReturnType<typeof world>): Promise<Refusal['status']> {
  let status: Refusal | undefined;
  const calls = api()
    .patch(`${STJ_PATH}/status`, (b: Body) => {
      status = b as unknown as Refusal;
      return true;
    })
    .query(APPLY)
    .reply(200, {})
    .post(
      '/api/v1/namespaces/team/events',
      (b: Body) => b.reason === 'PolicyViolation' && b.type === 'Warning',
    )
    .reply(201, {});
  await assert.rejects(reconcile('team/demo', w.ctx), TerminalError);
  assert.deepEqual(calls.pendingMocks(), [], 'a status and an event, and no child');
  assert.ok(status);
  return status.status;
}

describe('operator re-check of the tenant policy', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.cleanAll());

  it('refuses an image the policy does not allow, before any child exists', async () => {
    const w = world('docker.io/library/busybox:1');
    api().get(CM_PATH).reply(200, configMap);
    const s = await refusedWith(w);
    assert.equal(s.phase, 'Pending');
    assert.deepEqual(
      s.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`),
      ['Planned=False/PolicyViolation', 'Running=False/PolicyViolation'],
    );
    assert.equal(
      s.conditions[0]?.message,
      'the tenant policy refuses this job: spec.image: docker.io/library/busybox:1 is not an allowed ' +
        'trainer image; the tenant policy (ConfigMap tilestream-system/ts-tilestream-tenant-policy, ' +
        `allowedImages) allows ${TRAINER_REPO}:*, ${TRAINER_REPO}@*, ${TRAINER_REPO}-cpu:*, ${TRAINER_REPO}-cpu@*`,
    );
  });

  it('refuses every job when the policy ConfigMap is missing', async () => {
    const w = world(`${TRAINER_REPO}:0.1.0`);
    api().get(CM_PATH).reply(404, { kind: 'Status', code: 404, reason: 'NotFound' });
    const s = await refusedWith(w);
    assert.match(
      s.conditions[0]?.message ?? '',
      /ConfigMap tilestream-system\/ts-tilestream-tenant-policy does not exist/,
    );
  });

  it('creates the children of a job the policy allows', async () => {
    const w = world(`${TRAINER_REPO}:0.1.0`);
    const calls = api()
      .get(CM_PATH)
      .reply(200, configMap)
      .patch(/\/(configmaps|serviceaccounts|roles|rolebindings)\//)
      .query(APPLY)
      .times(4)
      .reply(200, {})
      .patch(`${JOBS_PATH}/demo-0`)
      .query(APPLY)
      .reply(200, {})
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events')
      .times(2)
      .reply(201, {});
    await reconcile('team/demo', w.ctx);
    assert.deepEqual(
      calls.pendingMocks().filter((m) => !m.includes('events')),
      [],
    );
  });
});
