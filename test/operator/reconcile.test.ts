// Reconcile paths against a scripted API server (nock): every expected call is listed in order
// and must be made; an unexpected call fails (no network). Caches are static stores.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { reconcile, TerminalError } from '../../operator/controller/reconcile.ts';
import { ApiError } from '../../operator/kube/client.ts';
import type { Job } from '../../operator/kube/types.ts';
import { makeNode, makePod, makeStj, withJobStatus } from './builders.ts';
import { api, eventually } from './kube-fixture.ts';
import { APPLY, JOBS_PATH, makeWorld, metricValue, RESYNC_MS, STJ_PATH } from './reconcile-fixture.ts';

type Body = Record<string, unknown> & { metadata?: Record<string, unknown>; spec?: Record<string, unknown> };

/** Scripts the calls of a first reconcile (children, Job, status, event) and captures the bodies. */
function scriptStart(jobName = 'demo-0') {
  const seen: Record<string, Body> = {};
  const keep = (what: string) => (body: Body) => {
    seen[what] = body;
    return true;
  };
  const scope = api()
    .matchHeader('content-type', 'application/apply-patch+yaml')
    .patch('/api/v1/namespaces/team/configmaps/demo-job', keep('configMap'))
    .query(APPLY)
    .reply(200, {})
    .patch('/api/v1/namespaces/team/serviceaccounts/demo-trainer', keep('serviceAccount'))
    .query(APPLY)
    .reply(200, {})
    .patch('/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/demo-trainer', keep('role'))
    .query(APPLY)
    .reply(200, {})
    .patch(
      '/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/demo-trainer',
      keep('roleBinding'),
    )
    .query(APPLY)
    .reply(200, {})
    .patch(`${JOBS_PATH}/${jobName}`, keep('job'))
    .query(APPLY)
    .reply(200, {})
    .patch(`${STJ_PATH}/status`, keep('status'))
    .query(APPLY)
    .reply(200, {});
  const events = api().post('/api/v1/namespaces/team/events', keep('event')).reply(201, {});
  return {
    seen,
    done: () => scope.isDone() && events.isDone(),
    pending: () => [...scope.pendingMocks(), ...events.pendingMocks()],
  };
}

const argsOf = (job: Body | undefined): string[] | undefined =>
  (job as { spec: { template: { spec: { containers: { args: string[] }[] } } } } | undefined)?.spec.template
    .spec.containers[0]?.args;

/** The STJ as the API server has it after the status write, and the trainer Job as stored. */
function afterStart(
  stj: StreamingTrainingJob,
  seen: Record<string, Body>,
  jobStatus: NonNullable<Job['status']> = {},
) {
  const next = structuredClone(stj);
  next.status = (seen.status as { status: StreamingTrainingJob['status'] }).status;
  next.metadata.resourceVersion = '101';
  const job = withJobStatus(seen.job as unknown as Job, jobStatus);
  return { stj: next, job };
}

