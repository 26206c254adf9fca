// The operator scale benchmark (issue 7): N StreamingTrainingJobs created at once against a real
// API server with fake GPU nodes (no node agent: pods are bound by the scheduler but never run) →
// seconds until all are Planned, API requests per job, operator peak memory, and how long the
// operator's event loop was held: its slowest /healthz answer and the largest gap between two
// renewals of its leader Lease. With --oom-storm, every trainer then exits 3 (out of memory) at once
// and the same figures are taken while every job is re-planned with a smaller tile.
//
//   npm run bench:operator -- [--jobs 500] [--concurrency 20] [--nodes-per-class 2] [--workers 4]
//                             [--max-old-space <MiB>] [--oom-storm] [--json]
//
// The operator runs as its own process (`bin/tilestream.js operator`) with the chart's RBAC, so its
// memory is its own (VmHWM from /proc). Its API requests are counted by the API server itself:
// an audit policy records the operator's service account only (apiserver_request_total has no
// user label). Progress goes to stderr; a table, or JSON with --json, to stdout.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MANAGED_SELECTOR } from '../../operator/children/names.ts';
import { KubeClient, type WatchEvent } from '../../operator/kube/client.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { STANDARD_GPU_CLASSES } from '../controlplane/gpu-node-spec.ts';
import { startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import {
  auditPolicyYaml,
  auditTimeMs,
  countRequests,
  leaseRenewals,
  perJob,
  type RequestCounts,
  readAuditLog,
} from './audit-log.ts';
import { MiB, percentile, readProcCpuSeconds, readProcMemory, round, sumMetric } from './measure.ts';
import { failWithOom, livePods, type TrainerPod } from './oom-storm.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const JOBS_NS = 'bench';
const OPERATOR_NS = 'tilestream-system';
const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NS}:operator`;
const STJ_PATH = `/apis/tilestream.io/v1alpha1/namespaces/${JOBS_NS}/streamingtrainingjobs`;

export interface ScaleOptions {
  jobs: number;
  /** Creates in flight at once. */
  concurrency: number;
  /** Fake nodes per standard GPU class (4 classes). */
  nodesPerClass: number;
  /** The operator's --workers (concurrent reconciles); undefined: its default. */
  workers?: number;
  /** V8's --max-old-space-size for the operator process (MiB): does it fit a smaller heap? */
  maxOldSpaceMiB?: number;
  /** After all are Planned: every trainer exits 3 (out of memory) at once, and every job is re-planned. */
  oomStorm?: boolean;
  /** Give up when not all jobs are Planned (or, in the storm, re-planned) by then. */
  timeoutMs: number;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

export const DEFAULT_SCALE_OPTIONS: ScaleOptions = {
  jobs: 500,
  concurrency: 20,
  nodesPerClass: 2,
  timeoutMs: 600_000,
};

/** Four job shapes (job i has shape i mod 4): four networks and image sizes → 16 plans with 4 GPU classes. */
export const JOB_SHAPES = [
  { shape: 'smallcnn-512', model: { architecture: 'smallcnn', width: 16 }, side: 512, channels: 1 },
  { shape: 'midl2018-8192', model: { architecture: 'midl2018' }, side: 8192, channels: 3 },
  { shape: 'resnet18-8192', model: { architecture: 'resnet18' }, side: 8192, channels: 3 },
  { shape: 'resnet34-4096', model: { architecture: 'resnet34' }, side: 4096, channels: 3 },
] as const;

/** A job manifest of shape i mod 4. hostPath volumes: the pods never run, so nothing is mounted. */
export function benchJob(i: number): Record<string, unknown> {
  const s = JOB_SHAPES[i % JOB_SHAPES.length] as (typeof JOB_SHAPES)[number];
  const mean = Array.from({ length: s.channels }, () => 0.5);
  const std = Array.from({ length: s.channels }, () => 0.25);
  return {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name: `job-${String(i).padStart(4, '0')}`, namespace: JOBS_NS, labels: { shape: s.shape } },
    spec: {
      image: 'tilestream:bench',
      model: { ...s.model, head: { pooling: 'max', classes: 2 } },
      data: {
        root: '/data',
        volume: { hostPath: { path: '/tmp/tilestream-bench-data' } },
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: s.side, width: s.side },
        channels: s.channels,
        normalization: { mean, std },
      },
      training: {
        epochs: 2,
        batchSize: 4,
        loss: 'softmax-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.001 },
        seed: i,
      },
      resources: { gpus: 1 },
      checkpoint: {
        path: '/checkpoints',
        volume: { hostPath: { path: `/tmp/tilestream-bench-checkpoints/${i}` } },
        everySteps: 50,
        keep: 2,
      },
    },
  };
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}
interface StjObject {
  metadata: { name: string; resourceVersion?: string };
  status?: {
    phase?: string;
    tileReductions?: number;
    conditions?: Condition[];
    plan?: { gpuClass?: string; gpuProduct?: string; tileSize?: number };
  };
}
interface List<T> {
  metadata: { resourceVersion?: string };
  items: T[];
}

export interface ScaleResult {
  jobs: number;
  concurrency: number;
  /** The operator's V8 old-space limit when set (MiB). */
  maxOldSpaceMiB: number | null;
  gpuNodes: number;
  kubernetesVersion: string;
  /** From the first create request to the moment every job had Planned=True. */
  secondsToAllPlanned: number;
  secondsToFirstPlanned: number;
  /** From the first create to the last create's answer. */
  secondsToCreateAll: number;
  /** Per job: its create request → Planned=True seen on a watch. */
  createToPlannedSeconds: { p50: number; p95: number; max: number };
  plannedTrue: number;
  /** How many jobs got each plan: `<gpu class> tile <px>` → count. */
  plans: Record<string, number>;
  apiRequests: {
    /** Everything but the leader Lease, from the first create until the operator went quiet. */
    perJob: { total: number; byVerb: Record<string, number> };
    untilAllPlanned: RequestCounts;
    settled: RequestCounts;
    /** Before the first create: initial lists, watches, leader election. */
    startup: number;
    /** Lease gets/updates over the measured window (leader election, not per job). */
    leaderLease: number;
    secondsToQuiet: number;
  };
  operator: {
    peakRssBytes: number;
    peakRssMiB: number;
    rssMiBBeforeJobs: number;
    rssMiBAtEnd: number;
    reconciles: number;
    reconcileErrors: number;
    workqueueRetries: number;
    workers: number;
    /** Mean time of one reconcile, and mean wait of a key in the queue before a worker took it. */
    meanReconcileSeconds: number;
    meanQueueWaitSeconds: number;
    /** Slowest /healthz answer while the jobs were being planned: an event-loop stall shows here. */
    maxHealthzMs: number;
    /** When that slowest answer was asked for, in seconds from the first create. */
    maxHealthzAtSeconds: number;
    /** /healthz answers while the jobs were planned (one asked 200 ms after the last answer), their p99, and how many took over 1 s. */
    healthzAnswers: number;
    healthzP99Ms: number;
    healthzOver1s: number;
    /**
     * The largest time between two renewals of the leader Lease (received by the API server) while
     * the jobs were being planned; the leader renews every 2 s and steps down after 10 s without one.
     */
    maxLeaseRenewalGapSeconds: number;
    /**
     * The largest part of a renewal gap that was neither the 2 s retry period nor the API server
     * answering the Lease requests: the operator's own delay (its event loop).
     */
    maxLeaseOperatorDelaySeconds: number;
    leaseRenewals: number;
    /** CPU seconds the operator used from the first create until it was quiet. */
    cpuSeconds: number;
    exitCode: number | null;
  };
  children: { batchJobs: number; pods: number; podsBound: number; podsRunning: number };
  /** With --oom-storm; null without. */
  oomStorm: OomStormResult | null;
  machine: { cpus: number; loadAverageStart: number[]; loadAverageEnd: number[] };
}

export interface OomStormResult {
  /** Trainer pods reported as exited 3 (one per job). */
  pods: number;
  /** From the first pod's out-of-memory report to the last report's answer. */
  secondsToReportAll: number;
  /** From the first report until every job was Planned again with a smaller tile (or Failed). */
  secondsToAllReplanned: number;
  replanned: number;
  /** Jobs that could not shrink (e.g. at their minimum tile) and are Failed instead. */
  failed: number;
  /** Per job: its pod's report → Planned=True with tileReductions ≥ 1 (or Failed) seen on a watch. */
  reportToReplannedSeconds: { p50: number; p95: number; max: number };
  maxHealthzMs: number;
  /** In seconds from the first report. */
  maxHealthzAtSeconds: number;
  healthzAnswers: number;
  healthzP99Ms: number;
  healthzOver1s: number;
  maxLeaseRenewalGapSeconds: number;
  maxLeaseOperatorDelaySeconds: number;
  leaseRenewals: number;
  reconciles: number;
  reconcileErrors: number;
  cpuSeconds: number;
  /** Plans after the storm: `<gpu class> tile <px>` → count. */
  plans: Record<string, number>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function httpGet(url: string, timeoutMs = 5000): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isPlanned = (s: StjObject) =>
  s.status?.conditions?.some((c) => c.type === 'Planned' && c.status === 'True') ?? false;
const isFailed = (s: StjObject) =>
  s.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') ?? false;

/** The /healthz answers of one phase of the run: their times and the slowest. */
interface HealthzWindow {
  maxMs: number;
  /** performance.now() when that answer was asked for. */
  at: number;
  ms: number[];
}
const healthzWindow = (): HealthzWindow => ({ maxMs: 0, at: 0, ms: [] });

/** The figures of a window besides the slowest: how many answers, their p99, how many took over 1 s. */
function healthzFigures(w: HealthzWindow) {
  return {
    healthzAnswers: w.ms.length,
    healthzP99Ms: w.ms.length > 0 ? round(percentile(w.ms, 99), 1) : 0,
    healthzOver1s: w.ms.filter((ms) => ms > 1000).length,
  };
}

/** How many jobs got each plan: `<gpu class> tile <px>` → count. */
function plansOf(items: readonly StjObject[]): Record<string, number> {
  const plans: Record<string, number> = {};
  for (const s of items) {
    const p = s.status?.plan;
    const k = p ? `${p.gpuClass ?? p.gpuProduct} tile ${p.tileSize}` : '(no plan)';
    plans[k] = (plans[k] ?? 0) + 1;
  }
  return plans;
}

/**
 * Waits until `user` has sent nothing but Lease requests for 3 s (at most 60 s) and returns the end of
 * its last request (epoch ms), never before `notBefore`.
 */
async function waitQuiet(auditLog: string, user: string, fromMs: number, notBefore: number): Promise<number> {
  const quietStart = Date.now();
  for (;;) {
    await sleep(1000);
    const events = readAuditLog(auditLog).filter(
      (e) => e.user?.username === user && e.objectRef?.resource !== 'leases',
    );
    const lastMs = Math.max(fromMs, ...events.map((e) => auditTimeMs(e.requestReceivedTimestamp)));
    // Requests can end before the watch shows the last job Planned: the window never ends before that.
    const quiet = Math.max(lastMs + 1, notBefore);
    if (Date.now() - lastMs > 3000 || Date.now() - quietStart > 60_000) return quiet;
  }
}

/** Runs the benchmark; throws with the reason when the control plane cannot run here. */
export async function runOperatorScale(opts: Partial<ScaleOptions> = {}): Promise<ScaleResult> {
  const o = { ...DEFAULT_SCALE_OPTIONS, ...opts };
  const say = o.progress ?? (() => {});
  const loadAverageStart = loadavg().map((x) => round(x));
  const work = mkdtempSync(join(tmpdir(), 'tilestream-bench-'));
  const auditLog = join(work, 'audit.log');
  const policy = join(work, 'audit-policy.yaml');
  writeFileSync(policy, auditPolicyYaml([OPERATOR_USER]));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(work, { recursive: true, force: true })];
  let operator: ChildProcess | undefined;
  // Ctrl-C (the CLI turns signals into exit) must not leave the operator or the work dir behind.
  const onExit = () => {
    operator?.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const opLog = join(work, 'operator.log');
  try {
    say('starting the control plane (etcd, kube-apiserver with an audit log, controller manager, scheduler)');
    const started = await startControlPlaneOrSkip({
      extraApiServerFlags: [`--audit-policy-file=${policy}`, `--audit-log-path=${auditLog}`],
    });
    if (!started.plane) throw new SkipError(started.skip);
    const plane = started.plane;
    cleanups.push(() => plane.stop());
    const admin = new KubeClient(plane.kubeConfig, { timeoutMs: 60_000 });
    const version = await admin.request<{ gitVersion: string }>('GET', '/version');
    await installCrd(plane);
    const classes = STANDARD_GPU_CLASSES.map((c) => ({ ...c, nodes: o.nodesPerClass }));
    const nodes = await registerFakeGpuNodes(plane.kubeConfig, classes, {
      kubeConfigForNode: (n) => plane.nodeKubeConfig(n),
    });
    cleanups.push(() => nodes.stop());
    await plane.createNamespace(JOBS_NS);
    await plane.createNamespace(OPERATOR_NS);
    const account = await createOperatorAccount(plane, OPERATOR_NS, { prefix: 'bench' });

    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    const fd = openSync(opLog, 'a');
    const operatorStart = Date.now();
    operator = spawn(
      process.execPath,
      [
        ...(o.maxOldSpaceMiB !== undefined ? [`--max-old-space-size=${o.maxOldSpaceMiB}`] : []),
        BIN,
        'operator',
        `--kubeconfig=${account.kubeconfigPath}`,
        `--lease-namespace=${OPERATOR_NS}`,
        '--identity=bench-0',
        `--metrics-port=${metricsPort}`,
        `--health-port=${healthPort}`,
        '--bind-address=127.0.0.1',
        '--trainer-image=tilestream:bench',
        '--log-level=warn',
        ...(o.workers !== undefined ? [`--workers=${o.workers}`] : []),
      ],
      { stdio: ['ignore', fd, fd], env: { ...process.env, KUBECONFIG: account.kubeconfigPath } },
    );
    const op = operator;
    const exited = new Promise<number | null>((r) => op.once('exit', (code) => r(code)));
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const healthUrl = `http://127.0.0.1:${healthPort}`;
    const opTail = () => readFileSync(opLog, 'utf8').slice(-3000);
    say(`operator pid ${op.pid}; waiting until it is ready and leader`);
    await waitFor(
      'the operator ready and leading',
      async () => {
        if (op.exitCode !== null) throw new Error(`the operator exited (${op.exitCode}):\n${opTail()}`);
        const ready = await httpGet(`${healthUrl}/readyz`);
        if (ready.status !== 200) return false;
        const m = await httpGet(metricsUrl);
        return sumMetric(m.body, 'leader_election_master_status') === 1;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    const pid = op.pid as number;
    const rssBefore = readProcMemory(pid)?.rssBytes ?? 0;
    const cpuBefore = readProcCpuSeconds(pid) ?? 0;

    // Watch the jobs from before the first create, so every Planned transition is seen.
    const plannedAt = new Map<string, number>();
    const createdAt = new Map<string, number>();
    // In the storm: Planned again with a smaller tile, or Failed (nothing smaller to try).
    const replannedAt = new Map<string, number>();
    const failedAt = new Map<string, number>();
    // A manifest the operator calls invalid would never be Planned: stop at once and say why.
    let invalid: string | undefined;
    const onObject = (s: StjObject, now: number) => {
      const name = s.metadata.name;
      if (isPlanned(s) && !plannedAt.has(name)) plannedAt.set(name, now);
      if (isPlanned(s) && (s.status?.tileReductions ?? 0) >= 1 && !replannedAt.has(name))
        replannedAt.set(name, now);
      if (isFailed(s) && !failedAt.has(name)) failedAt.set(name, now);
      const c = s.status?.conditions?.find((x) => x.type === 'Planned' && x.reason === 'InvalidSpec');
      if (c) invalid ??= `${s.metadata.name}: ${c.message}`;
    };
    const stopWatch = new AbortController();
    const initial = await admin.request<List<StjObject>>('GET', STJ_PATH);
    let rv = initial.metadata.resourceVersion;
    const watching = (async () => {
      while (!stopWatch.signal.aborted) {
        try {
          await admin.stream(
            STJ_PATH,
            { watch: true, ...(rv && { resourceVersion: rv }) },
            (e: WatchEvent) => {
              const obj = e.object as unknown as StjObject;
              if (e.type === 'ADDED' || e.type === 'MODIFIED') {
                rv = obj.metadata.resourceVersion ?? rv;
                onObject(obj, performance.now());
              }
            },
            stopWatch.signal,
          );
        } catch {
          // Expired or dropped: the next pass relists (below) and watches again from now.
          rv = undefined;
        }
        if (!rv && !stopWatch.signal.aborted) {
          const l = await admin.request<List<StjObject>>('GET', STJ_PATH).catch(() => undefined);
          if (l) {
            for (const s of l.items) onObject(s, performance.now());
            rv = l.metadata.resourceVersion;
          }
        }
      }
    })();

    // How fast the operator answers /healthz (event-loop responsiveness), per phase of the run.
    const planning = healthzWindow();
    let healthz: HealthzWindow = planning;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const at = performance.now();
        const r = await httpGet(`${healthUrl}/healthz`, 30_000).catch(() => undefined);
        if (r && sampling) healthz.ms.push(r.ms);
        if (r && sampling && r.ms > healthz.maxMs) {
          healthz.maxMs = r.ms;
          healthz.at = at;
        }
        await sleep(200);
      }
    })();

    say(`creating ${o.jobs} StreamingTrainingJobs, ${o.concurrency} at a time`);
    const t0 = performance.now();
    const wall0 = Date.now();
    let next = 0;
    let lastCreated = t0;
    const createOne = async () => {
      for (;;) {
        const i = next++;
        if (i >= o.jobs) return;
        const manifest = benchJob(i);
        const name = (manifest.metadata as { name: string }).name;
        createdAt.set(name, performance.now());
        await admin.request('POST', STJ_PATH, { body: manifest });
        lastCreated = performance.now();
      }
    };
    const progress = setInterval(
      () => say(`created ${Math.min(next, o.jobs)}/${o.jobs}, planned ${plannedAt.size}/${o.jobs}`),
      2000,
    );
    try {
      await Promise.all(Array.from({ length: o.concurrency }, createOne));
      // Not waitFor: it retries through errors, and an exited operator or a refused manifest must stop the run.
      const deadline = performance.now() + o.timeoutMs;
      while (plannedAt.size < o.jobs) {
        if (op.exitCode !== null) throw new Error(`the operator exited (${op.exitCode}):\n${opTail()}`);
        if (invalid) throw new Error(`the operator refused a bench manifest (fix benchJob): ${invalid}`);
        if (performance.now() > deadline) {
          const l = await admin.request<List<StjObject>>('GET', STJ_PATH).catch(() => undefined);
          const stuck = (l?.items ?? [])
            .filter((s) => !plannedAt.has(s.metadata.name))
            .slice(0, 5)
            .map((s) => `${s.metadata.name}: ${JSON.stringify(s.status ?? {})}`);
          throw new Error(
            `after ${o.timeoutMs / 1000} s only ${plannedAt.size} of ${o.jobs} jobs are Planned=True; not planned: ${stuck.join('; ') || '(none listed)'}`,
          );
        }
        await sleep(50);
      }
    } finally {
      clearInterval(progress);
    }
    const tAll = performance.now();
    const wallAll = wall0 + (tAll - t0);
    say(`all ${o.jobs} planned after ${round((tAll - t0) / 1000)} s; waiting until the operator is quiet`);

    // Quiet: no operator request other than the leader Lease for 3 s (at most 60 s).
    const wallQuiet = await waitQuiet(auditLog, OPERATOR_USER, wall0, wallAll);
    healthz = healthzWindow(); // between the phases: not reported

    const metrics = (await httpGet(metricsUrl)).body;
    const mem = readProcMemory(pid);
    const cpuAfter = readProcCpuSeconds(pid) ?? cpuBefore;
    if (!mem) throw new Error(`cannot read /proc/${pid}/status: the operator is gone, or this is not Linux`);

    const events = readAuditLog(auditLog);
    const window = { user: OPERATOR_USER, fromMs: wall0, excludeResources: ['leases'] };
    const settled = countRequests(events, { ...window, toMs: wallQuiet });
    const untilAllPlanned = countRequests(events, { ...window, toMs: wallAll });
    const startup = countRequests(events, { user: OPERATOR_USER, fromMs: operatorStart, toMs: wall0 });
    const lease = countRequests(events, { user: OPERATOR_USER, fromMs: wall0, toMs: wallQuiet });
    const renewals = leaseRenewals(events, { user: OPERATOR_USER, fromMs: wall0, toMs: wallQuiet });

    const final = await admin.request<List<StjObject>>('GET', STJ_PATH);
    const plans = plansOf(final.items);
    const sel = encodeURIComponent(MANAGED_SELECTOR);
    const batchJobs = await admin.request<List<unknown>>(
      'GET',
      `/apis/batch/v1/namespaces/${JOBS_NS}/jobs?labelSelector=${sel}`,
    );
    const pods = await admin.request<List<{ spec?: { nodeName?: string }; status?: { phase?: string } }>>(
      'GET',
      `/api/v1/namespaces/${JOBS_NS}/pods`,
    );

    let oomStorm: OomStormResult | null = null;
    if (o.oomStorm) {
      // Every trainer Job has its pod (the Job controller creates them at its own pace), then all exit 3.
      const podsPath = `/api/v1/namespaces/${JOBS_NS}/pods`;
      const victims = await waitFor(
        `a trainer pod for each of the ${o.jobs} jobs`,
        async () => {
          const live = livePods((await admin.request<List<TrainerPod>>('GET', podsPath)).items);
          return live.length >= o.jobs && live;
        },
        { timeoutMs: o.timeoutMs, intervalMs: 1000 },
      );
      const stormMetrics = metrics;
      const stormCpu = readProcCpuSeconds(pid) ?? cpuAfter;
      say(`OOM storm: ${victims.length} trainers exit 3 (out of memory) at once`);
      const storm = healthzWindow();
      const reportedAt = new Map<string, number>();
      const s0 = performance.now();
      const sWall0 = Date.now();
      healthz = storm;
      let reported = s0;
      const stormProgress = setInterval(
        () =>
          say(
            `reported ${reportedAt.size}/${victims.length}, re-planned ${replannedAt.size}, failed ${failedAt.size}`,
          ),
        2000,
      );
      const settledJobs = () =>
        replannedAt.size + [...failedAt.keys()].filter((n) => !replannedAt.has(n)).length;
      try {
        await failWithOom(admin, victims, {
          concurrency: o.concurrency,
          sent: (stj) => reportedAt.set(stj, performance.now()),
        });
        reported = performance.now();
        const deadline = performance.now() + o.timeoutMs;
        while (settledJobs() < o.jobs) {
          if (op.exitCode !== null) throw new Error(`the operator exited (${op.exitCode}):\n${opTail()}`);
          if (invalid) throw new Error(`the operator called a bench job invalid: ${invalid}`);
          if (performance.now() > deadline) {
            throw new Error(
              `after ${o.timeoutMs / 1000} s of the OOM storm only ${settledJobs()} of ${o.jobs} jobs are re-planned or failed`,
            );
          }
          await sleep(50);
        }
      } finally {
        clearInterval(stormProgress);
      }
      const sAll = performance.now();
      const sWallAll = sWall0 + (sAll - s0);
      say(
        `all ${o.jobs} re-planned after ${round((sAll - s0) / 1000)} s; waiting until the operator is quiet`,
      );
      const sWallQuiet = await waitQuiet(auditLog, OPERATOR_USER, sWall0, sWallAll);
      healthz = healthzWindow();
      const after = (await httpGet(metricsUrl)).body;
      const stormEvents = readAuditLog(auditLog);
      const stormRenewals = leaseRenewals(stormEvents, {
        user: OPERATOR_USER,
        fromMs: sWall0,
        toMs: sWallQuiet,
      });
      const delta = (name: string) => sumMetric(after, name) - sumMetric(stormMetrics, name);
      const settledAt = new Map([...failedAt, ...replannedAt]);
      const waits = [...reportedAt.entries()].map(([n, t]) => ((settledAt.get(n) ?? sAll) - t) / 1000);
      const replannedItems = (await admin.request<List<StjObject>>('GET', STJ_PATH)).items;
      oomStorm = {
        pods: victims.length,
        secondsToReportAll: round((reported - s0) / 1000),
        secondsToAllReplanned: round((sAll - s0) / 1000),
        replanned: replannedAt.size,
        failed: [...failedAt.keys()].filter((n) => !replannedAt.has(n)).length,
        reportToReplannedSeconds: {
          p50: round(percentile(waits, 50)),
          p95: round(percentile(waits, 95)),
          max: round(Math.max(...waits)),
        },
        maxHealthzMs: round(storm.maxMs, 1),
        maxHealthzAtSeconds: round((storm.at - s0) / 1000),
        ...healthzFigures(storm),
        maxLeaseRenewalGapSeconds: round(stormRenewals.maxGapMs / 1000),
        maxLeaseOperatorDelaySeconds: round(stormRenewals.maxOperatorDelayMs / 1000),
        leaseRenewals: stormRenewals.renewals,
        reconciles: delta('controller_runtime_reconcile_total'),
        reconcileErrors: delta('controller_runtime_reconcile_errors_total'),
        cpuSeconds: round((readProcCpuSeconds(pid) ?? stormCpu) - stormCpu),
        plans: plansOf(replannedItems),
      };
    }
    sampling = false;
    await sampler;
    stopWatch.abort();
    await watching;

    op.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exitCode = await Promise.race([
      exited,
      new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), 30_000);
      }),
    ]);
    clearTimeout(timer);
    if (exitCode === 'timeout') {
      op.kill('SIGKILL');
      throw new Error(`the operator did not exit within 30 s of SIGTERM:\n${opTail()}`);
    }
    operator = undefined;

    const latencies = [...plannedAt.entries()].map(([n, t]) => (t - (createdAt.get(n) ?? t0)) / 1000);
    return {
      jobs: o.jobs,
      concurrency: o.concurrency,
      maxOldSpaceMiB: o.maxOldSpaceMiB ?? null,
      gpuNodes: nodes.names.length,
      kubernetesVersion: version.gitVersion,
      secondsToAllPlanned: round((tAll - t0) / 1000),
      secondsToFirstPlanned: round((Math.min(...plannedAt.values()) - t0) / 1000),
      secondsToCreateAll: round((lastCreated - t0) / 1000),
      createToPlannedSeconds: {
        p50: round(percentile(latencies, 50)),
        p95: round(percentile(latencies, 95)),
        max: round(Math.max(...latencies)),
      },
      plannedTrue: final.items.filter(isPlanned).length,
      plans,
      apiRequests: {
        perJob: perJob(settled, o.jobs),
        untilAllPlanned,
        settled,
        startup: startup.total,
        leaderLease: lease.total - settled.total,
        secondsToQuiet: round((wallQuiet - wallAll) / 1000),
      },
      operator: {
        peakRssBytes: mem.peakRssBytes,
        peakRssMiB: round(mem.peakRssBytes / MiB, 1),
        rssMiBBeforeJobs: round(rssBefore / MiB, 1),
        rssMiBAtEnd: round(mem.rssBytes / MiB, 1),
        reconciles: sumMetric(metrics, 'controller_runtime_reconcile_total'),
        reconcileErrors: sumMetric(metrics, 'controller_runtime_reconcile_errors_total'),
        workqueueRetries: sumMetric(metrics, 'workqueue_retries_total'),
        workers: sumMetric(metrics, 'controller_runtime_max_concurrent_reconciles'),
        meanReconcileSeconds: meanOf(metrics, 'controller_runtime_reconcile_time_seconds'),
        meanQueueWaitSeconds: meanOf(metrics, 'workqueue_queue_duration_seconds'),
        maxHealthzMs: round(planning.maxMs, 1),
        maxHealthzAtSeconds: round((planning.at - t0) / 1000),
        ...healthzFigures(planning),
        maxLeaseRenewalGapSeconds: round(renewals.maxGapMs / 1000),
        maxLeaseOperatorDelaySeconds: round(renewals.maxOperatorDelayMs / 1000),
        leaseRenewals: renewals.renewals,
        cpuSeconds: round(cpuAfter - cpuBefore),
        exitCode,
      },
      children: {
        batchJobs: batchJobs.items.length,
        pods: pods.items.length,
        podsBound: pods.items.filter((p) => p.spec?.nodeName).length,
        podsRunning: pods.items.filter((p) => p.status?.phase === 'Running').length,
      },
      oomStorm,
      machine: { cpus: cpus().length, loadAverageStart, loadAverageEnd: loadavg().map((x) => round(x)) },
    };
  } catch (e) {
    if (operator) process.stderr.write(`operator log (tail):\n${readFileSync(opLog, 'utf8').slice(-3000)}\n`);
    throw e;
  } finally {
    if (operator && operator.exitCode === null) operator.kill('SIGKILL');
    for (const c of cleanups.reverse()) await c();
    process.off('exit', onExit);
  }
}

