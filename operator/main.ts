// `tilestream operator`: wires the caches, the work queue, the controller, leader election, the
// probe and metrics servers, and signal handling. Every replica keeps warm caches and answers
// probes; only the leader reconciles. SIGTERM/SIGINT drain the reconciles in flight, release the
// lease, end the planner threads and exit 0; losing the lease exits 1 so Kubernetes restarts the
// pod as a candidate.

import { readFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { asyncSizer, type Planner } from './cluster/async-sizer.ts';
import { gpuMemoryTable, parseGpuMemoryTable } from './cluster/gpu-memory-table.ts';
import { PlannerPool } from './cluster/planner-pool.ts';
import type { OperatorConfig } from './config.ts';
import { type Clock, systemClock } from './controller/clock.ts';
import { Controller } from './controller/controller.ts';
import { Expectations } from './controller/expectations.ts';
import { defaultControllerRateLimiter } from './controller/rate-limiter.ts';
import { classSnapshots, type ReconcileContext, reconcile } from './controller/reconcile.ts';
import { createWatches } from './controller/watches.ts';
import { WorkQueue } from './controller/work-queue.ts';
import { apiEventRecorder } from './events.ts';
import { startProbeServers } from './health.ts';
import { KubeClient } from './kube/client.ts';
import { LeaderElector } from './leader.ts';
import { createLogger, type Logger } from './log.ts';
import { CONTROLLER, createOperatorMetrics } from './metrics.ts';
import { metricsAuthorizer } from './metrics-auth.ts';

export interface RunOptions {
  /** Aborting it stops the operator as SIGTERM does (tests). */
  signal?: AbortSignal;
  kubeConfig?: KubeConfig;
  clock?: Clock;
  log?: Logger;
  version?: string;
  /** Called once the probe servers listen (tests read the ports). */
  onListening?: (ports: { healthPort: number; metricsPort: number }) => void;
  /** Handle SIGTERM/SIGINT (default true; tests pass false). */
  handleSignals?: boolean;
  /** Where tiles are planned (default a PlannerPool of worker threads); closed when the operator stops. */
  planner?: Planner;
}

function loadKubeConfig(path: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  // loadFromDefault: KUBECONFIG or ~/.kube/config, else the in-cluster service account.
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

/** Runs the operator until stopped; resolves with the process exit code. */
export async function runOperator(config: OperatorConfig, o: RunOptions = {}): Promise<number> {
  const clock = o.clock ?? systemClock;
  const log = o.log ?? createLogger({ level: config.logLevel });
  const version = o.version ?? '0.0.0';
  let table: ReturnType<typeof gpuMemoryTable>;
  try {
    const overrides = config.gpuMemoryTablePath
      ? parseGpuMemoryTable(await readFile(config.gpuMemoryTablePath, 'utf8'), config.gpuMemoryTablePath)
      : new Map<string, number>();
    table = gpuMemoryTable(overrides);
  } catch (e) {
    log.error(`cannot use the GPU memory table: ${(e as Error).message}`);
    return 2;
  }
  const client = new KubeClient(o.kubeConfig ?? loadKubeConfig(config.kubeconfig));
  const metrics = createOperatorMetrics({ version });
  const queue = new WorkQueue(clock, defaultControllerRateLimiter(clock), metrics.queueObserver(CONTROLLER));
  const watches = createWatches({
    client,
    clock,
    log,
    metrics,
    namespaces: config.namespaces,
    enqueue: (k) => queue.add(k),
  });
  const shared = {
    stores: watches.stores,
    clock,
    log,
    metrics,
    expectations: new Expectations(clock),
    // Tiles are planned on a few worker threads, never on the event loop (Lease renewals, probes).
    sizer: asyncSizer(o.planner ?? new PlannerPool()),
    config: {
      fieldManager: config.fieldManager,
      trainer: config.trainer,
      ...(config.tenantPolicy && { tenantPolicy: config.tenantPolicy }),
      memoryTable: table,
      ...(config.productLabels && { productLabels: config.productLabels }),
      resyncMs: config.resyncMs,
    },
  };
  /** What the reconciles of one leadership term use: every write carries the term's signal. */
  const termContext = (term: AbortSignal): ReconcileContext => {
    const termClient = client.withSignal(term);
    return {
      ...shared,
      client: termClient,
      events: apiEventRecorder(
        termClient,
        { component: 'tilestream-operator', instance: config.leaderElection.identity },
        { clock, signal: term, warn: (m, meta) => log.warn(m, meta) },
      ),
    };
  };
  metrics.bind({
    phases: () =>
      watches.stores.stjs
        .list()
        .map((s) => ({ namespace: s.metadata.namespace ?? '', phase: s.status?.phase ?? 'Pending' })),
    classes: () => classSnapshots(shared),
    inFlightSince: () => queue.inFlightSince(),
    now: () => clock.now(),
  });

  const stop = new AbortController();
  let exitCode = 0;
  const shutdown = (why: string, code = 0) => {
    if (stop.signal.aborted) return;
    log.info(`shutting down: ${why}`);
    exitCode = code;
    stop.abort();
  };
  o.signal?.addEventListener('abort', () => shutdown('stop requested'), { once: true });
  const onSignal = (s: NodeJS.Signals) => shutdown(s);
  if (o.handleSignals !== false) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }

  const servers = await startProbeServers({
    healthPort: config.healthPort,
    metricsPort: config.metricsPort,
    ...(config.bindAddress !== undefined && { host: config.bindAddress }),
    registry: metrics.registry,
    ...(config.metricsAuth && { authorizeMetrics: metricsAuthorizer(client) }),
    ...(config.metricsCertDir !== undefined && { metricsCertDir: config.metricsCertDir }),
    readiness: () =>
      Object.fromEntries(watches.informers.map((i) => [`informer ${i.resource}`, i.hasSynced()])),
  });
  o.onListening?.({ healthPort: servers.healthPort, metricsPort: servers.metricsPort });
  log.info('tilestream operator starting', {
    version,
    namespaces: config.namespaces ?? 'all',
    leaderElection: config.leaderElection.enabled,
    healthPort: servers.healthPort,
    metricsPort: servers.metricsPort,
  });
  for (const i of watches.informers) i.start();

  let running: Promise<void> | undefined;
  const lead = async (term: AbortSignal) => {
    metrics.leader.set({ name: config.leaderElection.name }, 1);
    await Promise.all(watches.informers.map((i) => i.waitForSync()));
    if (stop.signal.aborted || term.aborted) return;
    for (const key of watches.allKeys()) queue.add(key);
    const ctx = termContext(term);
    const controller = new Controller({
      queue,
      reconcile: (key) => reconcile(key, ctx),
      workers: config.workers,
      clock,
      log,
      metrics,
    });
    running = controller.run();
  };
  // On stop: no new keys, finish the reconciles in flight; only then release the lease.
  const drained = new Promise<void>((resolve) => {
    stop.signal.addEventListener(
      'abort',
      () => {
        queue.shutDown();
        void queue.drained().then(() => resolve());
      },
      { once: true },
    );
  });
  metrics.leader.set({ name: config.leaderElection.name }, 0);
  let election: Promise<void> = Promise.resolve();
  if (config.leaderElection.enabled) {
    const elector = new LeaderElector({
      client,
      clock,
      log,
      namespace: config.leaderElection.namespace,
      name: config.leaderElection.name,
      identity: config.leaderElection.identity,
      onStartedLeading: (term) => void lead(term),
      onStoppedLeading: () => {
        metrics.leader.set({ name: config.leaderElection.name }, 0);
        shutdown('lost leadership', 1);
      },
      onLeaderChanged: (who) => log.info(`leader is ${who}`),
    });
    // The elector releases the lease when `stop` aborts, but only after the queue has drained.
    const electionStop = new AbortController();
    election = elector.run(electionStop.signal);
    stop.signal.addEventListener('abort', () => void drained.then(() => electionStop.abort()), {
      once: true,
    });
  } else void lead(new AbortController().signal);

  await new Promise<void>((resolve) =>
    stop.signal.addEventListener('abort', () => resolve(), { once: true }),
  );
  await drained;
  await running;
  await election;
  await Promise.all(watches.informers.map((i) => i.stop()));
  await shared.sizer.close();
  await servers.close();
  if (o.handleSignals !== false) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  log.info('stopped', { exitCode });
  return exitCode;
}
