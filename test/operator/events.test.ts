// The Event recorder's retries against a scripted API server and a manual clock: what is tried
// again (unreachable, busy or failing API server), what is not (a refusal), and when retries stop.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { ManualClock } from '../../operator/controller/clock.ts';
import { apiEventRecorder, EVENT_RETRY } from '../../operator/events.ts';
import { makeStj } from './builders.ts';
import { api, eventually, testClient } from './kube-fixture.ts';

const EVENTS = '/api/v1/namespaces/team/events';
const status = (code: number, reason: string) => ({ kind: 'Status', code, reason });

function recorder(signal?: AbortSignal) {
  const clock = new ManualClock();
  const warnings: string[] = [];
  const events = apiEventRecorder(
    testClient({ timeoutMs: 2000 }),
    { component: 'tilestream-operator', instance: 'test-0' },
    { clock, ...(signal && { signal }), warn: (m) => warnings.push(m) },
  );
  return { clock, warnings, events };
}

/** Lets the recorder's I/O settle, then moves the clock to its next retry. */
async function nextTry(clock: ManualClock) {
  await eventually(() => clock.pending > 0, 'a retry is scheduled');
  clock.advance(clock.nextTimerIn() ?? 0);
}

describe('Event recorder', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.cleanAll());

  it('retries a failed Event with a doubling delay until it is recorded', async () => {
    const { clock, events, warnings } = recorder();
    const sent: unknown[] = [];
    const scope = api()
      .post(EVENTS)
      .reply(500, status(500, 'InternalError'))
      .post(EVENTS)
      .reply(429, status(429, 'TooManyRequests'))
      .post(EVENTS, (b) => sent.push(b) > 0)
      .reply(201, {});
    await events.record(makeStj().obj(), 'Normal', 'PlanFound', 'tile 512 px');
    assert.equal(clock.nextTimerIn(), 1000);
    await nextTry(clock);
    await eventually(() => clock.nextTimerIn() === 2000, 'the second retry waits twice as long');
    await nextTry(clock);
    await eventually(() => scope.isDone(), 'recorded on the third try');
    assert.equal((sent[0] as { reason: string }).reason, 'PlanFound');
    assert.equal(clock.pending, 0);
    assert.match(warnings[0] ?? '', /could not record event PlanFound; trying again in 1000 ms: .*500/);
  });

  it('does not retry an Event the API server refuses (403 Forbidden)', async () => {
    const { clock, events, warnings } = recorder();
    const scope = api().post(EVENTS).reply(403, status(403, 'Forbidden'));
    await events.record(makeStj().obj(), 'Warning', 'InvalidSpec', 'no');
    assert.ok(scope.isDone());
    assert.equal(clock.pending, 0);
    assert.match(warnings[0] ?? '', /giving up after 1 tries: .*403 Forbidden/);
  });

  it(`gives up after ${EVENT_RETRY.tries} tries`, async () => {
    const { clock, events, warnings } = recorder();
    const scope = api().post(EVENTS).times(EVENT_RETRY.tries).reply(503, status(503, 'ServiceUnavailable'));
    await events.record(makeStj().obj(), 'Normal', 'PlanFound', 'tile 512 px');
    for (let i = 1; i < EVENT_RETRY.tries; i++) await nextTry(clock);
    await eventually(() => scope.isDone() && warnings.length === EVENT_RETRY.tries, 'all tries made');
    assert.equal(clock.pending, 0);
    assert.match(warnings.at(-1) ?? '', new RegExp(`giving up after ${EVENT_RETRY.tries} tries`));
  });

  it('stops retrying when its signal aborts (the leader lost its term)', async () => {
    const term = new AbortController();
    const { clock, events } = recorder(term.signal);
    api().post(EVENTS).reply(503, status(503, 'ServiceUnavailable'));
    await events.record(makeStj().obj(), 'Normal', 'PlanFound', 'tile 512 px');
    assert.equal(clock.pending, 1);
    term.abort();
    assert.equal(clock.pending, 0, 'the retry is cancelled');
    // Nothing else is scripted: a request now would fail the test through nock's pending check.
    clock.advance(60_000);
    assert.ok(nock.isDone());
  });
});
