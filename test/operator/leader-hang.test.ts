// Leader election against a real local HTTP server that stops answering: a slow GET and a PUT
// that never returns, on the system clock with short (scaled-down) durations. The leader must step
// down within the renew deadline of its last successful renewal, and a write its term started
// (a reconcile's request) must be aborted then, not when its own timeout ends.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../operator/controller/clock.ts';
import { KubeClient, TransportError } from '../../operator/kube/client.ts';
import { LeaderElector, type LeaseSpec } from '../../operator/leader.ts';
import { silentLogger } from '../../operator/log.ts';
import { testKubeConfig } from './kube-fixture.ts';

const COLLECTION = '/apis/coordination.k8s.io/v1/namespaces/ops/leases';
const PATH = `${COLLECTION}/tilestream-operator`;
/** A path the scripted reconcile writes to; the server never answers it. */
const WRITE = '/apis/tilestream.io/v1alpha1/namespaces/team/streamingtrainingjobs/demo/status';

// client-go's 15/10/2 s scaled by 0.3, so the test takes seconds. Per-request timeouts are
// renewDeadline / 2 (1.5 s): a 1.4 s GET then a PUT that times out make one 2.9 s attempt, which
// ends after the deadline unless the deadline bounds the attempt.
const LEASE_MS = 4500;
const RENEW_DEADLINE_MS = 3000;
const RETRY_MS = 600;
const SLOW_GET_MS = 1400;
/** Timer latency on a busy machine; the unbounded attempt overshoots by ≥ 0.6 s. */
const MARGIN_MS = 300;

interface StoredLease {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: LeaseSpec;
}

/** A Lease endpoint with optimistic concurrency that can be told to hang (slow GET, silent PUT). */
function leaseServer() {
  const state = {
    lease: undefined as StoredLease | undefined,
    rv: 1,
    hang: false,
    /** Date.now() when the last successful PUT or POST was answered. */
    lastRenewalAt: 0,
    renewals: 0,
    unanswered: 0,
  };
  const send = (res: ServerResponse, code: number, body: unknown) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const status = (res: ServerResponse, code: number, reason: string) =>
    send(res, code, { kind: 'Status', apiVersion: 'v1', code, reason });
  const read = async (req: IncomingMessage) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    return text === '' ? undefined : (JSON.parse(text) as StoredLease);
  };
  const server = createServer(async (req, res) => {
    const body = await read(req);
    const store = (lease: StoredLease) => {
      state.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(state.rv++) } };
      state.lastRenewalAt = Date.now();
      state.renewals++;
      send(res, 200, state.lease);
    };
    if (req.method === 'GET' && req.url === PATH) {
      if (state.hang) await new Promise((r) => setTimeout(r, SLOW_GET_MS));
      if (state.lease) send(res, 200, state.lease);
      else status(res, 404, 'NotFound');
    } else if (req.method === 'POST' && req.url === COLLECTION && body) {
      if (state.lease) status(res, 409, 'AlreadyExists');
      else store(body);
    } else if (req.method === 'PUT' && req.url === PATH && body && !state.hang) {
      if (body.metadata.resourceVersion !== state.lease?.metadata.resourceVersion)
        status(res, 409, 'Conflict');
      else store(body);
    } else state.unanswered++; // a hung API server: the request stays open
  });
  return { state, server };
}

describe('leader election when the API server hangs', () => {
  const { state, server } = leaseServer();
  let client: KubeClient;
  before(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    // A long client timeout: only the leader's term may end the reconcile's hung write.
    client = new KubeClient(testKubeConfig(`http://127.0.0.1:${port}`), { timeoutMs: 30_000 });
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('steps down no later than the renew deadline after its last renewal, and aborts the writes of its term', async (t) => {
    let startedAt = 0;
    let stoppedAt = 0;
    let write: Promise<{ at: number; error: unknown }> | undefined;
    let term: AbortSignal | undefined;
    const elector = new LeaderElector({
      client,
      clock: systemClock,
      log: silentLogger,
      namespace: 'ops',
      name: 'tilestream-operator',
      identity: 'a',
      leaseDurationMs: LEASE_MS,
      renewDeadlineMs: RENEW_DEADLINE_MS,
      retryPeriodMs: RETRY_MS,
      onStartedLeading: (signal: AbortSignal) => {
        startedAt = Date.now();
        term = signal;
        // A reconcile of this term: its status write never gets an answer.
        write = client.request('PATCH', WRITE, { body: {}, signal }).then(
          () => ({ at: Date.now(), error: undefined }),
          (error: unknown) => ({ at: Date.now(), error }),
        );
      },
      onStoppedLeading: () => {
        stoppedAt = Date.now();
      },
    });
    const stop = new AbortController();
    const running = elector.run(stop.signal);
    try {
      while (state.renewals < 2) await new Promise((r) => setTimeout(r, 20));
      assert.ok(startedAt > 0 && elector.isLeader(), 'leads and has renewed once');
      state.hang = true;
      const hungAt = Date.now();
      while (stoppedAt === 0 && Date.now() - hungAt < 10_000) await new Promise((r) => setTimeout(r, 10));
      assert.ok(stoppedAt > 0, 'onStoppedLeading was called');
      const late = stoppedAt - state.lastRenewalAt;
      assert.ok(
        late <= RENEW_DEADLINE_MS + MARGIN_MS,
        `stepped down ${late} ms after the last renewal; the renew deadline is ${RENEW_DEADLINE_MS} ms`,
      );
      t.diagnostic(
        `stepped down ${late} ms after the last renewal was answered (deadline ${RENEW_DEADLINE_MS} ms)`,
      );
      assert.equal(elector.isLeader(), false);
      assert.equal(term?.aborted, true, "the term's signal aborts on step-down");
      const ended = await write;
      assert.ok(ended, 'the reconcile wrote');
      assert.ok(
        ended.error instanceof TransportError && ended.error.kind === 'aborted',
        `the hung write ends aborted, got ${String(ended.error)}`,
      );
      assert.ok(
        ended.at - stoppedAt <= MARGIN_MS,
        `the write ended ${ended.at - stoppedAt} ms after step-down`,
      );
      t.diagnostic(`the hung write was aborted ${ended.at - stoppedAt} ms after the step-down`);
      await running;
    } finally {
      stop.abort();
      await running;
    }
  });
});
