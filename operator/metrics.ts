// The operator's Prometheus metrics (prom-client, its own Registry): controller-runtime's names
// (controller_runtime_*, workqueue_*, leader_election_master_status) so existing dashboards and
// alerts work, and tilestream_* for jobs, plans and GPU classes (DESIGN §4). Labels are namespace,
// job name, GPU class and product: never an image path or a patient identifier.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { WorkQueueObserver } from './controller/work-queue.ts';

export const CONTROLLER = 'streamingtrainingjob';

/** GPU classes as the metrics show them, computed at scrape time. */
export interface ClassSnapshot {
  name: string;
  product: string;
  memoryBytes: number;
  nodes: number;
  allocatable: number;
  free: number;
}

/** The plan fields the per-job series show (status.plan has them under these names). */
export interface PlanFigures {
  tileSize?: number;
  gpuClass?: string;
  predictedPeakStreamedBytes?: number;
  predictedPeakConventionalBytes?: number;
  savingsRatio?: number;
}

/** What the per-rank series show: status.distributed and the status.ranks entries it summed. */
export interface RankFigures {
  worldSize: number;
  imagesPerSecond?: number;
  slowestRank?: number;
  ranks: readonly { rank: number; imagesPerSecond?: number }[];
}

export interface OperatorMetrics {
  readonly registry: Registry;
  readonly reconcileTotal: Counter;
  readonly reconcileErrors: Counter;
  readonly terminalErrors: Counter;
  readonly reconcileTime: Histogram;
  readonly activeWorkers: Gauge;
  readonly maxConcurrent: Gauge;
  readonly leader: Gauge;
  readonly relists: Counter;
  readonly watchErrors: Counter;
  readonly tileReductions: Counter;
  queueObserver(name: string): WorkQueueObserver;
  /** Per-job series from the plan (deleted again by forgetJob). */
  setJob(namespace: string, name: string, plan: PlanFigures | undefined): void;
  /**
   * Per-job and per-rank series of a data-parallel job: the summed throughput, the slowest rank,
   * each rank's throughput (status.distributed and the ranks it counted); undefined removes them.
   */
  setRanks(namespace: string, name: string, ranks: RankFigures | undefined): void;
  forgetJob(namespace: string, name: string): void;
  /** Sources read at scrape time: jobs by phase, GPU classes, the queue's in-flight work. */
  bind(sources: {
    phases?: () => Iterable<{ namespace: string; phase: string }>;
    classes?: () => ClassSnapshot[];
    inFlightSince?: () => number[];
    now?: () => number;
  }): void;
}

/** Exponential bucket boundaries: start, start·factor, … (count of them). */
function exponential(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => Number((start * factor ** i).toPrecision(6)));
}