/** sum/count of a histogram or summary (0 when nothing was observed). */
function meanOf(metrics: string, name: string): number {
  const count = sumMetric(metrics, `${name}_count`);
  return count > 0 ? round(sumMetric(metrics, `${name}_sum`) / count, 3) : 0;
}

/** The control plane cannot run here (no Go to build it, no openssl); the message says why. */
export class SkipError extends Error {
  override name = 'SkipError';
}

/** The readable table of a result. */
export function formatScaleTable(r: ScaleResult): string {
  const rows: [string, string][] = [
    ['jobs created at once', `${r.jobs} (${r.concurrency} creates in flight)`],
    ...(r.maxOldSpaceMiB !== null
      ? [['operator heap limit', `--max-old-space-size=${r.maxOldSpaceMiB}`] as [string, string]]
      : []),
    ['fake GPU nodes', `${r.gpuNodes} (4 classes), ${r.kubernetesVersion}`],
    ['all jobs Planned', `${r.secondsToAllPlanned} s`],
    ['first job Planned', `${r.secondsToFirstPlanned} s`],
    ['all creates answered', `${r.secondsToCreateAll} s`],
    [
      'create → Planned per job',
      `p50 ${r.createToPlannedSeconds.p50} s, p95 ${r.createToPlannedSeconds.p95} s, max ${r.createToPlannedSeconds.max} s`,
    ],
    [
      'operator API requests per job',
      `${r.apiRequests.perJob.total} (${Object.entries(r.apiRequests.perJob.byVerb)
        .sort((a, b) => b[1] - a[1])
        .map(([v, n]) => `${v} ${n}`)
        .join(', ')})`,
    ],
    ...Object.entries(r.apiRequests.settled.byVerbResource)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]): [string, string] => [`  ${k}`, String(n)]),
    ['  status codes', JSON.stringify(r.apiRequests.settled.byCode)],
    [
      '  outside the per-job count',
      `startup ${r.apiRequests.startup}, leader Lease ${r.apiRequests.leaderLease}`,
    ],
    [
      'operator memory',
      `peak RSS ${r.operator.peakRssMiB} MiB (idle before jobs ${r.operator.rssMiBBeforeJobs} MiB, at end ${r.operator.rssMiBAtEnd} MiB)`,
    ],
    [
      'reconciles',
      `${r.operator.reconciles} by ${r.operator.workers} workers (mean ${r.operator.meanReconcileSeconds} s, mean queue wait ${r.operator.meanQueueWaitSeconds} s), errors ${r.operator.reconcileErrors}, retries ${r.operator.workqueueRetries}`,
    ],
    ['operator CPU while measured', `${r.operator.cpuSeconds} s`],
    [
      'slowest /healthz during the run',
      `${r.operator.maxHealthzMs} ms (asked ${r.operator.maxHealthzAtSeconds} s after the first create); p99 ${r.operator.healthzP99Ms} ms, ${r.operator.healthzOver1s} of ${r.operator.healthzAnswers} over 1 s`,
    ],
    [
      'largest leader Lease renewal gap',
      `${r.operator.maxLeaseRenewalGapSeconds} s (${r.operator.leaseRenewals} renewals; every 2 s when idle, step-down after 10 s); the operator's own delay at most ${r.operator.maxLeaseOperatorDelaySeconds} s`,
    ],
    [
      'children',
      `${r.children.batchJobs} batch Jobs, ${r.children.pods} pods (${r.children.podsBound} bound, ${r.children.podsRunning} running)`,
    ],
    ...Object.entries(r.plans)
      .sort()
      .map(([k, n]): [string, string] => [`  plan ${k}`, `${n} jobs`]),
    ...(r.oomStorm ? stormRows(r.oomStorm) : []),
    [
      'machine',
      `${r.machine.cpus} CPUs, load ${r.machine.loadAverageStart.join(' ')} → ${r.machine.loadAverageEnd.join(' ')}`,
    ],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`;
}

function stormRows(s: OomStormResult): [string, string][] {
  return [
    ['OOM storm', `${s.pods} trainers exit 3 at once (reported in ${s.secondsToReportAll} s)`],
    [
      '  all re-planned or failed',
      `${s.secondsToAllReplanned} s (${s.replanned} re-planned, ${s.failed} failed)`,
    ],
    [
      '  report → re-planned per job',
      `p50 ${s.reportToReplannedSeconds.p50} s, p95 ${s.reportToReplannedSeconds.p95} s, max ${s.reportToReplannedSeconds.max} s`,
    ],
    [
      '  slowest /healthz',
      `${s.maxHealthzMs} ms (asked ${s.maxHealthzAtSeconds} s after the first report); p99 ${s.healthzP99Ms} ms, ${s.healthzOver1s} of ${s.healthzAnswers} over 1 s`,
    ],
    [
      '  largest Lease renewal gap',
      `${s.maxLeaseRenewalGapSeconds} s (${s.leaseRenewals} renewals); the operator's own delay at most ${s.maxLeaseOperatorDelaySeconds} s`,
    ],
    ['  reconciles', `${s.reconciles}, errors ${s.reconcileErrors}; operator CPU ${s.cpuSeconds} s`],
    ...Object.entries(s.plans)
      .sort()
      .map(([k, n]): [string, string] => [`  plan ${k}`, `${n} jobs`]),
  ];
}

