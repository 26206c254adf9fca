// A small, fixed pool of worker threads that run the memory planner, so that sizing a tile (up to
// seconds for a large network on a large image) never holds the operator's event loop: the Lease
// renewals, the probes, the watches and the other reconciles go on while a plan is being made.
//
// Guarantees: at most `threads` planner threads; requests wait in FIFO order for a free thread; a
// thread's result is exactly sizeTile's (a SizingError stays a SizingError). A thread that dies
// fails only the request it was running (the next request starts a new thread); one that runs out of
// memory fails it with a SizingError, since planning the same spec again would too. Idle threads
// never keep the process alive (unref'd), and close() ends them all. Caveats: no memo here
// (async-sizer.ts keeps one); a plan that never returns holds its thread (the planner is a bounded
// search).

import { availableParallelism } from 'node:os';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import { type Sizing, SizingError, type SizingRequest } from './tile-sizing.ts';

/** What the pool posts to a planner thread. */
export interface PlannerTask {
  id: number;
  req: SizingRequest;
}

/** What a planner thread answers. */
export type PlannerReply =
  | { id: number; ok: true; sizing: Sizing }
  | { id: number; ok: false; error: { name: string; message: string; stack: string } };

/**
 * The default number of planner threads: one less than the CPUs, at most 2, at least 1. The main
 * thread keeps a CPU for the event loop (API requests, probes, the Lease), so more threads than
 * CPUs − 1 would slow it down again; and two are plenty, because plans repeat (a handful of distinct
 * networks × GPU classes, each planned once and memoised) while each thread is an isolate with its
 * own heap (≈ 60 MiB of RSS for the benchmark's plans, under the chart's 512Mi limit).
 */
export function defaultPlannerThreads(cpus = availableParallelism()): number {
  return Math.max(1, Math.min(2, cpus - 1));
}

/**
 * A planner thread's V8 limits. The old generation is the process's (--max-old-space-size, the
 * chart's operator.maxHeapMiB), so a thread can plan what the event loop could before. The young
 * generation is kept small: the planner makes mostly short-lived garbage, and with V8's default a
 * thread's heap grew to 165 MiB planning the benchmark's 32 sizings (RSS +185 MiB); with 8 MiB of
 * young generation to 32 MiB (RSS +63 MiB), in the same time.
 */
export const PLANNER_RESOURCE_LIMITS: ResourceLimits = { maxYoungGenerationSizeMb: 8 };

export interface PlannerPoolOptions {
  /** Default defaultPlannerThreads(). */
  threads?: number;
  /** Default PLANNER_RESOURCE_LIMITS. */
  resourceLimits?: ResourceLimits;
  /** The thread's module (tests substitute one); default planner-worker.ts. */
  workerUrl?: URL;
}

interface Task {
  id: number;
  req: SizingRequest;
  resolve(s: Sizing): void;
  reject(e: Error): void;
}

/** A worker thread and the task it runs, if any. */
interface Thread {
  worker: Worker;
  task: Task | undefined;
}

export class PoolClosedError extends Error {
  override name = 'PoolClosedError';
}

export class PlannerPool {
  readonly threads: number;
  readonly #url: URL;
  readonly #limits: ResourceLimits;
  readonly #threads = new Set<Thread>();
  readonly #queue: Task[] = [];
  #nextId = 1;
  #closed = false;
  #planned = 0;

  constructor(o: PlannerPoolOptions = {}) {
    const threads = o.threads ?? defaultPlannerThreads();
    if (!Number.isInteger(threads) || threads < 1) {
      throw new Error(`a planner pool needs a whole number of threads ≥ 1, got ${threads}`);
    }
    this.threads = threads;
    this.#url = o.workerUrl ?? new URL('./planner-worker.ts', import.meta.url);
    this.#limits = o.resourceLimits ?? PLANNER_RESOURCE_LIMITS;
  }