export function createOperatorMetrics(o: { version: string; registry?: Registry }): OperatorMetrics {
  const registry = o.registry ?? new Registry();
  const registers = [registry];
  const sources: Parameters<OperatorMetrics['bind']>[0] = {};
  const jobSeries = new Map<string, { gpuClass: string }>();

  new Gauge({
    name: 'tilestream_operator_build_info',
    help: 'Build information of the tilestream operator; always 1.',
    labelNames: ['version'],
    registers,
  }).set({ version: o.version }, 1);

  const q = {
    depth: new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames: ['name', 'controller'],
      registers,
    }),
    adds: new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: ['name', 'controller'],
      registers,
    }),
    retries: new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: ['name', 'controller'],
      registers,
    }),
    latency: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name', 'controller'],
      buckets: exponential(1e-8, 10, 12),
      registers,
    }),
    work: new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes.',
      labelNames: ['name', 'controller'],
      buckets: exponential(1e-8, 10, 12),
      registers,
    }),
  };
  const inFlight = () =>
    (sources.inFlightSince?.() ?? []).map((t) => ((sources.now?.() ?? Date.now()) - t) / 1000);
  new Gauge({
    name: 'workqueue_unfinished_work_seconds',
    help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration.",
    labelNames: ['name', 'controller'],
    registers,
    collect() {
      this.set(
        { name: CONTROLLER, controller: CONTROLLER },
        inFlight().reduce((a, b) => a + b, 0),
      );
    },
  });
  new Gauge({
    name: 'workqueue_longest_running_processor_seconds',
    help: 'How many seconds has the longest running processor for workqueue been running.',
    labelNames: ['name', 'controller'],
    registers,
    collect() {
      this.set({ name: CONTROLLER, controller: CONTROLLER }, Math.max(0, ...inFlight()));
    },
  });

  const phases = new Gauge({
    name: 'tilestream_jobs',
    help: 'StreamingTrainingJobs by namespace and phase.',
    labelNames: ['namespace', 'phase'],
    registers,
    collect() {
      this.reset();
      for (const j of sources.phases?.() ?? []) this.inc({ namespace: j.namespace, phase: j.phase });
    },
  });
  void phases;
  const tile = new Gauge({
    name: 'tilestream_job_tile_size_pixels',
    help: 'Tile side the operator planned for the job.',
    labelNames: ['namespace', 'job', 'gpu_class'],
    registers,
  });
  const predicted = new Gauge({
    name: 'tilestream_job_predicted_peak_memory_bytes',
    help: 'Predicted peak GPU memory of the job, streamed (at the planned tile) or conventional (whole image).',
    labelNames: ['namespace', 'job', 'mode'],
    registers,
  });
  const savings = new Gauge({
    name: 'tilestream_job_memory_savings_ratio',
    help: 'Predicted fraction of GPU memory saved by streaming (1 - streamed/conventional).',
    labelNames: ['namespace', 'job'],
    registers,
  });
  const ranksLabels = ['namespace', 'job'];
  const worldSizeGauge = new Gauge({
    name: 'tilestream_job_world_size',
    help: 'Ranks of a data-parallel job: spec.resources.replicas × max(gpus, 1).',
    labelNames: ranksLabels,
    registers,
  });
  const jobThroughput = new Gauge({
    name: 'tilestream_job_images_per_second',
    help: "Training throughput of a data-parallel job: the sum of its ranks' reports.",
    labelNames: ranksLabels,
    registers,
  });
  const slowest = new Gauge({
    name: 'tilestream_job_slowest_rank',
    help: 'The rank of a data-parallel job with the lowest throughput (the one the all-reduce waits for).',
    labelNames: ranksLabels,
    registers,
  });
  const rankThroughput = new Gauge({
    name: 'tilestream_job_rank_images_per_second',
    help: 'Training throughput of one rank of a data-parallel job, as it reported it.',
    labelNames: [...ranksLabels, 'rank'],
    registers,
  });
  /** The ranks each job has series for, to remove those that stop reporting. */
  const rankSeries = new Map<string, Set<string>>();
  const classGauge = (
    name: string,
    help: string,
    value: (c: ClassSnapshot) => number,
    extra: string[] = [],
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['gpu_class', 'gpu_product', ...extra],
      registers,
      collect() {
        this.reset();
        for (const c of sources.classes?.() ?? [])
          this.set({ gpu_class: c.name, gpu_product: c.product }, value(c));
      },
    });
  classGauge('tilestream_gpu_class_nodes', 'Usable nodes in a GPU class.', (c) => c.nodes);
  classGauge(
    'tilestream_gpu_class_memory_bytes',
    'GPU memory of one device of a class.',
    (c) => c.memoryBytes,
  );
  classGauge(
    'tilestream_gpu_class_allocatable_gpus',
    'Allocatable GPUs of a class on usable nodes.',
    (c) => c.allocatable,
  );
  classGauge(
    'tilestream_gpu_class_free_gpus',
    'GPUs of a class not requested by the trainer pods the operator sees.',
    (c) => c.free,
  );

  return {
    registry,
    reconcileTotal: new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
      registers,
    }),
    reconcileErrors: new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    }),
    terminalErrors: new Counter({
      name: 'controller_runtime_terminal_reconcile_errors_total',
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    }),
    reconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1,
        1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
      ],
      registers,
    }),
    activeWorkers: new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'],
      registers,
    }),
    maxConcurrent: new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'],
      registers,
    }),
    leader: new Gauge({
      name: 'leader_election_master_status',
      help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.',
      labelNames: ['name'],
      registers,
    }),
    relists: new Counter({
      name: 'tilestream_informer_relists_total',
      help: 'Full lists of a watched resource, by reason (initial, gone = 410 expired version, watchdog = silent watch, error).',
      labelNames: ['resource', 'reason'],
      registers,
    }),
    watchErrors: new Counter({
      name: 'tilestream_informer_watch_errors_total',
      help: 'Failed lists and watches of a watched resource (retried with backoff).',
      labelNames: ['resource'],
      registers,
    }),
    tileReductions: new Counter({
      name: 'tilestream_tile_reductions_total',
      help: 'Trainer out-of-memory exits answered with a smaller tile.',
      labelNames: ['namespace'],
      registers,
    }),
    queueObserver(name) {
      const l = { name, controller: CONTROLLER };
      // The series exists from the start: a key handed straight to a waiting worker never changes
      // the depth, so an idle queue would otherwise never report its 0 (dashboards read it).
      q.depth.set(l, 0);
      return {
        added: () => q.adds.inc(l),
        depth: (n) => q.depth.set(l, n),
        waited: (s) => q.latency.observe(l, s),
        worked: (s) => q.work.observe(l, s),
        retried: () => q.retries.inc(l),
      };
    },
    setJob(namespace, name, plan) {
      const key = `${namespace}/${name}`;
      const before = jobSeries.get(key);
      if (before && (!plan || before.gpuClass !== (plan.gpuClass ?? 'cpu'))) {
        tile.remove({ namespace, job: name, gpu_class: before.gpuClass });
      }
      if (!plan || plan.tileSize === undefined) {
        predicted.remove({ namespace, job: name, mode: 'streamed' });
        predicted.remove({ namespace, job: name, mode: 'conventional' });
        savings.remove({ namespace, job: name });
        jobSeries.delete(key);
        return;
      }
      const gpuClass = plan.gpuClass ?? 'cpu';
      jobSeries.set(key, { gpuClass });
      tile.set({ namespace, job: name, gpu_class: gpuClass }, plan.tileSize);
      if (plan.predictedPeakStreamedBytes !== undefined) {
        predicted.set({ namespace, job: name, mode: 'streamed' }, plan.predictedPeakStreamedBytes);
      }
      if (plan.predictedPeakConventionalBytes !== undefined) {
        predicted.set({ namespace, job: name, mode: 'conventional' }, plan.predictedPeakConventionalBytes);
      }
      if (plan.savingsRatio !== undefined) savings.set({ namespace, job: name }, plan.savingsRatio);
    },
    setRanks(namespace, name, figures) {
      const key = `${namespace}/${name}`;
      const job = { namespace, job: name };
      const seen = new Set<string>();
      if (figures) {
        worldSizeGauge.set(job, figures.worldSize);
        if (figures.imagesPerSecond !== undefined) jobThroughput.set(job, figures.imagesPerSecond);
        else jobThroughput.remove(job);
        if (figures.slowestRank !== undefined) slowest.set(job, figures.slowestRank);
        else slowest.remove(job);
        for (const r of figures.ranks) {
          if (r.imagesPerSecond === undefined) continue;
          rankThroughput.set({ ...job, rank: String(r.rank) }, r.imagesPerSecond);
          seen.add(String(r.rank));
        }
      } else {
        worldSizeGauge.remove(job);
        jobThroughput.remove(job);
        slowest.remove(job);
      }
      for (const rank of rankSeries.get(key) ?? [])
        if (!seen.has(rank)) rankThroughput.remove({ ...job, rank });
      if (seen.size > 0) rankSeries.set(key, seen);
      else rankSeries.delete(key);
    },
    forgetJob(namespace, name) {
      this.setJob(namespace, name, undefined);
      this.setRanks(namespace, name, undefined);
    },
    bind(s) {
      Object.assign(sources, s);
    },
  };
}
