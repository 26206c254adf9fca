// The loop around reconcile (controller-runtime reconcileHandler): N workers take keys from the
// queue; success forgets the key's retries and schedules the requested requeue; an error retries
// the key through the rate limiter; a TerminalError is counted and waits for a change. One key is
// never reconciled by two workers at once (the queue's promise). A reconcile cancelled because the
// leader lost its lease is neither retried nor counted as an error: the next leader reconciles
// every key when it starts.

import { ApiError, TransportError } from '../kube/client.ts';
import type { Logger } from '../log.ts';
import { CONTROLLER, type OperatorMetrics } from '../metrics.ts';
import type { Clock } from './clock.ts';
import { type Action, TerminalError } from './reconcile.ts';
import type { WorkQueue } from './work-queue.ts';

/** The error kinds, also used as log fields: what failed, so an operator knows where to look. */
export type ErrorKind = 'conflict' | 'api' | 'timeout' | 'network' | 'aborted' | 'terminal' | 'internal';

export function errorKind(e: unknown): ErrorKind {
  if (e instanceof TerminalError) return 'terminal';
  if (e instanceof ApiError) return e.status === 409 ? 'conflict' : 'api';
  if (e instanceof TransportError) return e.kind;
  return 'internal';
}

export interface ControllerOptions {
  queue: WorkQueue;
  reconcile: (key: string) => Promise<Action>;
  workers: number;
  clock: Clock;
  log: Logger;
  metrics: OperatorMetrics;
}

export class Controller {
  readonly #o: ControllerOptions;
  constructor(o: ControllerOptions) {
    if (!Number.isInteger(o.workers) || o.workers < 1)
      throw new Error(`workers must be a positive integer, got ${o.workers}`);
    this.#o = o;
  }

  /** Runs the workers until the queue shuts down and the in-flight reconciles finish. */
  async run(): Promise<void> {
    const { metrics, workers } = this.#o;
    metrics.maxConcurrent.set({ controller: CONTROLLER }, workers);
    metrics.activeWorkers.set({ controller: CONTROLLER }, 0);
    // Result labels start at zero, as controller-runtime does, so rate() works from the first scrape.
    for (const result of ['success', 'error', 'requeue', 'requeue_after'])
      metrics.reconcileTotal.inc({ controller: CONTROLLER, result }, 0);
    await Promise.all(Array.from({ length: workers }, () => this.#worker()));
  }

  async #worker(): Promise<void> {
    for (;;) {
      const key = await this.#o.queue.get();
      if (key === undefined) return;
      await this.#process(key);
    }
  }

  async #process(key: string): Promise<void> {
    const { queue, metrics, clock, log } = this.#o;
    const labels = { controller: CONTROLLER };
    const started = clock.now();
    metrics.activeWorkers.inc(labels);
    let result: 'success' | 'error' | 'requeue_after' | 'cancelled';
    try {
      const action = await this.#o.reconcile(key);
      queue.forget(key);
      if (action.kind === 'requeue') {
        queue.addAfter(key, action.afterMs);
        result = 'requeue_after';
      } else result = 'success';
    } catch (e) {
      const kind = errorKind(e);
      const [namespace, name] = key.split('/');
      const meta = { namespace, name, kind, retries: queue.numRequeues(key) };
      if (kind === 'aborted') {
        result = 'cancelled';
        queue.forget(key);
        log.info(`reconcile cancelled: ${(e as Error).message}`, meta);
      } else if (kind === 'terminal') {
        result = 'error';
        metrics.reconcileErrors.inc(labels);
        metrics.terminalErrors.inc(labels);
        queue.forget(key);
        log.error(
          `reconcile failed and will not be retried until the job changes: ${(e as Error).message}`,
          meta,
        );
      } else {
        result = 'error';
        metrics.reconcileErrors.inc(labels);
        queue.addRateLimited(key);
        const level = kind === 'conflict' ? 'debug' : kind === 'internal' ? 'error' : 'warn';
        log[level](`reconcile failed; retrying with backoff: ${(e as Error).message}`, {
          ...meta,
          ...(kind === 'internal' && { stack: (e as Error).stack }),
        });
      }
    } finally {
      metrics.activeWorkers.dec(labels);
      metrics.reconcileTime.observe(labels, (clock.now() - started) / 1000);
      queue.done(key);
    }
    if (result !== 'cancelled') metrics.reconcileTotal.inc({ ...labels, result });
  }
}
