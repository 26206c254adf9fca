// A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler as local processes on loopback, in a temp dir, on free ports. Recipe and the reasons
// behind each flag: /work/shared/docs/local-control-plane.md §3.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { skipUnlessRequired } from '../require-all.ts';
import { type BinariesResult, ensureBinaries, type Tool } from './binaries.ts';
import { kubeconfigDocument } from './kubeconfig.ts';
import { createPki, opensslAvailable, type Pki } from './pki.ts';
import { logTail, type ManagedProcess, reapStaleRuns, spawnManaged } from './processes.ts';

export const RUN_DIR_PREFIX = 'tilestream-cp-';

/** Controllers a batch cluster needs; canonical names of kube-controller-manager 1.37. */
export const DEFAULT_CONTROLLERS = [
  'job-controller',
  'garbage-collector-controller',
  'ttl-after-finished-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'namespace-controller',
  'root-ca-certificate-publisher-controller',
  'node-lifecycle-controller',
  'pod-garbage-collector-controller',
  'persistentvolume-binder-controller',
  // Admission puts protection finalizers on PVCs/PVs; only these controllers remove them.
  'persistentvolumeclaim-protection-controller',
  'persistentvolume-protection-controller',
  // Fills the aggregated admin/edit/view ClusterRoles that charts bind to.
  'clusterrole-aggregation-controller',
  // A chart's Deployment (the operator) can run through the node agent with imageCommands.
  'deployment-controller',
  'replicaset-controller',
] as const;

export interface ControlPlaneOptions {
  /** Binary paths; default: ensureBinaries(['etcd', 'k8s']) (builds when missing). */
  bin?: Partial<Record<Tool, string>>;
  controllers?: readonly string[];
  extraApiServerFlags?: readonly string[];
  extraControllerManagerFlags?: readonly string[];
  extraSchedulerFlags?: readonly string[];
  /** Keep the temp dir (logs, certs, etcd data) after stop(); also with TILESTREAM_KEEP_CP=1. */
  keepDir?: boolean;
  /** Per-component readiness timeout. */
  readyTimeoutMs?: number;
}

/** The processes of the plane, in start order. */
export type Component = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  dir: string;
  /** https://127.0.0.1:<port> */
  server: string;
  port: number;
  etcdUrl: string;
  caCertPath: string;
  /** Admin (system:masters) kubeconfig file. */
  kubeconfigPath: string;
  /** Admin client config, QPS unlimited. */
  kubeConfig: KubeConfig;
  bin: Partial<Record<Tool, string>>;
  pki: Pki;
  /** Log file per component (etcd, kube-apiserver, …). */
  logs: Record<string, string>;
  /** Writes a cert-based kubeconfig for a user name + groups and returns its path. */
  kubeconfigFor(user: string, groups?: readonly string[]): string;
  kubeConfigFor(user: string, groups?: readonly string[]): KubeConfig;
  /** The identity a kubelet has: CN=system:node:<name>, O=system:nodes. */
  nodeKubeConfig(nodeName: string): KubeConfig;
  /** A ServiceAccount token from the TokenRequest API, as a kubeconfig file; returns its path. */
  serviceAccountKubeconfig(
    namespace: string,
    serviceAccount: string,
    expirationSeconds?: number,
  ): Promise<string>;
  /** Creates a namespace and waits for its `default` ServiceAccount (pods need it). */
  createNamespace(name: string, labels?: Record<string, string>): Promise<void>;
  kubectl(args: readonly string[], opts?: { input?: string; kubeconfig?: string }): Promise<KubectlResult>;
  /**
   * Stops one component, as an outage would: SIGTERM (a graceful shutdown) or SIGKILL (a crash).
   * Its data dir, port and certificates stay, so startComponent brings it back as it was. For
   * fault-injection tests; the other components keep running and reconnect on their own.
   */
  stopComponent(name: Component, opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Starts a stopped component again with the same flags and waits until it is ready. */
  startComponent(name: Component): Promise<void>;
  /** stopComponent then startComponent; resolves once it is ready again. */
  restartComponent(name: Component, opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === 'object') resolve(addr.port);
        else reject(new Error('could not read the port of a probe listener'));
      });
    });
  });
}

// Ports handed out by this process; envtest-style memory so two planes in one process differ.
const usedPorts = new Set<number>();
/** A free loopback port not handed out before in this process (for components started beside the plane). */
export async function uniquePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (!usedPorts.has(p)) {
      usedPorts.add(p);
      return p;
    }
  }
  throw new Error('no free loopback port found after 50 tries');
}

