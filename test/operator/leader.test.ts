// Leader election against a scripted Lease API with optimistic concurrency (a stale
// resourceVersion gets 409), two candidates with their own manual clocks.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import nock from 'nock';
import { ManualClock } from '../../operator/controller/clock.ts';
import { LeaderElector, LeadershipLostError, type LeaseSpec } from '../../operator/leader.ts';
import { silentLogger } from '../../operator/log.ts';
import { api, eventually, never, testClient } from './kube-fixture.ts';

const COLLECTION = '/apis/coordination.k8s.io/v1/namespaces/ops/leases';
const PATH = `${COLLECTION}/tilestream-operator`;

interface StoredLease {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: LeaseSpec;
}

/** An in-memory Lease endpoint: GET, POST (409 if it exists), PUT (409 on a stale resourceVersion). */
function leaseServer() {
  const state: {
    lease: StoredLease | undefined;
    rv: number;
    failing: boolean;
    /** GETs are never answered. */
    hang: boolean;
    puts: LeaseSpec[];
    /** Runs while a GET is being answered (a test moves a candidate's clock: a slow read). */
    onGet?: () => void;
  } = {
    lease: undefined,
    rv: 1,
    failing: false,
    hang: false,
    puts: [],
  };
  const status = (code: number, reason: string) => [code, { kind: 'Status', code, reason }] as const;
  api()
    .persist()
    .get(PATH)
    .reply((() => {
      state.onGet?.();
      if (state.hang) return never();
      return (
        state.failing
          ? status(500, 'InternalError')
          : state.lease
            ? [200, state.lease]
            : status(404, 'NotFound')
      ) as never;
    }) as never);
  api()
    .persist()
    .post(COLLECTION)
    .reply((async (req: Request) => {
      if (state.failing) return status(500, 'InternalError');
      if (state.lease) return status(409, 'AlreadyExists');
      const body = (await req.json()) as StoredLease;
      state.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(state.rv++) } };
      return [201, state.lease];
    }) as never);
  api()
    .persist()
    .put(PATH)
    .reply((async (req: Request) => {
      if (state.failing) return status(500, 'InternalError');
      const body = (await req.json()) as StoredLease;
      if (!state.lease || body.metadata.resourceVersion !== state.lease.metadata.resourceVersion)
        return status(409, 'Conflict');
      state.lease = { ...body, metadata: { ...body.metadata, resourceVersion: String(state.rv++) } };
      state.puts.push(body.spec);
      return [200, state.lease];
    }) as never);
  return state;
}

function candidate(identity: string) {
  const clock = new ManualClock(Date.UTC(2026, 5, 1));
  const log: string[] = [];
  const stop = new AbortController();
  const terms: AbortSignal[] = [];
  const elector = new LeaderElector({
    client: testClient({ timeoutMs: 2000 }),
    clock,
    log: silentLogger,
    namespace: 'ops',
    name: 'tilestream-operator',
    identity,
    onStartedLeading: (term) => {
      terms.push(term);
      log.push('started');
    },
    onStoppedLeading: () => log.push('stopped'),
    onLeaderChanged: (who) => log.push(`leader ${who}`),
  });
  const running = elector.run(stop.signal);
  return { clock, log, elector, stop, running, terms };
}

/**
 * Advances a candidate's clock 500 ms at a time until `cond`, each time once it waits for a timer
 * (not for I/O). A leader always has its step-down timer set; a second one means it is sleeping.
 */
async function stepUntil(c: ReturnType<typeof candidate>, cond: () => boolean, maxMs: number, what: string) {
  for (let t = 0; t <= maxMs && !cond(); t += 500) {
    const idle = () => c.clock.pending > (c.elector.isLeader() ? 1 : 0);
    await eventually(() => idle() || cond(), `${what}: a timer or the condition`);
    if (!cond()) c.clock.advance(500);
    await new Promise((r) => setImmediate(r));
  }
  await eventually(cond, what);
}