  /** Sizes `req` on a planner thread: sizeTile's result, its SizingError, or the fault of the thread. */
  run(req: SizingRequest): Promise<Sizing> {
    if (this.#closed) return Promise.reject(new PoolClosedError('the planner pool is closed'));
    return new Promise<Sizing>((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, req, resolve, reject });
      this.#dispatch();
    });
  }

  /** Plans made so far, threads alive, requests waiting for a thread. */
  get stats(): { planned: number; threads: number; queued: number } {
    return { planned: this.#planned, threads: this.#threads.size, queued: this.#queue.length };
  }

  /** Ends every thread; requests waiting or running are rejected. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const closed = new PoolClosedError('the planner pool was closed (operator shutdown)');
    for (const t of this.#queue.splice(0)) t.reject(closed);
    const threads = [...this.#threads];
    this.#threads.clear();
    for (const t of threads) {
      t.task?.reject(closed);
      t.task = undefined;
    }
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let thread = [...this.#threads].find((t) => t.task === undefined);
      if (!thread) {
        if (this.#threads.size >= this.threads) return;
        try {
          thread = this.#spawn();
        } catch (e) {
          const task = this.#queue.shift() as Task;
          task.reject(new Error(`cannot start a planner thread: ${(e as Error).message}`, { cause: e }));
          continue;
        }
      }
      const task = this.#queue.shift() as Task;
      try {
        thread.worker.postMessage({ id: task.id, req: task.req } satisfies PlannerTask);
      } catch (e) {
        task.reject(
          new Error(`cannot hand the request to a planner thread: ${(e as Error).message}`, { cause: e }),
        );
        continue;
      }
      thread.task = task;
      thread.worker.ref(); // a request in flight keeps the process alive until it is answered
    }
  }

  #spawn(): Thread {
    const worker = new Worker(this.#url, { name: 'tilestream-planner', resourceLimits: this.#limits });
    const thread: Thread = { worker, task: undefined };
    worker.unref();
    worker.on('message', (reply: PlannerReply) => {
      const task = thread.task;
      if (!task || task.id !== reply.id) return;
      thread.task = undefined;
      worker.unref();
      this.#planned++;
      if (reply.ok) task.resolve(reply.sizing);
      else task.reject(rebuild(reply.error));
      this.#dispatch();
    });
    // An uncaught error in the thread ends it: 'error' then 'exit'. Either fails only its own task.
    let failure: Error | undefined;
    worker.on('error', (e) => {
      failure = e;
    });
    worker.on('exit', (code) => {
      if (!this.#threads.delete(thread)) return; // closed
      const task = thread.task;
      thread.task = undefined;
      if ((failure as NodeJS.ErrnoException | undefined)?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        task?.reject(outOfMemory(task.req, this.#limits));
      } else {
        task?.reject(
          new Error(
            `the planner thread stopped (exit code ${code}${failure ? `: ${failure.message}` : ''}) while sizing`,
            ...(failure ? [{ cause: failure }] : []),
          ),
        );
      }
      this.#dispatch();
    });
    this.#threads.add(thread);
    return thread;
  }
}

/**
 * A spec whose planning outgrew a planner thread's heap. The planner's memory grows with the image's
 * pixels (about 0.25 bytes each: 16384² takes ~90 MiB, 65536² ~1 GiB), so planning it again would
 * fail again: a SizingError, which the job shows as a condition instead of a retry loop.
 */
function outOfMemory(req: SizingRequest, limits: ResourceLimits): SizingError {
  const limit =
    limits.maxOldGenerationSizeMb !== undefined
      ? `limited to ${limits.maxOldGenerationSizeMb} MiB`
      : `limited as the operator's own, by --max-old-space-size`;
  const { height, width } = req.spec.data.imageSize;
  return new SizingError(
    `the operator cannot plan a ${height}×${width} px image: the planner ran out of memory (a planner ` +
      `thread's heap is ${limit}). Raise the operator's heap (Helm operator.maxHeapMiB, with its ` +
      'memory limit) or use a smaller data.imageSize',
  );
}

/** The thread's error as an Error of this thread: a SizingError stays one (it becomes a condition). */
function rebuild(e: { name: string; message: string; stack: string }): Error {
  if (e.name === 'SizingError') return new SizingError(e.message);
  const err = new Error(`${e.name} in a planner thread: ${e.message}`);
  err.stack = `${err.name}: ${err.message}\n    in the planner thread:\n${e.stack}`;
  return err;
}