interface ProbeTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure?: boolean;
}

function httpGetStatus(url: string, tls?: ProbeTls): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req =
      u.protocol === 'https:'
        ? httpsRequest(u, {
            ca: tls?.ca,
            cert: tls?.cert,
            key: tls?.key,
            rejectUnauthorized: !tls?.insecure,
            timeout: 2000,
          })
        : httpRequest(u, { timeout: 2000 });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor200(
  what: string,
  proc: ManagedProcess,
  url: string,
  timeoutMs: number,
  tls?: ProbeTls,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (proc.exitCode !== undefined) {
      throw new Error(
        `${what} exited with code ${proc.exitCode} before it was ready; log ${proc.logPath}:\n${logTail(proc.logPath)}`,
      );
    }
    try {
      const r = await httpGetStatus(url, tls);
      if (r.status === 200) return;
      last = `HTTP ${r.status}: ${r.body.slice(0, 500)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(
    `${what} not ready at ${url} after ${timeoutMs} ms (last: ${last}); log ${proc.logPath}:\n${logTail(proc.logPath)}`,
  );
}

function isAddressInUse(err: unknown): boolean {
  return /address already in use|bind: address/i.test(String((err as Error)?.message ?? err));
}

/** Starts the plane, retrying the whole start when a racy free-port pick collided. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  let bin = opts.bin;
  if (!bin) {
    const found: BinariesResult = await ensureBinaries(['etcd', 'k8s']);
    if (!found.ok) throw new Error(`control-plane binaries unavailable: ${found.reason}`);
    bin = found.bin;
  }
  if (!opensslAvailable()) {
    throw new Error(
      'openssl 3.x is required to mint the control-plane certificates (apt-get install openssl)',
    );
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bin, opts);
    } catch (err) {
      if (attempt >= 3 || !isAddressInUse(err)) throw err;
    }
  }
}

async function startOnce(
  bin: Partial<Record<Tool, string>>,
  opts: ControlPlaneOptions,
): Promise<ControlPlane> {
  const need = (t: Tool): string => {
    const p = bin[t];
    if (!p)
      throw new Error(`no path for ${t}; pass opts.bin or build with test/controlplane/build-binaries.sh`);
    return p;
  };
  reapStaleRuns(RUN_DIR_PREFIX);
  const dir = mkdtempSync(join(tmpdir(), RUN_DIR_PREFIX));
  writeFileSync(join(dir, 'owner.pid'), `${process.pid}\n`);
  const pidFile = join(dir, 'pids');
  const keepDir = opts.keepDir ?? process.env.TILESTREAM_KEEP_CP === '1';
  const readyTimeout = opts.readyTimeoutMs ?? 60_000;
  /** Each component's current process, flags and readiness probe, in start order. */
  const components = new Map<
    Component,
    { args: string[]; proc: ManagedProcess; ready: (p: ManagedProcess) => Promise<void> }
  >();
  const logs: Record<string, string> = {};
  let stopped = false;

  const removeDirOnExit = () => {
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', removeDirOnExit);

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Reverse start order: scheduler/KCM, then apiserver, then etcd.
    for (const c of [...components.values()].reverse()) await c.proc.stop(10_000);
    process.off('exit', removeDirOnExit);
    removeDirOnExit();
  };

  const spawnComponent = (name: Component, args: string[]): ManagedProcess => {
    const logPath = join(dir, `${name}.log`);
    logs[name] = logPath;
    return spawnManaged(name, need(name as Tool), args, { cwd: dir, logPath, pidFile });
  };
  /** Starts a component and registers how to probe it, so it can be stopped and started again. */
  const start = (
    name: Component,
    args: string[],
    ready: (p: ManagedProcess) => Promise<void>,
  ): ManagedProcess => {
    const proc = spawnComponent(name, args);
    components.set(name, { args, proc, ready });
    return proc;
  };
  const component = (name: Component) => {
    const c = components.get(name);
    if (!c) throw new Error(`no component ${name}; the plane runs ${[...components.keys()].join(', ')}`);
    return c;
  };
  const stopComponent = async (name: Component, o: { signal?: 'SIGTERM' | 'SIGKILL' } = {}) => {
    const c = component(name);
    if (o.signal !== 'SIGKILL') {
      await c.proc.stop(10_000);
      return;
    }
    try {
      process.kill(-c.proc.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    await c.proc.exited;
  };
  const startComponent = async (name: Component) => {
    const c = component(name);
    if (c.proc.exitCode === undefined) throw new Error(`${name} is still running (pid ${c.proc.pid})`);
    writeFileSync(c.proc.logPath, `\n--- restarted ${new Date().toISOString()}\n`, { flag: 'a' });
    c.proc = spawnComponent(name, c.args);
    await c.ready(c.proc);
  };

  try {
    const pkiDir = join(dir, 'pki');
    mkdirSync(pkiDir);
    const pki = createPki(pkiDir);
    const caPem = readFileSync(pki.caCertPath, 'utf8');

    const [etcdPort, peerPort, apiPort, kcmPort, schedPort] = [
      await uniquePort(),
      await uniquePort(),
      await uniquePort(),
      await uniquePort(),
      await uniquePort(),
    ];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const server = `https://127.0.0.1:${apiPort}`;

    // --- etcd
    const etcd = start(
      'etcd',
      [
        `--name=tilestream-test`,
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=tilestream-test=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      (p) => waitFor200('etcd', p, `${etcdUrl}/health`, readyTimeout),
    );
    await component('etcd').ready(etcd);

    // --- kubeconfigs
    const writeKubeconfig = (file: string, user: string, groups: readonly string[] = []): string => {
      const cert = pki.clientCert(user, groups);
      const path = join(dir, file);
      writeFileSync(
        path,
        kubeconfigDocument({
          server,
          caPem,
          userName: user,
          user: {
            clientCertificatePem: readFileSync(cert.certPath, 'utf8'),
            clientKeyPem: readFileSync(cert.keyPath, 'utf8'),
          },
        }),
        { mode: 0o600 },
      );
      return path;
    };
    const kubeconfigPath = writeKubeconfig('admin.kubeconfig', 'admin', ['system:masters']);
    const kcmKubeconfig = writeKubeconfig('kcm.kubeconfig', 'system:kube-controller-manager');
    const schedKubeconfig = writeKubeconfig('scheduler.kubeconfig', 'system:kube-scheduler');

    // --- kube-apiserver
    const frontProxy = pki.clientCert('front-proxy-client');
    const adminCert = pki.clientCert('admin', ['system:masters']);
    const adminTls: ProbeTls = {
      ca: Buffer.from(caPem),
      cert: readFileSync(adminCert.certPath),
      key: readFileSync(adminCert.keyPath),
    };
    const apiserver = start(
      'kube-apiserver',
      [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, 'apiserver')}`,
        `--tls-cert-file=${pki.serving.certPath}`,
        `--tls-private-key-file=${pki.serving.keyPath}`,
        `--client-ca-file=${pki.caCertPath}`,
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${pki.saPubPath}`,
        `--service-account-signing-key-file=${pki.saKeyPath}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=Node,RBAC',
        // Default-on plugins stay on (ServiceAccount, TaintNodesByCondition, PodSecurity, …);
        // NodeRestriction is off by default in upstream but on in every real cluster.
        '--enable-admission-plugins=NodeRestriction',
        '--allow-privileged=true',
        // Loopback addresses are invalid in the `kubernetes` Endpoints; skip that reconciler.
        '--endpoint-reconciler-type=none',
        '--profiling=false',
        // Front-proxy (aggregation layer) settings as kubeadm sets them; without them the
        // controllers' delegated authn logs a missing requestheader CA over and over.
        `--requestheader-client-ca-file=${pki.caCertPath}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${frontProxy.certPath}`,
        `--proxy-client-key-file=${frontProxy.keyPath}`,
        ...(opts.extraApiServerFlags ?? []),
      ],
      async (p) => {
        await waitFor200('kube-apiserver', p, `${server}/readyz`, readyTimeout * 2, adminTls);
        await waitFor200(
          'kube-apiserver (namespace default)',
          p,
          `${server}/api/v1/namespaces/default`,
          readyTimeout,
          adminTls,
        );
      },
    );
    await component('kube-apiserver').ready(apiserver);

    // --- kube-controller-manager and kube-scheduler
    const kcm = start(
      'kube-controller-manager',
      [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kcmPort}`,
        `--cert-dir=${join(dir, 'kcm')}`,
        '--leader-elect=false',
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${pki.saKeyPath}`,
        `--root-ca-file=${pki.caCertPath}`,
        `--controllers=${(opts.controllers ?? DEFAULT_CONTROLLERS).join(',')}`,
        ...(opts.extraControllerManagerFlags ?? []),
      ],
      (p) =>
        waitFor200('kube-controller-manager', p, `https://127.0.0.1:${kcmPort}/healthz`, readyTimeout, {
          insecure: true,
        }),
    );
    const scheduler = start(
      'kube-scheduler',
      [
        `--kubeconfig=${schedKubeconfig}`,
        `--authentication-kubeconfig=${schedKubeconfig}`,
        `--authorization-kubeconfig=${schedKubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        `--cert-dir=${join(dir, 'scheduler')}`,
        '--leader-elect=false',
        ...(opts.extraSchedulerFlags ?? []),
      ],
      (p) =>
        waitFor200('kube-scheduler', p, `https://127.0.0.1:${schedPort}/healthz`, readyTimeout, {
          insecure: true,
        }),
    );
    await Promise.all([
      component('kube-controller-manager').ready(kcm),
      component('kube-scheduler').ready(scheduler),
    ]);

    const loadKc = (path: string): KubeConfig => {
      const kc = new KubeConfig();
      kc.loadFromFile(path);
      return kc;
    };
    const kubeConfig = loadKc(kubeconfigPath);
    const core = kubeConfig.makeApiClient(CoreV1Api);

    const plane: ControlPlane = {
      dir,
      server,
      port: apiPort,
      etcdUrl,
      caCertPath: pki.caCertPath,
      kubeconfigPath,
      kubeConfig,
      bin,
      pki,
      logs,
      kubeconfigFor: (user, groups = []) =>
        writeKubeconfig(
          `user-${user.replace(/[^A-Za-z0-9_.-]/g, '_')}-${groups.length}.kubeconfig`,
          user,
          groups,
        ),
      kubeConfigFor: (user, groups = []) => loadKc(plane.kubeconfigFor(user, groups)),
      nodeKubeConfig: (nodeName) => plane.kubeConfigFor(`system:node:${nodeName}`, ['system:nodes']),
      async serviceAccountKubeconfig(namespace, serviceAccount, expirationSeconds = 3600) {
        const tr = await core.createNamespacedServiceAccountToken({
          name: serviceAccount,
          namespace,
          body: {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenRequest',
            spec: { audiences: [], expirationSeconds },
          },
        });
        const token = tr.status?.token;
        if (!token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
        const path = join(dir, `sa-${namespace}-${serviceAccount}.kubeconfig`);
        writeFileSync(
          path,
          kubeconfigDocument({
            server,
            caPem,
            userName: `system:serviceaccount:${namespace}:${serviceAccount}`,
            user: { token },
            namespace,
          }),
          { mode: 0o600 },
        );
        return path;
      },
      async createNamespace(name, labels) {
        await core.createNamespace({ body: { metadata: { name, labels } } });
        const deadline = Date.now() + 30_000;
        for (;;) {
          try {
            await core.readNamespacedServiceAccount({ name: 'default', namespace: name });
            return;
          } catch (err) {
            if (Date.now() > deadline) {
              throw new Error(
                `ServiceAccount ${name}/default did not appear within 30 s (is serviceaccount-controller running?): ${String(err)}`,
              );
            }
            await sleep(100);
          }
        }
      },
      kubectl(args, kopts = {}) {
        return new Promise((resolve, reject) => {
          const child = spawn(
            need('kubectl'),
            [
              `--kubeconfig=${kopts.kubeconfig ?? kubeconfigPath}`,
              `--cache-dir=${join(dir, 'kubectl-cache')}`,
              ...args,
            ],
            { stdio: ['pipe', 'pipe', 'pipe'] },
          );
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d: Buffer) => {
            stdout += d.toString();
          });
          child.stderr.on('data', (d: Buffer) => {
            stderr += d.toString();
          });
          child.on('error', reject);
          child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
          child.stdin.end(kopts.input ?? '');
        });
      },
      stopComponent,
      startComponent,
      async restartComponent(name, o) {
        await stopComponent(name, o);
        await startComponent(name);
      },
      stop,
    };
    return plane;
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/**
 * For test files: starts a plane, or returns the reason it cannot run here (no Go to build the
 * binaries, building disabled) to pass to node:test's `skip`. Build or start failures still throw.
 */
export async function startControlPlaneOrSkip(
  opts: ControlPlaneOptions = {},
): Promise<{ plane: ControlPlane; skip?: undefined } | { plane?: undefined; skip: string }> {
  if (!opts.bin) {
    const found = await ensureBinaries(['etcd', 'k8s']);
    if (!found.ok) return { skip: skipUnlessRequired(found.reason) as string };
    opts = { ...opts, bin: found.bin };
  }
  if (!opensslAvailable())
    return {
      skip: skipUnlessRequired(
        'openssl 3.x is not installed; it mints the control-plane certificates',
      ) as string,
    };
  return { plane: await startControlPlane(opts) };
}
