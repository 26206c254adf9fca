// Retry delays for the work queue, after client-go util/workqueue/default_rate_limiters.go:
// a per-key exponential backoff (5 ms doubling to a 1000 s cap) and an overall token bucket
// (10/s, burst 100), combined by taking the larger delay.

import type { Clock } from './clock.ts';

export interface RateLimiter {
  /** How long to wait before the key's next retry; counts the retry. */
  when(key: string): number;
  /** Forget the key's failures (after a success or a permanent error). */
  forget(key: string): void;
  /** Retries counted for the key since it was last forgotten. */
  numRequeues(key: string): number;
}

/** baseMs · 2^failures, capped at maxMs. */
export class ExponentialRateLimiter implements RateLimiter {
  readonly #failures = new Map<string, number>();
  readonly #baseMs: number;
  readonly #maxMs: number;

  constructor(baseMs = 5, maxMs = 1_000_000) {
    if (!(baseMs > 0) || !(maxMs >= baseMs)) {
      throw new Error(`rate limiter: need 0 < baseMs <= maxMs, got baseMs=${baseMs}, maxMs=${maxMs}`);
    }
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
  }

  when(key: string): number {
    const n = this.#failures.get(key) ?? 0;
    this.#failures.set(key, n + 1);
    // 2^n overflows to Infinity for large n; the cap keeps the result finite.
    return Math.min(this.#baseMs * 2 ** n, this.#maxMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/** A token bucket shared by all keys: `qps` tokens per second, at most `burst` saved up. */
export class BucketRateLimiter implements RateLimiter {
  readonly #clock: Clock;
  readonly #qps: number;
  readonly #burst: number;
  #tokens: number;
  #last: number;

  constructor(clock: Clock, qps = 10, burst = 100) {
    if (!(qps > 0) || !(burst >= 1))
      throw new Error(`token bucket: need qps > 0 and burst >= 1, got ${qps}, ${burst}`);
    this.#clock = clock;
    this.#qps = qps;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = clock.now();
  }

  when(_key: string): number {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
    this.#last = now;
    // Reserve a token now, even if it arrives later (rate.Limiter.Reserve): the debt delays later callers.
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#qps) * 1000);
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The largest delay of several limiters (client-go MaxOfRateLimiter). */
export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: readonly RateLimiter[];
  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }
  when(key: string): number {
    return Math.max(...this.#limiters.map((l) => l.when(key)));
  }
  forget(key: string): void {
    for (const l of this.#limiters) l.forget(key);
  }
  numRequeues(key: string): number {
    return Math.max(...this.#limiters.map((l) => l.numRequeues(key)));
  }
}

/** client-go's DefaultControllerRateLimiter. */
export function defaultControllerRateLimiter(
  clock: Clock,
  o: { baseMs?: number; maxMs?: number } = {},
): RateLimiter {
  return new MaxOfRateLimiter(new ExponentialRateLimiter(o.baseMs, o.maxMs), new BucketRateLimiter(clock));
}
