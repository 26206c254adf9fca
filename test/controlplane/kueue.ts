// Real Kueue (sigs.k8s.io/kueue's manager, built by build-binaries.sh) beside the test control
// plane: its CRDs, its admission and conversion webhooks by URL, one ResourceFlavor, a ClusterQueue
// with cpu/memory/nvidia.com/gpu quotas and LocalQueues. The manifests are kueue-manifests.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiextensionsV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { skipUnlessRequired } from '../require-all.ts';
import { ensureBinaries } from './binaries.ts';
import {
  type ControlPlane,
  type ControlPlaneOptions,
  startControlPlaneOrSkip,
  uniquePort,
} from './harness.ts';
import {
  clusterQueue,
  KUEUE_API_VERSION,
  type KubeObject,
  kueueConfiguration,
  localQueue,
  type Quota,
  resourceFlavor,
  webhookConfigurations,
  withConversionWebhook,
} from './kueue-manifests.ts';
import { logTail, type ManagedProcess, spawnManaged } from './processes.ts';

export interface KueueOptions {
  /** ClusterQueue quota (default cpu 16, memory 64Gi, nvidia.com/gpu 4). */
  quota?: Quota;
  /** LocalQueues to create, as namespace → queue name (namespaces must exist). */
  localQueues?: Readonly<Record<string, string>>;
  frameworks?: readonly string[];
  readyTimeoutMs?: number;
}

export interface Kueue {
  flavor: string;
  clusterQueue: string;
  logPath: string;
  proc: ManagedProcess;
  /** Creates a LocalQueue pointing at the ClusterQueue and waits until Kueue reports it Active. */
  createLocalQueue(namespace: string, name: string): Promise<void>;
  /** A Kueue object (group kueue.x-k8s.io, v1beta2) by plural and name. */
  get<T = KubeObject>(plural: string, name: string, namespace?: string): Promise<T>;
  list<T = KubeObject>(plural: string, namespace: string): Promise<T[]>;
  /** Removes the webhook configurations (so the plane works without Kueue), then stops it. */
  stop(): Promise<void>;
}

export const KUEUE_NAMESPACE = 'kueue-system';
const DEFAULT_QUOTA: Quota = { cpu: '16', memory: '64Gi', gpu: '4' };
// Kueue reads its metrics certificate from this fixed path whenever its internal certificate
// management is off (cmd/kueue/main.go), even with the metrics listener disabled.
const METRICS_CERT_DIR = '/etc/kueue/metrics/certs';

/** Why Kueue cannot run here, or undefined. The manager needs a private mount namespace (root). */
export function kueueUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) {
    return `Kueue's manager reads a certificate from the fixed path ${METRICS_CERT_DIR}; the harness mounts one there in a private mount namespace, which needs root`;
  }
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    return `'unshare --mount' is unavailable (${probe.error?.message ?? probe.stderr.trim()}); the harness needs a private mount namespace to give Kueue's manager its certificate at ${METRICS_CERT_DIR}`;
  }
  return undefined;
}

/**
 * For test files: a control plane with Kueue running on it (namespaces created before Kueue's
 * LocalQueues), or the reason it cannot run here, for node:test's skip. The caller stops both
 * (kueue first). Failures to start, once possible, throw.
 */
export async function startControlPlaneWithKueueOrSkip(
  o: { plane?: ControlPlaneOptions; namespaces?: readonly string[]; kueue?: KueueOptions } = {},
): Promise<{ plane: ControlPlane; kueue: Kueue; skip?: undefined } | { skip: string }> {
  const reason = kueueUnavailableReason();
  if (reason !== undefined) return { skip: skipUnlessRequired(reason) as string };
  const found = await ensureBinaries(['kueue']);
  if (!found.ok) return { skip: found.reason };
  const started = await startControlPlaneOrSkip(o.plane);
  if (started.skip !== undefined) return { skip: started.skip };
  const plane = started.plane;
  try {
    for (const ns of o.namespaces ?? []) await plane.createNamespace(ns);
    return { plane, kueue: await startKueue(plane, o.kueue) };
  } catch (err) {
    await plane.stop();
    throw err;
  }
}

function parseYamlFile(path: string): KubeObject[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as KubeObject | null)
    .filter((d): d is KubeObject => d !== null);
}

