// /healthz, /readyz and /metrics over plain HTTP (controller-runtime serves probes on :8081 and
// metrics on :8080; one server when both ports are the same). Readiness means the caches have
// synced; liveness means the process answers. With authorizeMetrics, /metrics answers only
// scrapers the API server authenticates and RBAC allows (metrics-auth.ts).

import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { AuthVerdict } from './metrics-auth.ts';

export interface ProbeOptions {
  healthPort: number;
  metricsPort: number;
  /** Default all interfaces (in a pod, the kubelet and Prometheus connect to the pod IP). */
  host?: string;
  registry: Registry;
  /** Checks for /readyz by name; ready when all pass. */
  readiness: () => Record<string, boolean>;
  /**
   * A folder with tls.crt and tls.key (a kubernetes.io/tls Secret, e.g. cert-manager's): /metrics is
   * served over HTTPS, so scrapers' bearer tokens never cross the network in clear. The files are
   * re-read when they change (checked every `tlsReloadMs`), as controller-runtime's certwatcher does.
   */
  metricsCertDir?: string;
  tlsReloadMs?: number;
  /** When set, every /metrics request must pass it (metrics-auth.ts); probes stay open to the kubelet. */
  authorizeMetrics?: (req: IncomingMessage, path: string) => Promise<AuthVerdict>;
}

export interface ProbeServers {
  healthPort: number;
  metricsPort: number;
  close(): Promise<void>;
}

function handler(o: ProbeOptions, serve: { health: boolean; metrics: boolean }) {
  return async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const text = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'Content-Type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (serve.health && (url.pathname === '/healthz' || url.pathname === '/livez')) return text(200, 'ok\n');
    if (serve.health && url.pathname === '/readyz') {
      const checks = o.readiness();
      const failed = Object.entries(checks).filter(([, ok]) => !ok);
      const lines = Object.entries(checks).map(
        ([name, ok]) => `[${ok ? '+' : '-'}]${name} ${ok ? 'ok' : 'not ready'}`,
      );
      if (failed.length > 0) return text(503, `${lines.join('\n')}\nreadyz check failed\n`);
      return text(
        200,
        url.searchParams.has('verbose') ? `${lines.join('\n')}\nreadyz check passed\n` : 'ok\n',
      );
    }
    if (serve.metrics && url.pathname === '/metrics') {
      if (o.authorizeMetrics) {
        let verdict: AuthVerdict;
        try {
          verdict = await o.authorizeMetrics(req, url.pathname);
        } catch (e) {
          return text(500, `metrics: cannot check the scraper's access: ${(e as Error).message}\n`);
        }
        if (!verdict.ok) return text(verdict.status, `${verdict.message}\n`);
      }
      try {
        return text(200, await o.registry.metrics(), o.registry.contentType);
      } catch (e) {
        return text(500, `metrics failed: ${(e as Error).message}\n`);
      }
    }
    return text(404, 'not found\n');
  };
}

function listen(server: Server, port: number, host: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new Error(`port ${port} is in use; choose another with --metrics-port/--health-port`)
          : e,
      ),
    );
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

function readTls(dir: string): { cert: Buffer; key: Buffer; stamp: string } {
  const certPath = join(dir, 'tls.crt');
  const keyPath = join(dir, 'tls.key');
  const stamp = [certPath, keyPath].map((p) => statSync(p).mtimeMs).join('/');
  return { cert: readFileSync(certPath), key: readFileSync(keyPath), stamp };
}

/** The HTTPS metrics server, reloading its certificate when the files change. */
function tlsServer(o: ProbeOptions, dir: string): { server: HttpsServer; stop: () => void } {
  let tls = readTls(dir);
  const server = createHttpsServer(
    { cert: tls.cert, key: tls.key },
    handler(o, { health: false, metrics: true }),
  );
  const timer = setInterval(() => {
    try {
      const next = readTls(dir);
      if (next.stamp === tls.stamp) return;
      server.setSecureContext({ cert: next.cert, key: next.key });
      tls = next;
    } catch {
      // mid-rotation (one file written, not the other) or briefly absent: keep the old pair
    }
  }, o.tlsReloadMs ?? 60_000);
  timer.unref();
  return { server, stop: () => clearInterval(timer) };
}

export async function startProbeServers(o: ProbeOptions): Promise<ProbeServers> {
  const servers: Server[] = [];
  const stops: (() => void)[] = [];
  const close = () =>
    Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((r) => {
            s.closeAllConnections();
            s.close(() => r());
          }),
      ),
    ).then(() => {
      for (const stop of stops) stop();
    });
  try {
    if (o.metricsCertDir !== undefined && o.healthPort === o.metricsPort && o.healthPort !== 0) {
      throw new Error(
        '--metrics-cert-dir needs --metrics-port and --health-port to differ (probes stay HTTP)',
      );
    }
    if (o.healthPort === o.metricsPort && o.healthPort !== 0) {
      const s = createServer(handler(o, { health: true, metrics: true }));
      servers.push(s);
      const port = await listen(s, o.healthPort, o.host);
      return { healthPort: port, metricsPort: port, close };
    }
    const h = createServer(handler(o, { health: true, metrics: false }));
    let m: Server;
    if (o.metricsCertDir !== undefined) {
      const t = tlsServer(o, o.metricsCertDir);
      m = t.server;
      stops.push(t.stop);
    } else m = createServer(handler(o, { health: false, metrics: true }));
    servers.push(h, m);
    const healthPort = await listen(h, o.healthPort, o.host);
    const metricsPort = await listen(m, o.metricsPort, o.host);
    return { healthPort, metricsPort, close };
  } catch (e) {
    await close();
    throw e;
  }
}
