// The controller loop with the real queue and rate limiter on a manual clock, reconciling against
// a scripted API server: API errors (5xx, timeouts, 409) are retried with exponential backoff and
// counted under the controller-runtime metric names; success forgets the retries.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { Controller } from '../../operator/controller/controller.ts';
import { ExponentialRateLimiter } from '../../operator/controller/rate-limiter.ts';
import { reconcile } from '../../operator/controller/reconcile.ts';
import { WorkQueue } from '../../operator/controller/work-queue.ts';
import { CONTROLLER } from '../../operator/metrics.ts';
import { makeStj } from './builders.ts';
import { api, eventually, never } from './kube-fixture.ts';
import { APPLY, makeWorld, metricValue, STJ_PATH, type World } from './reconcile-fixture.ts';

const CHILDREN = /\/(configmaps|serviceaccounts|roles|rolebindings|jobs)\//;

function start(w: World) {
  const queue = new WorkQueue(
    w.clock,
    new ExponentialRateLimiter(5, 1000),
    w.ctx.metrics.queueObserver(CONTROLLER),
  );
  const results: string[] = [];
  const controller = new Controller({
    queue,
    reconcile: async (key) => {
      try {
        const a = await reconcile(key, w.ctx);
        results.push(a.kind);
        return a;
      } catch (e) {
        results.push(`error: ${(e as Error).message.split(':').slice(-1)[0]?.trim()}`);
        throw e;
      }
    },
    workers: 2,
    clock: w.clock,
    log: w.ctx.log,
    metrics: w.ctx.metrics,
  });
  const running = controller.run();
  return {
    queue,
    results,
    async stop() {
      queue.shutDown();
      await queue.drained();
      await running;
    },
  };
}

const series = (name: string, extra = '') => `${name}{controller="${CONTROLLER}"${extra}}`;

describe('controller: retries with backoff', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.cleanAll());

  it('5xx then a timeout then success: retried after 5 ms, then 10 ms; errors and retries counted', async () => {
    const w = makeWorld({ stjs: [makeStj().image(16384).obj()], timeoutMs: 300 });
    const c = start(w);
    const first = api().patch(CHILDREN).query(APPLY).reply(503, {
      kind: 'Status',
      code: 503,
      reason: 'ServiceUnavailable',
      message: 'etcdserver: leader changed',
    });
    c.queue.add('team/demo');
    await eventually(() => c.results.length === 1 && w.clock.pending > 0, 'the first failure');
    assert.ok(first.isDone());
    assert.equal(w.clock.nextTimerIn(), 5, 'first retry after 5 ms');
    const second = api()
      .patch(CHILDREN)
      .query(APPLY)
      .reply(() => never());
    w.clock.advance(5);
    await eventually(() => c.results.length === 2 && w.clock.pending > 0, 'the timed-out retry', 5000);
    assert.ok(second.isDone());
    assert.equal(w.clock.nextTimerIn(), 10, 'the delay doubled');
    const ok = api()
      .patch(CHILDREN)
      .query(APPLY)
      .times(5)
      .reply(200, {})
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events')
      .reply(201, {});
    w.clock.advance(10);
    await eventually(() => c.results.length === 3, 'the successful retry');
    assert.deepEqual(c.results, ['error: leader changed', 'error: no answer within 300 ms', 'requeue']);
    assert.deepEqual(ok.pendingMocks(), []);
    assert.equal(c.queue.numRequeues('team/demo'), 0, 'success forgets the failures');
    const text = await w.metricsText();
    assert.equal(metricValue(text, series('controller_runtime_reconcile_errors_total')), 2);
    assert.equal(metricValue(text, series('controller_runtime_reconcile_total', ',result="error"')), 2);
    assert.equal(
      metricValue(text, series('controller_runtime_reconcile_total', ',result="requeue_after"')),
      1,
    );
    assert.equal(
      metricValue(text, `workqueue_retries_total{name="${CONTROLLER}",controller="${CONTROLLER}"}`),
      2,
    );
    assert.equal(
      metricValue(text, `workqueue_adds_total{name="${CONTROLLER}",controller="${CONTROLLER}"}`),
      3,
    );
    assert.match(
      text,
      /controller_runtime_reconcile_time_seconds_count\{controller="streamingtrainingjob"\} 3/,
    );
    await c.stop();
  });

  it('409 Conflict on the status write is retried and then succeeds with one Event', async () => {
    const w = makeWorld({ stjs: [makeStj().image(16384).obj()] });
    const c = start(w);
    let events = 0;
    const calls = api()
      .patch(CHILDREN)
      .query(APPLY)
      .times(5)
      .reply(200, {})
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(409, { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' });
    c.queue.add('team/demo');
    await eventually(() => c.results.length === 1 && w.clock.pending > 0, 'the conflict');
    assert.ok(calls.isDone());
    // The retry comes after 5 ms; the Job it created is not in the cache yet, so it waits for it.
    w.clock.advance(5);
    await eventually(() => c.results.length === 2, 'the retry that waits for the cache');
    assert.equal(c.results[1], 'requeue');
    const job = {
      metadata: {
        name: 'demo-0',
        namespace: 'team',
        labels: { 'tilestream.io/attempt': '0' },
        annotations: {},
        ownerReferences: [
          {
            apiVersion: 'tilestream.io/v1alpha1',
            kind: 'StreamingTrainingJob',
            name: 'demo',
            uid: 'uid-1',
            controller: true,
          },
        ],
      },
      spec: {},
      status: {},
    };
    w.jobs.set(job);
    const write = api()
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events')
      .reply(201, () => {
        events++;
        return {};
      });
    w.clock.advance(1000);
    await eventually(() => c.results.length === 3, 'the status written');
    assert.ok(write.isDone());
    assert.equal(events, 1);
    await c.stop();
  });

  it('SIGTERM-style shutdown drains the reconcile in flight, then the workers exit', async () => {
    const w = makeWorld({ stjs: [makeStj().image(16384).obj()] });
    const c = start(w);
    let release: () => void = () => {};
    let inFlight = false;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const calls = api()
      .patch(CHILDREN)
      .query(APPLY)
      .reply(async () => {
        inFlight = true;
        await gate;
        return [200, {}];
      })
      .patch(CHILDREN)
      .query(APPLY)
      .times(4)
      .reply(200, {})
      .patch(`${STJ_PATH}/status`)
      .query(APPLY)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events')
      .reply(201, {});
    c.queue.add('team/demo');
    await eventually(() => inFlight, 'the first request in flight');
    let stopped = false;
    const stopping = c.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(stopped, false, 'still draining');
    release();
    await stopping;
    assert.deepEqual(calls.pendingMocks(), [], 'the in-flight reconcile finished its writes');
    assert.deepEqual(c.results, ['requeue']);
  });
});
