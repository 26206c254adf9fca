// A keyed work queue with the client-go contract (util/workqueue/doc.go):
// - fair: keys come out in the order they were added (FIFO);
// - stingy: a key is in the queue at most once, and never handed to two workers at once;
// - a key added while it is being processed runs again after done();
// - addAfter() keeps the earlier of two due times; addRateLimited() waits the limiter's delay.
// Shutdown differs on purpose: queued keys that no worker has started are dropped (a leader that
// stops should stop; the next leader resyncs everything), and drained() waits for the in-flight ones.

import type { Clock } from './clock.ts';
import type { RateLimiter } from './rate-limiter.ts';

/** Hooks for metrics (controller-runtime workqueue_* names are set up in operator/metrics.ts). */
export interface WorkQueueObserver {
  added(): void;
  depth(n: number): void;
  /** Time from add to get, in seconds. */
  waited(seconds: number): void;
  /** Time from get to done, in seconds. */
  worked(seconds: number): void;
  retried(): void;
}

export class WorkQueue {
  // Invariants (client-go queue.go): every key in #queue is in #dirty; a key in #processing is not
  // in #queue; a key in both #dirty and #processing is re-queued by done().
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Map<string, number>();
  readonly #addedAt = new Map<string, number>();
  readonly #waiting = new Map<string, { at: number; cancel: () => void }>();
  #getters: ((key: string | undefined) => void)[] = [];
  #shuttingDown = false;
  #drainWaiters: (() => void)[] = [];
  readonly #clock: Clock;
  readonly #limiter: RateLimiter;
  readonly #observer: WorkQueueObserver | undefined;

  constructor(clock: Clock, limiter: RateLimiter, observer?: WorkQueueObserver) {
    this.#clock = clock;
    this.#limiter = limiter;
    this.#observer = observer;
  }

  /** Keys waiting to be handed out (for information, never for synchronisation). */
  get length(): number {
    return this.#queue.length;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#observer?.added();
    this.#dirty.add(key);
    this.#addedAt.set(key, this.#clock.now());
    if (this.#processing.has(key)) return;
    this.#push(key);
  }

  #push(key: string): void {
    const getter = this.#getters.shift();
    if (getter) {
      this.#hand(key);
      getter(key);
      return;
    }
    this.#queue.push(key);
    this.#observer?.depth(this.#queue.length);
  }

  #hand(key: string): void {
    this.#dirty.delete(key);
    const now = this.#clock.now();
    this.#processing.set(key, now);
    const added = this.#addedAt.get(key);
    this.#addedAt.delete(key);
    if (added !== undefined) this.#observer?.waited((now - added) / 1000);
  }

  /** The next key, or undefined once the queue shuts down. Call done(key) when finished with it. */
  get(): Promise<string | undefined> {
    const key = this.#queue.shift();
    if (key !== undefined) {
      this.#observer?.depth(this.#queue.length);
      this.#hand(key);
      return Promise.resolve(key);
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  done(key: string): void {
    const started = this.#processing.get(key);
    if (started === undefined) return;
    this.#processing.delete(key);
    this.#observer?.worked((this.#clock.now() - started) / 1000);
    if (this.#dirty.has(key) && !this.#shuttingDown) this.#push(key);
    if (this.#processing.size === 0 && this.#shuttingDown) {
      for (const w of this.#drainWaiters.splice(0)) w();
    }
  }

  /** Adds the key after `ms`. A key already waiting keeps the earlier due time. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.#clock.now() + ms;
    const existing = this.#waiting.get(key);
    if (existing && existing.at <= at) return;
    existing?.cancel();
    const cancel = this.#clock.setTimer(ms, () => {
      this.#waiting.delete(key);
      this.add(key);
    });
    this.#waiting.set(key, { at, cancel });
  }

  /** Adds the key after the rate limiter's delay for it (a retry). */
  addRateLimited(key: string): void {
    this.#observer?.retried();
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Stops retry tracking for the key; done() is still needed. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.#limiter.numRequeues(key);
  }

  /** Start times (ms since epoch) of the keys being processed. */
  inFlightSince(): number[] {
    return [...this.#processing.values()];
  }

  /** Keys due later (addAfter / addRateLimited), for tests and diagnostics. */
  get delayed(): number {
    return this.#waiting.size;
  }

  /** Refuses new keys, drops queued and delayed ones, and wakes idle workers with undefined. */
  shutDown(): void {
    this.#shuttingDown = true;
    for (const w of this.#waiting.values()) w.cancel();
    this.#waiting.clear();
    this.#queue.length = 0;
    this.#dirty.clear();
    this.#observer?.depth(0);
    for (const g of this.#getters.splice(0)) g(undefined);
  }

  /** Resolves when no key is being processed (after shutDown, when in-flight work has finished). */
  drained(): Promise<void> {
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }
}