/** A serving certificate for 127.0.0.1 signed by the plane's CA (the API server trusts that CA). */
function mintServingCert(plane: ControlPlane, dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-new',
      '-nodes',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-keyout',
      join(dir, 'tls.key'),
      '-out',
      join(dir, 'tls.crt'),
      '-days',
      '2',
      '-subj',
      '/CN=kueue-webhook',
      '-CA',
      plane.pki.caCertPath,
      '-CAkey',
      plane.pki.caKeyPath,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function kubectlApply(
  plane: ControlPlane,
  objects: readonly KubeObject[],
  what: string,
): Promise<void> {
  const input = objects.map((o) => JSON.stringify(o)).join('\n');
  // Server-side: Kueue's CRDs are larger than the last-applied annotation may be.
  const r = await plane.kubectl(['apply', '--server-side', '--field-manager=tilestream-test', '-f', '-'], {
    input,
  });
  if (r.code !== 0) throw new Error(`kubectl apply of ${what} failed:\n${r.stderr}`);
}

interface WithConditions {
  status?: { conditions?: { type: string; status: string; message?: string }[] };
}

/** Polls `read` (an API read, cheaper than a kubectl process) until condition `type` is True. */
async function waitCondition(
  what: string,
  read: () => Promise<unknown>,
  type: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const c = ((await read()) as WithConditions).status?.conditions?.find((x) => x.type === type);
      if (c?.status === 'True') return;
      last = c === undefined ? `no ${type} condition yet` : `${c.status}: ${c.message ?? ''}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`${what} did not become ${type} within ${timeoutMs} ms (last: ${last})`);
    await sleep(100);
  }
}

/**
 * Installs Kueue's CRDs on the plane, starts its manager (admin credentials, as the release's
 * ServiceAccount is bound to a cluster-wide role), waits for /readyz (webhook server listening),
 * registers the webhooks and creates the ResourceFlavor `default-flavor`, the ClusterQueue
 * `cluster-queue` and the LocalQueues of `opts.localQueues`.
 */
export async function startKueue(plane: ControlPlane, opts: KueueOptions = {}): Promise<Kueue> {
  const found = await ensureBinaries(['kueue']);
  if (!found.ok) throw new Error(`Kueue's manager is unavailable: ${found.reason}`);
  const manager = found.bin['kueue-manager'];
  if (manager === undefined) throw new Error('ensureBinaries(kueue) returned no kueue-manager path');
  const configDir = join(dirname(manager), 'config');
  const crdDir = join(configDir, 'crd');
  const webhookManifests = join(configDir, 'webhook', 'manifests.yaml');
  if (!existsSync(webhookManifests)) {
    throw new Error(`${webhookManifests} is missing; rebuild with test/controlplane/build-binaries.sh kueue`);
  }

  const dir = join(plane.dir, 'kueue');
  const certDir = join(dir, 'certs');
  mintServingCert(plane, certDir);
  const caBundle = readFileSync(plane.pki.caCertPath).toString('base64');
  const [webhookPort, healthPort] = [await uniquePort(), await uniquePort()];
  const baseUrl = `https://127.0.0.1:${webhookPort}`;

  const crds = readdirSync(crdDir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseYamlFile(join(crdDir, f)))
    .map((crd) => withConversionWebhook(crd, baseUrl, caBundle));
  await kubectlApply(plane, crds, "Kueue's CRDs");
  const crdApi = plane.kubeConfig.makeApiClient(ApiextensionsV1Api);
  for (const crd of crds) {
    await waitCondition(
      `CRD ${crd.metadata.name}`,
      () => crdApi.readCustomResourceDefinition({ name: crd.metadata.name }),
      'Established',
    );
  }
  await plane.createNamespace(KUEUE_NAMESPACE);

  const configPath = join(dir, 'config.yaml');
  writeFileSync(
    configPath,
    JSON.stringify(
      kueueConfiguration({
        namespace: KUEUE_NAMESPACE,
        webhookPort,
        certDir,
        healthPort,
        frameworks: opts.frameworks ?? ['batch/job'],
      }),
      null,
      2,
    ),
  );
  // The metrics certificate at its fixed path, in an overlay on /etc that only the manager's
  // private mount namespace sees (nothing is written to the machine's /etc).
  const upper = join(dir, 'etc-upper');
  const work = join(dir, 'etc-work');
  mkdirSync(join(upper, METRICS_CERT_DIR.replace(/^\/etc\//, '')), { recursive: true });
  mkdirSync(work, { recursive: true });
  for (const f of ['tls.crt', 'tls.key']) {
    writeFileSync(join(upper, METRICS_CERT_DIR.replace(/^\/etc\//, ''), f), readFileSync(join(certDir, f)));
  }
  const custom = plane.kubeConfig.makeApiClient(CustomObjectsApi);
  const [group, version] = KUEUE_API_VERSION.split('/') as [string, string];
  const logPath = join(dir, 'kueue-manager.log');
  plane.logs['kueue-manager'] = logPath;
  const proc = spawnManaged(
    'kueue-manager',
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t overlay tilestream-kueue -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && shift 2 && exec "$@"',
      'sh',
      upper,
      work,
      manager,
      `--config=${configPath}`,
      `--kubeconfig=${plane.kubeconfigPath}`,
      '--zap-log-level=2',
    ],
    { cwd: dir, logPath, env: { ...process.env, KUBECONFIG: plane.kubeconfigPath } },
  );
  // Recorded with the plane's processes so that the next run reaps it if this one is SIGKILLed (by
  // the manager's path: unshare and sh exec into it, keeping the pid).
  if (proc.pid > 0) appendFileSync(join(plane.dir, 'pids'), `${proc.pid} ${manager}\n`);

  const hooks = webhookConfigurations(parseYamlFile(webhookManifests), baseUrl, caBundle);
  // Webhooks first: with failurePolicy Fail, Jobs could not be created while they point at nothing.
  const stop = async () => {
    await plane.kubectl([
      'delete',
      '--ignore-not-found',
      ...hooks.map((h) => `${h.kind.toLowerCase()}.admissionregistration.k8s.io/${h.metadata.name}`),
    ]);
    await proc.stop(10_000);
  };
  try {
    const readyTimeout = opts.readyTimeoutMs ?? 60_000;
    const deadline = Date.now() + readyTimeout;
    let last = '';
    for (;;) {
      if (proc.exitCode !== undefined) {
        throw new Error(
          `kueue-manager exited with code ${proc.exitCode} before it was ready; ${logPath}:\n${logTail(logPath)}`,
        );
      }
      try {
        const status = await httpStatus(`http://127.0.0.1:${healthPort}/readyz`);
        if (status === 200) break;
        last = `HTTP ${status}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `kueue-manager not ready after ${readyTimeout} ms (last: ${last}); ${logPath}:\n${logTail(logPath)}`,
        );
      }
      await sleep(200);
    }

    await kubectlApply(plane, hooks, "Kueue's webhook configurations");

    const flavor = 'default-flavor';
    const cq = 'cluster-queue';
    await kubectlApply(
      plane,
      [resourceFlavor(flavor), clusterQueue(cq, flavor, opts.quota ?? DEFAULT_QUOTA)],
      'the ResourceFlavor and ClusterQueue',
    );
    await waitCondition(
      `ClusterQueue ${cq}`,
      () => custom.getClusterCustomObject({ group, version, plural: 'clusterqueues', name: cq }),
      'Active',
    );

    const kueue: Kueue = {
      flavor,
      clusterQueue: cq,
      logPath,
      proc,
      async createLocalQueue(namespace, name) {
        await kubectlApply(plane, [localQueue(namespace, name, cq)], `LocalQueue ${namespace}/${name}`);
        await waitCondition(
          `LocalQueue ${namespace}/${name}`,
          () => custom.getNamespacedCustomObject({ group, version, namespace, plural: 'localqueues', name }),
          'Active',
        );
      },
      async get<T>(plural: string, name: string, namespace?: string) {
        const o =
          namespace === undefined
            ? await custom.getClusterCustomObject({ group, version, plural, name })
            : await custom.getNamespacedCustomObject({ group, version, namespace, plural, name });
        return o as T;
      },
      async list<T>(plural: string, namespace: string) {
        const l = (await custom.listNamespacedCustomObject({ group, version, namespace, plural })) as {
          items: T[];
        };
        return l.items;
      },
      stop,
    };
    for (const [ns, name] of Object.entries(opts.localQueues ?? {})) await kueue.createLocalQueue(ns, name);
    return kueue;
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
