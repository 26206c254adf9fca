// Shared fixtures for the operator's nock tests: a client for a fake API server, a watch stream
// the test writes events into, a silent logger, and waiting helpers that never sleep on a timer
// the code under test depends on.
import { PassThrough } from 'node:stream';
import { KubeConfig } from '@kubernetes/client-node';
import nock from 'nock';
import { KubeClient } from '../../operator/kube/client.ts';

export const SERVER = 'https://k8s.test:6443';

export function testKubeConfig(server = SERVER): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'test', server, skipTLSVerify: true }],
    users: [{ name: 'test', token: 'test-token' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
    currentContext: 'test',
  });
  return kc;
}

export function testClient(opts: { timeoutMs?: number } = {}): KubeClient {
  return new KubeClient(testKubeConfig(), opts);
}

/** A fresh nock scope for the fake server that insists on the bearer token. */
export function api(): nock.Scope {
  return nock(SERVER, { reqheaders: { authorization: 'Bearer test-token' } });
}

export interface TestWatch {
  readonly body: PassThrough;
  send(type: string, object: unknown): void;
  end(): void;
}

/** A watch response body that stays open until end(). */
export function watchStream(): TestWatch {
  const body = new PassThrough();
  return {
    body,
    send(type, object) {
      body.write(`${JSON.stringify({ type, object })}\n`);
    },
    end() {
      body.end();
    },
  };
}

export const silentLog = {
  info() {},
  warn() {},
  debug() {},
  error() {},
};

/** Polls `cond` on the event loop (real I/O settles) until true, failing after `ms`. */
export async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A promise that never settles: a reply the API server never sends (client timeouts). */
export const never = <T>(): Promise<T> => new Promise<T>(() => {});