describe('leader election on a Lease', () => {
  beforeEach(() => nock.disableNetConnect());
  afterEach(() => nock.cleanAll());

  it('creates a missing lease and leads; releases it on shutdown', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    assert.deepEqual(a.log, ['leader a', 'started']);
    assert.equal(server.lease?.spec.holderIdentity, 'a');
    assert.equal(server.lease?.spec.leaseDurationSeconds, 15);
    a.stop.abort();
    await a.running;
    assert.equal(server.lease?.spec.holderIdentity, '', 'released');
    assert.equal(server.lease?.spec.leaseDurationSeconds, 1);
    assert.equal(a.elector.isLeader(), false);
  });

  it('renews every retry period while leading', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    await stepUntil(a, () => server.puts.length >= 3, 10_000, 'three renewals');
    const renewTimes = server.puts.map((s) => s.renewTime);
    assert.equal(new Set(renewTimes).size, renewTimes.length, 'each renewal moves renewTime');
    assert.ok(server.puts.every((s) => s.holderIdentity === 'a' && s.leaseTransitions === 0));
    a.stop.abort();
    await a.running;
  });

  it('hand-over: a second candidate waits while the lease is held, and takes it as soon as the leader releases it', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    const b = candidate('b');
    await eventually(() => b.clock.pending > 0, 'b retries later');
    assert.equal(b.elector.isLeader(), false);
    assert.deepEqual(b.log, ['leader a']);
    a.stop.abort();
    await a.running;
    await stepUntil(b, () => b.elector.isLeader(), 3000, 'b leads after the release');
    assert.equal(server.lease?.spec.holderIdentity, 'b');
    assert.equal(server.lease?.spec.leaseTransitions, 1);
    assert.deepEqual(b.log, ['leader a', 'leader b', 'started']);
    b.stop.abort();
    await b.running;
  });

  it('takes over a lease whose holder stopped renewing, only after a full lease duration on its own clock', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    // a's clock never advances again: it has stopped renewing (a crashed or hung process).
    const b = candidate('b');
    await stepUntil(b, () => b.clock.now() - Date.UTC(2026, 5, 1) >= 14_000, 14_000, 'b waits 14 s');
    assert.equal(b.elector.isLeader(), false, 'not before 15 s');
    await stepUntil(b, () => b.elector.isLeader(), 5000, 'b takes over');
    assert.equal(server.lease?.spec.holderIdentity, 'b');
    b.stop.abort();
    await b.running;
    a.stop.abort();
    await a.running;
  });

  it('counts the lease duration from when the record was read, not from when the read began', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    // a stops renewing. b's first read takes 3 s on b's clock: a renewal could have landed during it.
    let b: ReturnType<typeof candidate> | undefined;
    let slow = true;
    server.onGet = () => {
      if (b && slow) {
        slow = false;
        b.clock.advance(3000);
      }
    };
    b = candidate('b');
    const start = b.clock.now();
    const bb = b;
    await stepUntil(bb, () => bb.clock.now() - start >= 17_500, 17_500, 'b waits 17.5 s');
    assert.equal(bb.elector.isLeader(), false, 'not before 3 s + the 15 s lease');
    await stepUntil(bb, () => bb.elector.isLeader(), 5000, 'b takes over');
    assert.ok(bb.clock.now() - start >= 18_000);
    bb.stop.abort();
    await bb.running;
    a.stop.abort();
    await a.running;
  });

  it('a leader that cannot renew for the renew deadline steps down', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    server.failing = true;
    await stepUntil(a, () => a.log.includes('stopped'), 12_000, 'a steps down');
    await a.running;
    assert.equal(a.elector.isLeader(), false);
    const elapsed = a.clock.now() - Date.UTC(2026, 5, 1);
    assert.ok(elapsed >= 10_000 && elapsed <= 12_000, `stepped down after ${elapsed} ms`);
    assert.ok(a.terms[0]?.reason instanceof LeadershipLostError, "the term's signal says why it ended");
  });

  it('steps down on a timer at the renew deadline while a renewal is still waiting for an answer', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    // From now on the API server reads but never answers: every renewal hangs (the client's own
    // timeout is real time, 2 s, and does not move with the manual clock).
    let hung = 0;
    server.onGet = () => {
      hung++;
    };
    server.hang = true;
    a.clock.advance(2000);
    await eventually(() => hung === 1, 'a renewal is in flight');
    assert.equal(a.elector.isLeader(), true);
    a.clock.advance(7999);
    assert.equal(a.elector.isLeader(), true, 'leads until the deadline');
    assert.equal(a.terms[0]?.aborted, false);
    a.clock.advance(1);
    assert.equal(a.elector.isLeader(), false, 'steps down at 10 s, with the renewal still hanging');
    assert.deepEqual(a.log.slice(-1), ['stopped']);
    assert.ok(a.terms[0]?.aborted, 'the term is aborted');
    await a.running;
  });

  it('a leader that reads another holder in the lease steps down at once', async () => {
    const server = leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    assert.ok(server.lease);
    server.lease.spec = { ...server.lease.spec, holderIdentity: 'b' };
    a.clock.advance(2000);
    await eventually(() => a.log.includes('stopped'), 'a steps down');
    await a.running;
    assert.equal(a.clock.now() - Date.UTC(2026, 5, 1), 2000, 'at the first renewal, not at the deadline');
    assert.equal(server.lease.spec.holderIdentity, 'b', 'and leaves the lease alone');
  });

  it("on shutdown the term's signal aborts and onStoppedLeading is not called", async () => {
    leaseServer();
    const a = candidate('a');
    await eventually(() => a.elector.isLeader(), 'a leads');
    a.stop.abort();
    await a.running;
    assert.equal(a.terms[0]?.aborted, true);
    assert.ok(!(a.terms[0]?.reason instanceof LeadershipLostError));
    assert.deepEqual(a.log, ['leader a', 'started']);
  });
});
