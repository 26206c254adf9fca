// A kubelet stand-in for the fake GPU nodes: runs each pod's containers as local processes and
// reports their lifecycle through pods/status, as a kubelet would (local-control-plane.md §4.4–4.7).
//
// Filesystem: each container gets a root folder (`$TILESTREAM_POD_ROOT`) in which every volumeMount
// path is a symlink to the volume's local folder (emptyDir → temp folder, hostPath → the path,
// persistentVolumeClaim → <pvcRoot>/<namespace>/<claim>, projected/configMap/secret/downwardAPI →
// files written by the agent) and the terminationMessagePath is a real file. Processes see their
// spec's command and args unchanged and run with that root as working directory; code that opens
// absolute paths (the service-account token, a checkpoint folder) prefixes `$TILESTREAM_POD_ROOT`,
// e.g. `kc.loadFromCluster(process.env.TILESTREAM_POD_ROOT)`.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  CoreV1Api,
  type KubeConfig,
  ListWatch,
  PatchStrategy,
  setHeaderOptions,
  type V1Container,
  type V1Pod,
  type V1Volume,
  Watch,
} from '@kubernetes/client-node';
import { rfc3339 } from './gpu-node-spec.ts';
import { POD_HOSTS_FILE_ENV, type PodHost } from './pod-dns.ts';
import {
  type ConditionMemory,
  type ContainerRecord,
  containerStatusJson,
  expandVars,
  fallbackMessageFromLog,
  type PodPhase,
  podConditions,
  podFieldValue,
  podPhase,
  resourceFieldValue,
  truncateMessage,
} from './pod-runtime.ts';
import { type ManagedProcess, spawnManaged } from './processes.ts';

/** The preload that resolves pods' `<hostname>.<subdomain>` names here (pod-dns.ts). */
const POD_DNS_PRELOAD = new URL('./pod-dns.ts', import.meta.url).href;

export interface NodeAgentOptions {
  /** Client per node (ControlPlane.nodeKubeConfig gives each node its kubelet identity). */
  kubeConfigForNode?: (nodeName: string) => KubeConfig;
  /** Folder for pod folders; default a new temp dir (removed on stop). */
  workDir?: string;
  /** PVC folders live at <pvcRoot>/<namespace>/<claimName>; default <workDir>/pvc. */
  pvcRoot?: string;
  /** Env every process starts from (default: PATH and LANG of this process). */
  baseEnv?: Record<string, string>;
  /** Entrypoint per image, for containers that give no `command`. */
  imageCommands?: Record<string, readonly string[]>;
  /** Reported podIP/hostIP; 127.0.0.1 so that a pod's ports are reachable from the tests. */
  podIP?: string;
  /** Name of the env var holding the container root folder. */
  rootEnvVar?: string;
  /** Exit codes reported as reason OOMKilled (exit code kept). */
  oomExitCodes?: readonly number[];
  /** Restart backoff for OnFailure/Always containers. */
  restartDelayMs?: number;
  /** Where agent errors go (default stderr). */
  log?: (line: string) => void;
}

export interface NodeAgent {
  workDir: string;
  pvcRoot: string;
  /** Pod folder (holds per-container roots and logs), while the agent knows the pod. */
  podDir(namespace: string, name: string): string | undefined;
  /** stdout+stderr of the container's current or last process. */
  logPath(namespace: string, name: string, container: string): string | undefined;
  /** Signals a running container process group, as a crash would (reason Error). */
  killContainer(namespace: string, name: string, container: string, signal?: NodeJS.Signals): boolean;
  /** SIGKILLs a running container and reports it as the OOM killer would (OOMKilled, 137). */
  oomKill(namespace: string, name: string, container: string): boolean;
  /** Pods of a namespace with a container process running now, from the agent's own records (no API call). */
  runningPods(namespace: string): string[];
  /**
   * The node's machine is gone: the agent stops watching the node and SIGKILLs the processes of
   * its pods without reporting anything, so the API keeps their last status (as for a node that
   * vanished; the pod garbage collector then deletes them once the Node object is gone).
   */
  loseNode(nodeName: string): Promise<void>;
  stop(): Promise<void>;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const DEFAULT_TERMINATION_PATH = '/dev/termination-log';

interface ContainerRun {
  spec: V1Container;
  record: ContainerRecord;
  isInit: boolean;
  root: string;
  logPath: string;
  termPath: string;
  proc?: ManagedProcess;
  killReason?: 'agent' | 'oom' | 'external';
}

interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  core: CoreV1Api;
  dir: string;
  pod: V1Pod;
  init: ContainerRun[];
  main: ContainerRun[];
  initDone: boolean;
  initFailed: boolean;
  startTime: string;
  conditions: ConditionMemory;
  deleting: boolean;
  finished: boolean;
  gone: boolean;
  statusChain: Promise<void>;
  /** The last status write failed (logged once until one succeeds); a retry is scheduled. */
  statusFailing: boolean;
  statusRetry?: NodeJS.Timeout;
  timers: Set<NodeJS.Timeout>;
}

function apiErrorCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

function errText(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (e.code) return `HTTP ${e.code}: ${typeof e.body === 'string' ? e.body : JSON.stringify(e.body)}`;
  return e.message ?? String(err);
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function serverHostPort(kc: KubeConfig): { host: string; port: string } {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the node agent needs a kubeconfig with a current cluster');
  const u = new URL(server);
  return { host: u.hostname, port: u.port || (u.protocol === 'https:' ? '443' : '80') };
}

export async function startNodeAgent(
  kc: KubeConfig,
  nodeNames: readonly string[],
  opts: NodeAgentOptions = {},
): Promise<NodeAgent> {
  const workDir = opts.workDir ?? mkdtempSync(join(tmpdir(), 'tilestream-cp-agent-'));
  const ownsWorkDir = opts.workDir === undefined;
  if (ownsWorkDir) writeFileSync(join(workDir, 'owner.pid'), `${process.pid}\n`);
  const pvcRoot = opts.pvcRoot ?? join(workDir, 'pvc');
  mkdirSync(pvcRoot, { recursive: true });
  const podIP = opts.podIP ?? '127.0.0.1';
  const rootEnvVar = opts.rootEnvVar ?? 'TILESTREAM_POD_ROOT';
  const restartDelayMs = opts.restartDelayMs ?? 1000;
  const log = opts.log ?? ((line: string) => process.stderr.write(`node-agent: ${line}\n`));
  const api = serverHostPort(kc);
  const baseEnv: Record<string, string> = opts.baseEnv ?? {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    ...(process.env.LANG ? { LANG: process.env.LANG } : {}),
  };
  const runs = new Map<string, PodRun>();
  const byName = new Map<string, string>();
  // The names a headless Service would give the pods that run here (hostname + subdomain), for
  // the DNS preload of pod processes: there is no cluster DNS, and every pod is on this host.
  const hostsFile = join(workDir, 'pod-hosts.json');
  const publishHosts = (): void => {
    const hosts: PodHost[] = [...runs.values()]
      .filter((r) => !r.finished && !r.deleting && r.pod.spec?.hostname && r.pod.spec?.subdomain)
      .map((r) => ({
        name: `${r.pod.spec?.hostname}.${r.pod.spec?.subdomain}`,
        namespace: r.namespace,
        address: podIP,
      }));
    writeFileSync(`${hostsFile}.tmp`, JSON.stringify(hosts));
    renameSync(`${hostsFile}.tmp`, hostsFile);
  };
  publishHosts();
  const informers = new Map<string, ListWatch<V1Pod>>();
  /** Nodes whose machine is gone (loseNode): their pods are no longer run or reported. */
  const lost = new Set<string>();
  let stopping = false;

  const writeStatus = (run: PodRun): Promise<void> => {
    const body = statusBody(run);
    run.statusChain = run.statusChain.then(async () => {
      if (run.gone) return;
      try {
        await run.core.patchNamespacedPodStatus(
          { name: run.name, namespace: run.namespace, body },
          mergePatch,
        );
        run.statusFailing = false;
      } catch (err) {
        if (apiErrorCode(err) === 404) {
          run.gone = true;
          return;
        }
        if (!run.statusFailing)
          log(`status of ${run.namespace}/${run.name}: ${errText(err)}; retrying every 1 s`);
        run.statusFailing = true;
        retryStatus(run);
      }
    });
    return run.statusChain;
  };
  // kubelet's status manager syncs every pod's status again until the API server has it; without
  // that, an exit reported while the API server or etcd is down would never reach the Job.
  const retryStatus = (run: PodRun): void => {
    if (run.statusRetry || run.gone || stopping) return;
    run.statusRetry = setTimeout(() => {
      if (run.statusRetry) run.timers.delete(run.statusRetry);
      run.statusRetry = undefined;
      if (!run.gone && !stopping) void writeStatus(run);
    }, 1000);
    run.timers.add(run.statusRetry);
  };

  const willRestart = (run: PodRun) => (c: ContainerRecord) => {
    if (run.deleting) return false;
    const policy = run.pod.spec?.restartPolicy ?? 'Always';
    if (c.state.kind !== 'terminated') return false;
    return policy === 'Always' || (policy === 'OnFailure' && c.state.exitCode !== 0);
  };

  const phaseOf = (run: PodRun): PodPhase =>
    podPhase(
      run.initDone,
      run.initFailed,
      run.main.map((c) => c.record),
      willRestart(run),
    );

  function statusBody(run: PodRun): Record<string, unknown> {
    const now = rfc3339();
    const phase = phaseOf(run);
    const allRunning = run.main.every((c) => c.record.state.kind === 'running');
    const ready = phase === 'Running' && allRunning;
    const scheduled = (run.pod.status?.conditions ?? []).filter(
      (c) => c.type === 'PodScheduled',
    ) as unknown as Record<string, unknown>[];
    const conditions = podConditions(
      run.conditions,
      now,
      {
        PodReadyToStartContainers: { status: !run.finished || phase === 'Running' },
        Initialized: {
          status: run.initDone,
          ...(run.initDone ? {} : { reason: 'ContainersNotInitialized' }),
        },
        Ready: {
          status: ready,
          ...(ready
            ? {}
            : {
                reason: phase === 'Succeeded' || phase === 'Failed' ? 'PodCompleted' : 'ContainersNotReady',
              }),
        },
        ContainersReady: {
          status: ready,
          ...(ready
            ? {}
            : {
                reason: phase === 'Succeeded' || phase === 'Failed' ? 'PodCompleted' : 'ContainersNotReady',
              }),
        },
      },
      scheduled,
    );
    return {
      status: {
        phase,
        hostIP: podIP,
        hostIPs: [{ ip: podIP }],
        podIP,
        podIPs: [{ ip: podIP }],
        startTime: run.startTime,
        conditions,
        ...(run.init.length
          ? { initContainerStatuses: run.init.map((c) => containerStatusJson(c.record, true)) }
          : {}),
        containerStatuses: run.main.map((c) => containerStatusJson(c.record, false)),
      },
    };
  }

  // --- volumes

  async function readConfigMapData(
    run: PodRun,
    name: string,
    optional?: boolean,
  ): Promise<Record<string, string>> {
    try {
      const cm = await run.core.readNamespacedConfigMap({ name, namespace: run.namespace });
      return {
        ...cm.data,
        ...Object.fromEntries(
          Object.entries(cm.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
        ),
      };
    } catch (err) {
      if (optional && apiErrorCode(err) === 404) return {};
      throw new Error(`configMap ${run.namespace}/${name}: ${errText(err)}`);
    }
  }
  async function readSecretData(
    run: PodRun,
    name: string,
    optional?: boolean,
  ): Promise<Record<string, string>> {
    try {
      const s = await run.core.readNamespacedSecret({ name, namespace: run.namespace });
      return {
        ...s.stringData,
        ...Object.fromEntries(
          Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
        ),
      };
    } catch (err) {
      if (optional && apiErrorCode(err) === 404) return {};
      throw new Error(`secret ${run.namespace}/${name}: ${errText(err)}`);
    }
  }
  const writeItems = (dir: string, data: Record<string, string>, items?: { key: string; path: string }[]) => {
    const entries = items ? items.map((i) => [i.path, data[i.key] ?? ''] as const) : Object.entries(data);
    for (const [p, v] of entries) {
      const file = join(dir, p);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, v);
    }
  };

  async function prepareVolume(run: PodRun, vol: V1Volume): Promise<string> {
    if (vol.hostPath) {
      mkdirSync(vol.hostPath.path, { recursive: true });
      return vol.hostPath.path;
    }
    if (vol.persistentVolumeClaim) {
      const d = join(pvcRoot, safeName(run.namespace), safeName(vol.persistentVolumeClaim.claimName));
      mkdirSync(d, { recursive: true });
      return d;
    }
    const d = join(run.dir, 'volumes', safeName(vol.name));
    mkdirSync(d, { recursive: true });
    if (vol.emptyDir) return d;
    if (vol.configMap) {
      writeItems(
        d,
        await readConfigMapData(run, vol.configMap.name ?? '', vol.configMap.optional),
        vol.configMap.items,
      );
      return d;
    }
    if (vol.secret) {
      writeItems(
        d,
        await readSecretData(run, vol.secret.secretName ?? '', vol.secret.optional),
        vol.secret.items,
      );
      return d;
    }
    if (vol.downwardAPI) {
      for (const item of vol.downwardAPI.items ?? []) {
        if (item.fieldRef)
          writeItems(d, { [item.path]: podFieldValue(run.pod, item.fieldRef.fieldPath, podIP, podIP) });
      }
      return d;
    }
    if (vol.projected) {
      for (const src of vol.projected.sources ?? []) {
        if (src.serviceAccountToken) {
          const sa = run.pod.spec?.serviceAccountName ?? 'default';
          const tr = await run.core.createNamespacedServiceAccountToken({
            name: sa,
            namespace: run.namespace,
            body: {
              apiVersion: 'authentication.k8s.io/v1',
              kind: 'TokenRequest',
              spec: {
                audiences: src.serviceAccountToken.audience ? [src.serviceAccountToken.audience] : [],
                expirationSeconds: src.serviceAccountToken.expirationSeconds ?? 3607,
                boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: run.name, uid: run.uid },
              },
            },
          });
          writeItems(d, { [src.serviceAccountToken.path]: tr.status?.token ?? '' });
        } else if (src.configMap) {
          writeItems(
            d,
            await readConfigMapData(run, src.configMap.name ?? '', src.configMap.optional),
            src.configMap.items,
          );
        } else if (src.secret) {
          writeItems(
            d,
            await readSecretData(run, src.secret.name ?? '', src.secret.optional),
            src.secret.items,
          );
        } else if (src.downwardAPI) {
          for (const item of src.downwardAPI.items ?? []) {
            if (item.fieldRef)
              writeItems(d, { [item.path]: podFieldValue(run.pod, item.fieldRef.fieldPath, podIP, podIP) });
          }
        }
      }
      return d;
    }
    throw new Error(
      `volume ${vol.name}: only emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI and projected are supported`,
    );
  }

  const linkInto = (root: string, absPath: string, target: string) => {
    const at = join(root, absPath);
    mkdirSync(dirname(at), { recursive: true });
    rmSync(at, { recursive: true, force: true });
    symlinkSync(target, at);
  };

  // --- env

  async function containerEnv(run: PodRun, c: ContainerRun): Promise<Record<string, string>> {
    const spec = c.spec;
    const vars = new Map<string, string>();
    for (const from of spec.envFrom ?? []) {
      const data = from.configMapRef
        ? await readConfigMapData(run, from.configMapRef.name ?? '', from.configMapRef.optional)
        : from.secretRef
          ? await readSecretData(run, from.secretRef.name ?? '', from.secretRef.optional)
          : {};
      for (const [k, v] of Object.entries(data)) vars.set(`${from.prefix ?? ''}${k}`, v);
    }
    for (const e of spec.env ?? []) {
      let value = '';
      if (e.value !== undefined) value = expandVars(e.value, vars);
      else if (e.valueFrom?.fieldRef)
        value = podFieldValue(run.pod, e.valueFrom.fieldRef.fieldPath, podIP, podIP);
      else if (e.valueFrom?.resourceFieldRef) {
        const ref = e.valueFrom.resourceFieldRef;
        const target = ref.containerName
          ? ([...run.init, ...run.main].find((x) => x.spec.name === ref.containerName)?.spec ?? spec)
          : spec;
        value = resourceFieldValue(target, ref.resource, ref.divisor ? String(ref.divisor) : '1');
      } else if (e.valueFrom?.configMapKeyRef) {
        const r = e.valueFrom.configMapKeyRef;
        const data = await readConfigMapData(run, r.name ?? '', r.optional);
        if (data[r.key] === undefined && !r.optional)
          throw new Error(`env ${e.name}: key ${r.key} missing in configMap ${r.name}`);
        value = data[r.key] ?? '';
      } else if (e.valueFrom?.secretKeyRef) {
        const r = e.valueFrom.secretKeyRef;
        const data = await readSecretData(run, r.name ?? '', r.optional);
        if (data[r.key] === undefined && !r.optional)
          throw new Error(`env ${e.name}: key ${r.key} missing in secret ${r.name}`);
        value = data[r.key] ?? '';
      }
      vars.set(e.name, value);
    }
    // Pods in a Service's subdomain find each other by name (pod-dns.ts); Node processes only.
    const dnsEnv: Record<string, string> = run.pod.spec?.subdomain
      ? {
          [POD_HOSTS_FILE_ENV]: hostsFile,
          NODE_OPTIONS: [vars.get('NODE_OPTIONS') ?? baseEnv.NODE_OPTIONS, `--import=${POD_DNS_PRELOAD}`]
            .filter((x) => x)
            .join(' '),
        }
      : {};
    return {
      ...baseEnv,
      HOSTNAME: run.pod.spec?.hostname ?? run.name,
      HOME: c.root,
      // The service IP is not routable here: point in-cluster clients at the API server directly.
      KUBERNETES_SERVICE_HOST: api.host,
      KUBERNETES_SERVICE_PORT: api.port,
      KUBERNETES_SERVICE_PORT_HTTPS: api.port,
      KUBERNETES_PORT: `tcp://${api.host}:${api.port}`,
      [rootEnvVar]: c.root,
      ...Object.fromEntries(vars),
      ...dnsEnv,
    };
  }

  // --- processes

  function readTerminationMessage(c: ContainerRun, exitCode: number): string {
    let msg = '';
    try {
      msg = readFileSync(c.termPath, 'utf8');
    } catch {
      // No message written.
    }
    if (!msg && exitCode !== 0 && c.spec.terminationMessagePolicy === 'FallbackToLogsOnError') {
      try {
        msg = fallbackMessageFromLog(readFileSync(c.logPath, 'utf8'));
      } catch {
        // No log.
      }
    }
    return truncateMessage(msg);
  }

  async function runContainer(run: PodRun, c: ContainerRun): Promise<number> {
    const env = await containerEnv(run, c);
    const vars = new Map(Object.entries(env));
    const image = c.spec.image ?? '';
    const command = (c.spec.command ?? opts.imageCommands?.[image] ?? []).map((s) => expandVars(s, vars));
    const args = (c.spec.args ?? []).map((s) => expandVars(s, vars));
    const argv = [...command, ...args];
    const startedAt = rfc3339();
    // A fresh termination file per start, as kubelet gives each container instance its own.
    writeFileSync(c.termPath, '');
    const [cmd, ...rest] = argv;
    if (!cmd) {
      c.record.state = {
        kind: 'terminated',
        exitCode: 128,
        reason: 'StartError',
        message: `container ${c.spec.name} has no command and image '${image}' has no entry in the node agent's imageCommands`,
        startedAt,
        finishedAt: startedAt,
      };
      return 128;
    }
    let cwd = c.root;
    if (c.spec.workingDir) {
      cwd = join(c.root, c.spec.workingDir);
      mkdirSync(cwd, { recursive: true });
    }
    writeFileSync(c.logPath, `--- start ${startedAt}: ${argv.join(' ')}\n`, { flag: 'a' });
    c.killReason = undefined;
    const proc = spawnManaged(`${run.namespace}/${run.name}/${c.spec.name}`, cmd, rest, {
      cwd,
      env,
      logPath: c.logPath,
      pidFile: ownsWorkDir ? join(workDir, 'pids') : undefined,
    });
    c.proc = proc;
    c.record.containerID = `tilestream://${proc.pid}`;
    c.record.state = { kind: 'running', startedAt };
    await writeStatus(run);
    const code = await proc.exited;
    c.proc = undefined;
    const finishedAt = rfc3339();
    const spawnFailed = code === 127 && readFileSync(c.logPath, 'utf8').includes('[spawn error]');
    const oom = c.killReason === 'oom' || (opts.oomExitCodes ?? []).includes(code);
    const reason = spawnFailed ? 'StartError' : oom ? 'OOMKilled' : code === 0 ? 'Completed' : 'Error';
    const message = readTerminationMessage(c, code);
    c.record.state = {
      kind: 'terminated',
      exitCode: code,
      reason,
      ...(message ? { message } : {}),
      startedAt,
      finishedAt,
      ...(code > 128 && !spawnFailed ? { signal: code - 128 } : {}),
    };
    return code;
  }

  async function superviseMain(run: PodRun, c: ContainerRun): Promise<void> {
    for (;;) {
      await runContainer(run, c);
      if (run.deleting || stopping || !willRestart(run)(c.record)) break;
      await writeStatus(run);
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          run.timers.delete(t);
          r();
        }, restartDelayMs);
        run.timers.add(t);
      });
      if (run.deleting || stopping) break;
      c.record.lastState = c.record.state;
      c.record.restartCount++;
    }
  }

  async function startPod(run: PodRun): Promise<void> {
    // Pending: sandbox ready, containers being created; the pod has its address and its name resolves.
    publishHosts();
    await writeStatus(run);
    const volumes = new Map<string, string>();
    try {
      for (const v of run.pod.spec?.volumes ?? []) volumes.set(v.name, await prepareVolume(run, v));
      for (const c of [...run.init, ...run.main]) {
        mkdirSync(c.root, { recursive: true });
        for (const m of c.spec.volumeMounts ?? []) {
          const target = volumes.get(m.name);
          if (!target) throw new Error(`container ${c.spec.name} mounts unknown volume ${m.name}`);
          const src = m.subPath ? join(target, m.subPath) : target;
          // A subPath may name a file (a configMap key mounted as one file): link it as it is.
          if (!existsSync(src)) mkdirSync(src, { recursive: true });
          linkInto(c.root, m.mountPath, src);
        }
        const termAbs = c.spec.terminationMessagePath ?? DEFAULT_TERMINATION_PATH;
        c.termPath = join(c.root, termAbs);
        mkdirSync(dirname(c.termPath), { recursive: true });
      }
    } catch (err) {
      // kubelet keeps such pods Pending and retries; the tests want to see why.
      const message = errText(err);
      log(`${run.namespace}/${run.name}: ${message}`);
      for (const c of run.main)
        c.record.state = { kind: 'waiting', reason: 'CreateContainerConfigError', message };
      await writeStatus(run);
      return;
    }

    for (const c of run.init) {
      if (run.deleting || stopping) return;
      let code = await runContainer(run, c);
      while (code !== 0 && run.pod.spec?.restartPolicy !== 'Never' && !run.deleting && !stopping) {
        c.record.lastState = c.record.state;
        c.record.restartCount++;
        await new Promise((r) => setTimeout(r, restartDelayMs));
        code = await runContainer(run, c);
      }
      if (code !== 0) {
        run.initFailed = true;
        run.finished = true;
        for (const m of run.main) m.record.state = { kind: 'waiting', reason: 'PodInitializing' };
        await writeStatus(run);
        return;
      }
    }
    run.initDone = true;
    if (run.deleting || stopping) return;
    await Promise.all(run.main.map((c) => superviseMain(run, c)));
    run.finished = true;
    if (!stopping) publishHosts();
    if (!stopping) await writeStatus(run);
  }

  async function deletePod(run: PodRun): Promise<void> {
    if (run.deleting) return;
    run.deleting = true;
    for (const t of run.timers) clearTimeout(t);
    const grace =
      run.pod.metadata?.deletionGracePeriodSeconds ?? run.pod.spec?.terminationGracePeriodSeconds ?? 30;
    await Promise.all(
      [...run.init, ...run.main].map(async (c) => {
        if (!c.proc) return;
        c.killReason = 'agent';
        await c.proc.stop(grace * 1000);
      }),
    );
    // Let the supervisors record the terminated states, then report and remove the pod.
    await new Promise((r) => setTimeout(r, 50));
    for (const c of run.main) {
      if (c.record.state.kind !== 'terminated') {
        const now = rfc3339();
        c.record.state = {
          kind: 'terminated',
          exitCode: 137,
          reason: 'ContainerStatusUnknown',
          message: 'The container could not be located when the pod was deleted',
          startedAt: now,
          finishedAt: now,
        };
      }
    }
    run.finished = true;
    await writeStatus(run);
    try {
      await run.core.deleteNamespacedPod({
        name: run.name,
        namespace: run.namespace,
        body: { gracePeriodSeconds: 0, preconditions: { uid: run.uid } },
      });
    } catch (err) {
      const code = apiErrorCode(err);
      if (code !== 404 && code !== 409) log(`final delete of ${run.namespace}/${run.name}: ${errText(err)}`);
    }
  }

  function forget(run: PodRun) {
    runs.delete(run.uid);
    if (!stopping) publishHosts();
    if (byName.get(`${run.namespace}/${run.name}`) === run.uid) byName.delete(`${run.namespace}/${run.name}`);
    for (const t of run.timers) clearTimeout(t);
    for (const c of [...run.init, ...run.main]) c.proc?.stop(0).catch(() => {});
    rmSync(run.dir, { recursive: true, force: true });
  }

  const newContainerRun = (dir: string, spec: V1Container, isInit: boolean): ContainerRun => ({
    spec,
    isInit,
    root: join(dir, 'containers', safeName(spec.name), 'root'),
    logPath: join(dir, 'containers', safeName(spec.name), 'log'),
    termPath: '',
    record: {
      name: spec.name,
      image: spec.image ?? '',
      state: { kind: 'waiting', reason: isInit ? 'PodInitializing' : 'ContainerCreating' },
      restartCount: 0,
    },
  });

  function onPod(node: string, core: CoreV1Api, pod: V1Pod): void {
    if (stopping || lost.has(node)) return;
    const uid = pod.metadata?.uid;
    const name = pod.metadata?.name;
    const namespace = pod.metadata?.namespace;
    if (!uid || !name || !namespace || pod.spec?.nodeName !== node) return;
    const existing = runs.get(uid);
    if (existing) {
      existing.pod = pod;
      if (pod.metadata?.deletionTimestamp && !existing.deleting) {
        deletePod(existing)
          .catch((err) => log(`deleting ${namespace}/${name}: ${errText(err)}`))
          .finally(() => forget(existing));
      }
      return;
    }
    const phase = pod.status?.phase;
    if (pod.metadata?.deletionTimestamp) {
      // Never ran here (or an earlier agent ran it): only the final delete is left.
      core
        .deleteNamespacedPod({ name, namespace, body: { gracePeriodSeconds: 0, preconditions: { uid } } })
        .catch((err) => {
          if (apiErrorCode(err) !== 404 && apiErrorCode(err) !== 409)
            log(`final delete of ${namespace}/${name}: ${errText(err)}`);
        });
      return;
    }
    if (phase === 'Succeeded' || phase === 'Failed') return;
    const dir = join(workDir, 'pods', `${safeName(namespace)}_${safeName(name)}_${uid.slice(0, 8)}`);
    mkdirSync(dir, { recursive: true });
    const run: PodRun = {
      uid,
      namespace,
      name,
      node,
      core,
      dir,
      pod,
      init: (pod.spec?.initContainers ?? []).map((c) => newContainerRun(dir, c, true)),
      main: (pod.spec?.containers ?? []).map((c) => newContainerRun(dir, c, false)),
      initDone: (pod.spec?.initContainers ?? []).length === 0,
      initFailed: false,
      startTime: rfc3339(),
      conditions: { last: new Map() },
      deleting: false,
      finished: false,
      gone: false,
      statusChain: Promise.resolve(),
      statusFailing: false,
      timers: new Set(),
    };
    runs.set(uid, run);
    byName.set(`${namespace}/${name}`, uid);
    startPod(run).catch((err) => log(`running ${namespace}/${name}: ${errText(err)}`));
  }

  function onPodDeleted(pod: V1Pod): void {
    const run = pod.metadata?.uid ? runs.get(pod.metadata.uid) : undefined;
    // Removed without a graceful phase (a terminal pod, a force delete): kill at once, as kubelet
    // would. A graceful deletion in progress is finished and forgotten by deletePod().
    if (run && !run.deleting) {
      run.deleting = true;
      forget(run);
    }
  }

  for (const node of nodeNames) {
    const nodeKc = opts.kubeConfigForNode?.(node) ?? kc;
    const core = nodeKc.makeApiClient(CoreV1Api);
    const fieldSelector = `spec.nodeName=${node}`;
    const informer = new ListWatch<V1Pod>(
      '/api/v1/pods',
      new Watch(nodeKc),
      () => core.listPodForAllNamespaces({ fieldSelector }),
      false,
      undefined,
      fieldSelector,
    );
    informer.on('add', (p) => onPod(node, core, p));
    informer.on('update', (p) => onPod(node, core, p));
    informer.on('delete', (p) => onPodDeleted(p));
    informer.on('error', (err) => {
      if (stopping || lost.has(node)) return;
      log(`pod watch for node ${node} failed (${errText(err)}); restarting in 1 s`);
      setTimeout(() => {
        if (!stopping && !lost.has(node))
          informer.start().catch((e) => log(`restarting pod watch for ${node}: ${errText(e)}`));
      }, 1000).unref();
    });
    await informer.start();
    informers.set(node, informer);
  }

  const find = (namespace: string, name: string, container: string): ContainerRun | undefined => {
    const uid = byName.get(`${namespace}/${name}`);
    const run = uid ? runs.get(uid) : undefined;
    return run ? [...run.init, ...run.main].find((c) => c.spec.name === container) : undefined;
  };

  return {
    workDir,
    pvcRoot,
    podDir(namespace, name) {
      const uid = byName.get(`${namespace}/${name}`);
      return uid ? runs.get(uid)?.dir : undefined;
    },
    logPath(namespace, name, container) {
      return find(namespace, name, container)?.logPath;
    },
    killContainer(namespace, name, container, signal = 'SIGKILL') {
      const c = find(namespace, name, container);
      if (!c?.proc || c.proc.pid <= 1) return false;
      c.killReason = 'external';
      try {
        process.kill(-c.proc.pid, signal);
        return true;
      } catch {
        return false;
      }
    },
    oomKill(namespace, name, container) {
      const c = find(namespace, name, container);
      if (!c?.proc || c.proc.pid <= 1) return false;
      c.killReason = 'oom';
      try {
        process.kill(-c.proc.pid, 'SIGKILL');
        return true;
      } catch {
        return false;
      }
    },
    runningPods(namespace) {
      return [...runs.values()]
        .filter((r) => r.namespace === namespace && [...r.init, ...r.main].some((c) => c.proc))
        .map((r) => r.name);
    },
    async loseNode(nodeName) {
      if (!informers.has(nodeName)) throw new Error(`the agent does not run node ${nodeName}`);
      lost.add(nodeName);
      await informers.get(nodeName)?.stop();
      const gone = [...runs.values()].filter((r) => r.node === nodeName);
      for (const r of gone) {
        r.gone = true;
        r.deleting = true;
      }
      // SIGKILL, not stop(): a machine that is gone gives its processes no SIGTERM.
      const procs = gone.flatMap((r) => [...r.init, ...r.main].flatMap((c) => (c.proc ? [c.proc] : [])));
      for (const p of procs) {
        try {
          process.kill(-p.pid, 'SIGKILL');
        } catch {
          // Already exited.
        }
      }
      await Promise.all(procs.map((p) => p.exited));
      for (const r of gone) forget(r);
    },
    async stop() {
      stopping = true;
      for (const i of informers.values()) await i.stop();
      const all = [...runs.values()];
      await Promise.all(all.flatMap((r) => [...r.init, ...r.main].map((c) => c.proc?.stop(2000))));
      for (const r of all) forget(r);
      if (ownsWorkDir) rmSync(workDir, { recursive: true, force: true });
    },
  };
}