describe('reconcile against a scripted API server', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.cleanAll());

  it('a new job: applies ConfigMap, ServiceAccount, Role, RoleBinding and Job, then its status and an Event', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const script = scriptStart();
    const action = await reconcile('team/demo', w.ctx);
    assert.deepEqual(script.pending(), []);
    assert.deepEqual(action, { kind: 'requeue', afterMs: RESYNC_MS });
    const { seen } = script;
    assert.deepEqual(argsOf(seen.job), [
      'train',
      '/etc/tilestream/job.yaml',
      '--tile-size',
      '10272',
      '--metrics-port',
      '9400',
      '--json',
    ]);
    const status = seen.status as { metadata: Record<string, unknown>; status: Record<string, unknown> };
    assert.equal(
      status.metadata.resourceVersion,
      '100',
      'the status write is conditional on the cached version',
    );
    assert.deepEqual(Object.keys(status.status).sort(), [
      'conditions',
      'observedGeneration',
      'phase',
      'plan',
      'restarts',
      'tileReductions',
    ]);
    assert.equal(status.status.phase, 'Planned');
    assert.equal(seen.event?.reason, 'PlanFound');
    assert.deepEqual((seen.event as { involvedObject: Record<string, unknown> }).involvedObject.uid, 'uid-1');
    const text = await w.metricsText();
    assert.equal(
      metricValue(
        text,
        'tilestream_job_tile_size_pixels{namespace="team",job="demo",gpu_class="a100-sxm4-40gb-40960mib"}',
      ),
      10272,
    );
  });

  it('an Event that fails once after the status write is sent again later, not lost', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const failed = api()
      .post('/api/v1/namespaces/team/events')
      .reply(503, { kind: 'Status', code: 503, reason: 'ServiceUnavailable' });
    const script = scriptStart();
    await reconcile('team/demo', w.ctx);
    assert.ok(failed.isDone(), 'the first try failed');
    assert.deepEqual(
      script.pending().map((p) => p.split(' ')[0]),
      ['POST'],
      'only the Event is left to send',
    );
    // The status is written, so the next reconcile would not decide this Event again.
    const { stj: stored, job } = afterStart(stj, script.seen);
    w.stjs.set(stored);
    w.jobs.set(job);
    w.clock.advance(1000);
    await eventually(() => script.done(), 'the Event is sent again');
    assert.equal(script.seen.event?.reason, 'PlanFound');
  });

  it('a second reconcile of an unchanged job makes no API call at all', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const script = scriptStart();
    await reconcile('team/demo', w.ctx);
    assert.ok(script.done());
    const { stj: stored, job } = afterStart(stj, script.seen);
    w.stjs.set(stored);
    w.jobs.set(job);
    // Any request now would fail: nock has nothing scripted and the network is off.
    const action = await reconcile('team/demo', w.ctx);
    assert.deepEqual(action, { kind: 'requeue', afterMs: RESYNC_MS });
  });

  it('waits for the cache to show a Job it just created instead of acting on the stale cache', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const script = scriptStart();
    await reconcile('team/demo', w.ctx);
    assert.ok(script.done());
    const action = await reconcile('team/demo', w.ctx);
    assert.deepEqual(action, { kind: 'requeue', afterMs: 1000 });
  });

  it('409 Conflict on the status write is an error to retry (no Event is sent for an unwritten status)', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const script = scriptStart();
    await reconcile('team/demo', w.ctx);
    const { stj: planned, job } = afterStart(stj, script.seen, { active: 1 });
    w.stjs.set(planned);
    w.jobs.set(job);
    w.pods.set(makePod('demo-0', 'team', { node: 'a100-0' }));
    const conflict = api()
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(409, { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' });
    await assert.rejects(
      reconcile('team/demo', w.ctx),
      (e: Error) => e instanceof ApiError && e.status === 409,
    );
    assert.ok(conflict.isDone());
  });

  it('404 on the status write: the job was deleted mid-reconcile; done, without error or Event', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const gone = api()
      .patch('/api/v1/namespaces/team/configmaps/demo-job')
      .query(APPLY)
      .reply(200, {})
      .patch('/api/v1/namespaces/team/serviceaccounts/demo-trainer')
      .query(APPLY)
      .reply(200, {})
      .patch('/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/demo-trainer')
      .query(APPLY)
      .reply(200, {})
      .patch('/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/demo-trainer')
      .query(APPLY)
      .reply(200, {})
      .patch(`${JOBS_PATH}/demo-0`)
      .query(APPLY)
      .reply(200, {})
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(404, {
        kind: 'Status',
        code: 404,
        reason: 'NotFound',
        message: 'streamingtrainingjobs "demo" not found',
      });
    const action = await reconcile('team/demo', w.ctx);
    assert.ok(gone.isDone());
    assert.deepEqual(action, { kind: 'await-change' });
  });

  it('404 when suspending or deleting a Job that vanished meanwhile is not an error', async () => {
    const base = makeStj().image(20480);
    const stj = base.obj();
    const w = makeWorld({ stjs: [stj] });
    const script = scriptStart();
    await reconcile('team/demo', w.ctx);
    const { stj: planned, job } = afterStart(stj, script.seen, { active: 1 });
    const old = {
      ...structuredClone(job),
      metadata: {
        ...job.metadata,
        name: 'demo-old',
        labels: { ...job.metadata.labels, 'tilestream.io/attempt': '0' },
      },
    };
    const current = {
      ...structuredClone(job),
      metadata: { ...job.metadata, labels: { ...job.metadata.labels, 'tilestream.io/attempt': '1' } },
    };
    const suspended = base
      .runPolicy({ suspend: true })
      .meta({ generation: 2, resourceVersion: '102' })
      .status(planned.status)
      .obj();
    w.stjs.set(suspended);
    w.jobs.set(old);
    w.jobs.set(current);
    const calls = api()
      .patch(`${JOBS_PATH}/demo-0`, { spec: { suspend: true } })
      .query({ fieldManager: 'tilestream-operator' })
      .reply(404, { kind: 'Status', code: 404, reason: 'NotFound' })
      .delete(`${JOBS_PATH}/demo-old`, {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        propagationPolicy: 'Background',
      })
      .reply(404, { kind: 'Status', code: 404, reason: 'NotFound' })
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events')
      .reply(201, {});
    await reconcile('team/demo', w.ctx);
    assert.deepEqual(calls.pendingMocks(), []);
  });

  it('a Job the API server refuses (422) becomes Planned=False InvalidSpec and a terminal error, not a retry loop', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    let status: Body | undefined;
    const calls = api()
      .patch(/\/(configmaps|serviceaccounts|roles|rolebindings)\//)
      .query(APPLY)
      .times(4)
      .reply(200, {})
      .patch(`${JOBS_PATH}/demo-0`)
      .query(APPLY)
      .reply(422, {
        kind: 'Status',
        code: 422,
        reason: 'Invalid',
        message: 'admission webhook "policy.example" denied the request: GPU jobs need a cost-centre label',
      })
      .patch(`${STJ_PATH}/status`, (b: Body) => {
        status = b;
        return true;
      })
      .query(APPLY)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events', (b: Body) => b.reason === 'InvalidSpec' && b.type === 'Warning')
      .reply(201, {});
    await assert.rejects(reconcile('team/demo', w.ctx), TerminalError);
    assert.deepEqual(calls.pendingMocks(), []);
    const s = (
      status as {
        status: {
          phase: string;
          conditions: { type: string; status: string; reason: string; message: string }[];
        };
      }
    ).status;
    assert.equal(s.phase, 'Pending');
    assert.deepEqual(
      s.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`),
      ['Planned=False/InvalidSpec', 'Running=False/InvalidSpec'],
    );
    assert.match(s.conditions[0]?.message ?? '', /cost-centre label/);
  });

  it('the trainer ran out of memory: a smaller tile on a new attempt Job, the old Job deleted, TileSizeReduced', async () => {
    const stj = makeStj().image(20480).obj();
    const w = makeWorld({ stjs: [stj] });
    const script = scriptStart();
    await reconcile('team/demo', w.ctx);
    const { stj: planned, job } = afterStart(stj, script.seen, {
      failed: 1,
      conditions: [{ type: 'Failed', status: 'True', reason: 'PodFailurePolicy', message: 'exit code 3' }],
    });
    w.stjs.set(planned);
    w.jobs.set(job);
    w.pods.set(makePod('demo-0', 'team', { phase: 'Failed', exitCode: 3 }));
    const next = scriptStart('demo-1');
    const del = api().delete(`${JOBS_PATH}/demo-0`).reply(200, {});
    await reconcile('team/demo', w.ctx);
    assert.deepEqual(next.pending(), []);
    assert.ok(del.isDone());
    const args = argsOf(next.seen.job);
    assert.ok(Number(args?.[3]) <= 10272 * 0.75);
    assert.equal((next.seen.status as { status: { tileReductions: number } }).status.tileReductions, 1);
    assert.equal(next.seen.event?.reason, 'TileSizeReduced');
    assert.equal(metricValue(await w.metricsText(), 'tilestream_tile_reductions_total{namespace="team"}'), 1);
  });

  it('plans a new job and re-plans it after an out-of-memory exit off the event loop: timers keep firing', async (t) => {
    // resnet34 on 8192² images and four GPU classes: about 1 s of planning for the new job and 0.5 s
    // for the re-plan on a shared 2-CPU machine, all of which the synchronous planner spent on the
    // event loop (for the new job in four pieces of up to 400 ms, the re-plan in one).
    const stj = makeStj().model({ architecture: 'resnet34' }).image(8192).obj();
    const w = makeWorld({
      stjs: [stj],
      nodes: [
        makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
        makeNode('a10-0').gpus(4, 'NVIDIA-A10', 24576).obj(),
        makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
        makeNode('h100-0').gpus(8, 'H100-SXM5-80GB', 81920).obj(),
      ],
    });
    /**
     * The reconcile's time; how long the event loop was held in all (a 5 ms timer late by more than
     * 50 ms), and the longest it went without running the timer.
     */
    const timed = async () => {
      const t0 = performance.now();
      let last = t0;
      let maxGapMs = 0;
      let heldMs = 0;
      const gap = (now: number) => {
        maxGapMs = Math.max(maxGapMs, now - last);
        if (now - last > 55) heldMs += now - last - 5;
        last = now;
      };
      const tick = setInterval(() => gap(performance.now()), 5);
      await reconcile('team/demo', w.ctx);
      clearInterval(tick);
      const end = performance.now();
      gap(end);
      return { ms: Math.round(end - t0), heldMs: Math.round(heldMs), maxGapMs: Math.round(maxGapMs) };
    };
    const script = scriptStart();
    const fresh = await timed();
    assert.deepEqual(script.pending(), []);
    const { stj: planned, job } = afterStart(stj, script.seen, {
      failed: 1,
      conditions: [{ type: 'Failed', status: 'True', reason: 'PodFailurePolicy', message: 'exit code 3' }],
    });
    w.stjs.set(planned);
    w.jobs.set(job);
    w.pods.set(makePod('demo-0', 'team', { phase: 'Failed', exitCode: 3 }));
    const next = scriptStart('demo-1');
    const del = api().delete(`${JOBS_PATH}/demo-0`).reply(200, {});
    const replan = await timed();
    assert.deepEqual(next.pending(), []);
    assert.ok(del.isDone());
    assert.ok(Number(argsOf(next.seen.job)?.[3]) < Number(argsOf(script.seen.job)?.[3]));
    // The synchronous planner held the loop for 97–99 % of each reconcile; with the planner threads,
    // what is left is a loaded machine's scheduling (up to 45 % measured on 2 shared CPUs at load 16).
    const said = `new job: ${JSON.stringify(fresh)}, re-plan: ${JSON.stringify(replan)}`;
    t.diagnostic(said);
    for (const r of [fresh, replan]) assert.ok(r.heldMs < r.ms * 0.6, said);
  });

  it('deletes the job once ttlSecondsAfterFinished has passed', async () => {
    const done = makeStj()
      .runPolicy({ ttlSecondsAfterFinished: 60 })
      .status({
        phase: 'Succeeded',
        completionTime: '2026-06-01T11:00:00Z',
        conditions: [
          {
            type: 'Succeeded',
            status: 'True',
            reason: 'TrainingCompleted',
            message: 'done',
            lastTransitionTime: '2026-06-01T11:00:00Z',
            observedGeneration: 1,
          },
        ],
        observedGeneration: 1,
      })
      .obj();
    const w = makeWorld({ stjs: [done] });
    const del = api().delete(STJ_PATH).reply(200, {});
    assert.deepEqual(await reconcile('team/demo', w.ctx), { kind: 'await-change' });
    assert.ok(del.isDone());
  });

  it('a key whose job is gone from the cache needs nothing and forgets its metrics', async () => {
    const w = makeWorld();
    w.ctx.metrics.setJob('team', 'demo', { tileSize: 512, gpuClass: 'x' });
    assert.deepEqual(await reconcile('team/demo', w.ctx), { kind: 'await-change' });
    assert.doesNotMatch(await w.metricsText(), /job="demo"/);
  });
});
