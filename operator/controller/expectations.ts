// What a reconcile has just written and the caches have not shown yet (the Kubernetes
// controllers' "expectations"): a trainer Job it created, a status it wrote. While an expectation
// is open, reconciling from the stale cache would repeat work or act on old facts, so the key
// waits a moment instead. Expectations expire, in case the watch event never comes.

import type { Clock } from './clock.ts';

export class Expectations {
  readonly #jobs = new Map<string, { name: string; at: number }>();
  readonly #versions = new Map<string, { stale: string; at: number }>();
  readonly #clock: Clock;
  readonly #ttlMs: number;

  constructor(clock: Clock, ttlMs = 30_000) {
    this.#clock = clock;
    this.#ttlMs = ttlMs;
  }

  #fresh(at: number): boolean {
    return this.#clock.now() - at < this.#ttlMs;
  }

  /** A trainer Job was created for `key` and should appear in the cache. */
  expectJob(key: string, name: string): void {
    this.#jobs.set(key, { name, at: this.#clock.now() });
  }

  /** The status of `key` was written; the cached object at `staleVersion` is out of date. */
  expectNewVersion(key: string, staleVersion: string | undefined): void {
    if (staleVersion !== undefined) this.#versions.set(key, { stale: staleVersion, at: this.#clock.now() });
  }

  /** Why `key` should wait, or undefined when the cache has caught up (which closes the expectations). */
  pending(
    key: string,
    cached: { jobNames: ReadonlySet<string>; version: string | undefined },
  ): string | undefined {
    const job = this.#jobs.get(key);
    if (job) {
      if (cached.jobNames.has(job.name) || !this.#fresh(job.at)) this.#jobs.delete(key);
      else return `waiting for the cache to show Job ${job.name}`;
    }
    const v = this.#versions.get(key);
    if (v) {
      if (cached.version !== v.stale || !this.#fresh(v.at)) this.#versions.delete(key);
      else return `waiting for the cache to show the status written over version ${v.stale}`;
    }
    return undefined;
  }

  forget(key: string): void {
    this.#jobs.delete(key);
    this.#versions.delete(key);
  }
}
