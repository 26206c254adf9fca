import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { ManualClock } from '../../operator/controller/clock.ts';
import { Informer, type RelistReason } from '../../operator/controller/informer.ts';
import { RESOURCES } from '../../operator/kube/resources.ts';
import type { Node } from '../../operator/kube/types.ts';
import { api, eventually, never, silentLog, testClient, watchStream } from './kube-fixture.ts';

const node = (name: string, rv: string): Node => ({ metadata: { name, resourceVersion: rv } });
const list = (rv: string, ...items: Node[]) => ({
  kind: 'NodeList',
  metadata: { resourceVersion: rv },
  items,
});

function makeInformer(clock: ManualClock, timeoutMs = 2000) {
  const relists: RelistReason[] = [];
  const errors: string[] = [];
  const events: string[] = [];
  const inf = new Informer<Node>({
    client: testClient({ timeoutMs }),
    resource: RESOURCES.node,
    clock,
    log: silentLog,
    watchTimeoutSeconds: 60,
    watchdogMs: 90_000,
    random: () => 0,
    onRelist: (r) => relists.push(r),
    onWatchError: (e) => errors.push(e.message),
  });
  inf.on({
    add: (o) => events.push(`add ${o.metadata.name}`),
    update: (_, o) => events.push(`update ${o.metadata.name}`),
    delete: (o) => events.push(`delete ${o.metadata.name}`),
  });
  return { inf, relists, errors, events };
}

describe('Informer (list-watch cache)', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.cleanAll());

  it('lists every page, then applies watch events to the cache and tells the handlers', async () => {
    const clock = new ManualClock();
    const w = watchStream();
    const scope = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, { metadata: { resourceVersion: '10', continue: 'page2' }, items: [node('a', '1')] })
      .get('/api/v1/nodes')
      .query({ limit: 500, continue: 'page2' })
      .reply(200, list('10', node('b', '2')))
      .get('/api/v1/nodes')
      .query({ watch: 'true', resourceVersion: '10', allowWatchBookmarks: 'true', timeoutSeconds: 60 })
      .reply(200, () => w.body);
    const { inf, events } = makeInformer(clock);
    inf.start();
    await inf.waitForSync();
    assert.deepEqual(
      inf
        .list()
        .map((n) => n.metadata.name)
        .sort(),
      ['a', 'b'],
    );
    await eventually(() => scope.isDone(), 'the watch request');
    w.send('ADDED', node('c', '11'));
    w.send('MODIFIED', node('a', '12'));
    w.send('DELETED', node('b', '13'));
    w.send('BOOKMARK', { metadata: { resourceVersion: '14' } });
    await eventually(() => events.length === 5, 'five events');
    assert.deepEqual(events, ['add a', 'add b', 'add c', 'update a', 'delete b']);
    assert.equal(inf.get('a')?.metadata.resourceVersion, '12');
    assert.equal(inf.get('b'), undefined);
    // The server ends the watch (its timeout): the informer re-watches from the bookmark's version.
    const w2 = watchStream();
    const next = api()
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true' && q.resourceVersion === '14')
      .reply(200, () => w2.body);
    w.end();
    await eventually(() => next.isDone(), 're-watch from version 14');
    w2.end();
    await inf.stop();
  });

  it('answers 410 Gone in the watch stream with a relist, and reports the difference to handlers', async () => {
    const clock = new ManualClock();
    const w = watchStream();
    const w2 = watchStream();
    const first = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('10', node('a', '1'), node('b', '2')))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true')
      .reply(200, () => w.body);
    const { inf, relists, events } = makeInformer(clock);
    inf.start();
    await eventually(() => first.isDone(), 'list and watch');
    const relist = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('50', node('a', '40'), node('c', '41')))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true' && q.resourceVersion === '50')
      .reply(200, () => w2.body);
    w.send('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
    await eventually(() => relist.isDone(), 'relist and re-watch');
    assert.deepEqual(relists, ['initial', 'gone']);
    assert.deepEqual(events, ['add a', 'add b', 'update a', 'add c', 'delete b']);
    w2.end();
    await inf.stop();
  });

  it('answers an HTTP 410 on the watch request with a relist too', async () => {
    const clock = new ManualClock();
    const w = watchStream();
    const scope = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('10'))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true')
      .reply(410, { kind: 'Status', code: 410, reason: 'Gone', message: 'too old' })
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('20'))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true' && q.resourceVersion === '20')
      .reply(200, () => w.body);
    const { inf, relists } = makeInformer(clock);
    inf.start();
    await eventually(() => scope.isDone(), 'list, 410, relist, watch');
    assert.deepEqual(relists, ['initial', 'gone']);
    w.end();
    await inf.stop();
  });

  it('relists when the watch stays silent past the watchdog limit', async () => {
    const clock = new ManualClock();
    const silent = watchStream();
    const w2 = watchStream();
    const first = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('10', node('a', '1')))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true')
      .reply(200, () => silent.body);
    const { inf, relists } = makeInformer(clock);
    inf.start();
    await eventually(() => first.isDone(), 'the silent watch');
    const second = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('30', node('a', '29')))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true' && q.resourceVersion === '30')
      .reply(200, () => w2.body);
    clock.advance(89_999);
    await new Promise((r) => setImmediate(r));
    assert.equal(second.isDone(), false, 'not before the limit');
    clock.advance(1);
    await eventually(() => second.isDone(), 'relist after the watchdog fired');
    assert.deepEqual(relists, ['initial', 'watchdog']);
    assert.equal(inf.get('a')?.metadata.resourceVersion, '29');
    w2.end();
    await inf.stop();
  });

  it('retries a failing list with exponential backoff (5xx, then a timeout), then syncs', async () => {
    const clock = new ManualClock();
    const w = watchStream();
    api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(503, { kind: 'Status', code: 503, reason: 'ServiceUnavailable', message: 'etcd is down' });
    const { inf, errors } = makeInformer(clock, 300);
    inf.start();
    await eventually(() => errors.length === 1 && clock.pending === 1, 'first failure and a backoff timer');
    assert.match(errors[0] as string, /503 ServiceUnavailable: etcd is down/);
    assert.equal(clock.nextTimerIn(), 800, 'first delay 800 ms (no jitter in this test)');
    // The second attempt gets no answer at all: a client-side timeout.
    api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(() => never());
    clock.advance(800);
    await eventually(() => errors.length === 2 && clock.pending === 1, 'timeout and the next backoff', 8000);
    assert.match(errors[1] as string, /no answer within 300 ms/);
    assert.equal(clock.nextTimerIn(), 1600, 'the delay doubled');
    assert.equal(inf.hasSynced(), false);
    const ok = api()
      .get('/api/v1/nodes')
      .query({ limit: 500 })
      .reply(200, list('7', node('z', '7')))
      .get('/api/v1/nodes')
      .query((q) => q.watch === 'true' && q.resourceVersion === '7')
      .reply(200, () => w.body);
    clock.advance(1600);
    await inf.waitForSync();
    await eventually(() => ok.isDone(), 'watch after the successful list');
    assert.deepEqual(
      inf.list().map((n) => n.metadata.name),
      ['z'],
    );
    w.end();
    await inf.stop();
  });
});