export function parseScaleArgs(argv: readonly string[]): Partial<ScaleOptions> & { json: boolean } {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      jobs: { type: 'string' },
      concurrency: { type: 'string' },
      'nodes-per-class': { type: 'string' },
      workers: { type: 'string' },
      'max-old-space': { type: 'string' },
      timeout: { type: 'string' },
      'oom-storm': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const int = (flag: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min) {
      throw new Error(`--${flag} must be a whole number of at least ${min}, got '${v}'`);
    }
    return Number(v);
  };
  const jobs = int('jobs', values.jobs, 1);
  const concurrency = int('concurrency', values.concurrency, 1);
  const nodesPerClass = int('nodes-per-class', values['nodes-per-class'], 1);
  const workers = int('workers', values.workers, 1);
  const maxOldSpaceMiB = int('max-old-space', values['max-old-space'], 16);
  const timeout = int('timeout', values.timeout, 1);
  return {
    json: values.json ?? false,
    ...(values['oom-storm'] && { oomStorm: true }),
    ...(jobs !== undefined && { jobs }),
    ...(concurrency !== undefined && { concurrency }),
    ...(nodesPerClass !== undefined && { nodesPerClass }),
    ...(workers !== undefined && { workers }),
    ...(maxOldSpaceMiB !== undefined && { maxOldSpaceMiB }),
    ...(timeout !== undefined && { timeoutMs: timeout * 1000 }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // Exit on a signal so that the 'exit' handlers (here and in the harness) stop what was started.
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  let args: ReturnType<typeof parseScaleArgs>;
  try {
    args = parseScaleArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(
      `${(e as Error).message}\nusage: npm run bench:operator -- [--jobs 500] [--concurrency 20] [--nodes-per-class 2] [--workers <n>] [--max-old-space <MiB>] [--timeout <s>] [--oom-storm] [--json]\n`,
    );
    process.exit(2);
  }
  const { json, ...opts } = args;
  try {
    const r = await runOperatorScale({ ...opts, progress: (l) => process.stderr.write(`${l}\n`) });
    process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : formatScaleTable(r));
  } catch (e) {
    const skip = e instanceof SkipError;
    process.stderr.write(`${skip ? 'cannot run the benchmark here: ' : ''}${(e as Error).message}\n`);
    process.exit(skip ? 3 : 1);
  }
}
