// KubeClient.stream against a real local HTTP server: the request timeout bounds the wait for the
// response headers only. A watch that has started stays open past it (the API server keeps a quiet
// watch open up to its timeoutSeconds); before this was so, every watch broke after 30 s and the
// informer's backoff grew with each break, delaying events by up to a minute.
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { KubeClient, TransportError, type WatchEvent } from '../../operator/kube/client.ts';
import { testKubeConfig } from './kube-fixture.ts';

const TIMEOUT_MS = 200;

describe('KubeClient.stream timeouts', () => {
  let server: Server;
  let client: KubeClient;
  const open = new Set<ServerResponse>();

  before(async () => {
    server = createServer((req, res) => {
      open.add(res);
      res.on('close', () => open.delete(res));
      if (req.url?.startsWith('/silent')) return; // never answers
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      const line = (name: string) => `${JSON.stringify({ type: 'ADDED', object: { metadata: { name } } })}\n`;
      // Events well after the request timeout, then the server ends the watch.
      setTimeout(() => res.write(line('a')), 2 * TIMEOUT_MS);
      setTimeout(() => res.write(line('b')), 3 * TIMEOUT_MS);
      setTimeout(() => res.end(), 4 * TIMEOUT_MS);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    client = new KubeClient(testKubeConfig(`http://127.0.0.1:${port}`), { timeoutMs: TIMEOUT_MS });
  });

  after(async () => {
    for (const res of open) res.destroy();
    await new Promise((r) => server.close(r));
  });

  it('keeps a started watch open past the request timeout', async () => {
    const events: WatchEvent[] = [];
    const startedAt = Date.now();
    await client.stream('/watch', { watch: 'true' }, (e) => events.push(e), new AbortController().signal);
    assert.deepEqual(
      events.map((e) => (e.object.metadata as { name: string }).name),
      ['a', 'b'],
    );
    assert.ok(Date.now() - startedAt >= 3 * TIMEOUT_MS);
  });

  it('still times out a server that never answers', async () => {
    const startedAt = Date.now();
    await assert.rejects(
      client.stream('/silent', {}, () => {}, new AbortController().signal),
      (e: unknown) => e instanceof TransportError && e.kind === 'timeout',
    );
    assert.ok(Date.now() - startedAt < 10 * TIMEOUT_MS);
  });

  it('ends quietly when the caller aborts a started watch', async () => {
    const stop = new AbortController();
    const events: WatchEvent[] = [];
    setTimeout(() => stop.abort(), TIMEOUT_MS / 2);
    await client.stream('/watch', {}, (e) => events.push(e), stop.signal);
    assert.deepEqual(events, []);
  });
});
