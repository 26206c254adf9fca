// Leader election on a coordination.k8s.io Lease, after client-go tools/leaderelection: 15 s
// lease, 10 s renew deadline, 2 s retry. A candidate takes the lease when it is free or when its
// record has not changed for a whole lease duration as observed on the candidate's own clock (not
// the renewTime written by another machine, whose clock may be skewed). The leader renews every
// retry period and steps down when it could not renew within the renew deadline. On shutdown the
// leader releases the lease (empty holder, 1 s duration) so a successor starts at once.

import type { Clock } from './controller/clock.ts';
import { isConflict, isNotFound, type KubeClient } from './kube/client.ts';
import { collectionPath, objectPath, RESOURCES } from './kube/resources.ts';
import type { Logger } from './log.ts';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

export interface LeaderElectionOptions {
  client: KubeClient;
  clock: Clock;
  log: Logger;
  namespace: string;
  name: string;
  /** This candidate: the pod name, made unique. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading(): void;
  /** Called when leadership is lost (not when it is released on shutdown). */
  onStoppedLeading(): void;
  onLeaderChanged?(identity: string): void;
}

/** client-go's defaults; exported so tests derive their hand-over bounds from the same numbers. */
export const LEADER_ELECTION_DEFAULTS = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
  /** A candidate waits retryPeriod × (1 + up to this factor) between tries, as client-go does. */
  retryJitter: 0.2,
} as const;

/** Kubernetes MicroTime: RFC 3339 with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  readonly #o: Required<Omit<LeaderElectionOptions, 'onLeaderChanged'>> &
    Pick<LeaderElectionOptions, 'onLeaderChanged'>;
  #observed: { record: string; at: number } | undefined;
  #leader = false;
  #lastHolder: string | undefined;

  constructor(o: LeaderElectionOptions) {
    const { retryJitter: _jitter, ...defaults } = LEADER_ELECTION_DEFAULTS;
    this.#o = { ...defaults, ...o };
    const { leaseDurationMs, renewDeadlineMs, retryPeriodMs } = this.#o;
    if (!(leaseDurationMs > renewDeadlineMs && renewDeadlineMs > retryPeriodMs && retryPeriodMs > 0)) {
      throw new Error(
        `leader election needs leaseDuration > renewDeadline > retryPeriod > 0, got ${leaseDurationMs}, ${renewDeadlineMs}, ${retryPeriodMs} ms`,
      );
    }
  }

  isLeader(): boolean {
    return this.#leader;
  }

  get #path(): string {
    return objectPath(RESOURCES.lease, this.#o.namespace, this.#o.name);
  }

  /**
   * Campaigns until elected, then renews until `signal` aborts (then releases the lease and
   * resolves) or renewal fails past the renew deadline (then calls onStoppedLeading and resolves).
   */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, retryPeriodMs, renewDeadlineMs, log } = this.#o;
    while (!signal.aborted && !(await this.#tryAcquireOrRenew())) {
      // Jitter as client-go so candidates do not retry in lockstep.
      await clock.sleep(retryPeriodMs * (1 + LEADER_ELECTION_DEFAULTS.retryJitter * Math.random()), signal);
    }
    if (signal.aborted) return;
    this.#leader = true;
    log.info(`became leader (lease ${this.#o.namespace}/${this.#o.name})`, { identity: this.#o.identity });
    this.#o.onStartedLeading();
    let lastRenew = clock.now();
    while (!signal.aborted) {
      await clock.sleep(retryPeriodMs, signal);
      if (signal.aborted) break;
      if (await this.#tryAcquireOrRenew()) lastRenew = clock.now();
      else if (clock.now() - lastRenew >= renewDeadlineMs) {
        this.#leader = false;
        log.error(
          `lost leadership: could not renew lease ${this.#o.namespace}/${this.#o.name} within ${renewDeadlineMs} ms`,
        );
        this.#o.onStoppedLeading();
        return;
      }
    }
    await this.release();
  }

  /** Gives the lease up if this candidate holds it (on shutdown). */
  async release(): Promise<void> {
    if (!this.#leader) return;
    this.#leader = false;
    try {
      const lease = await this.#o.client.request<Lease>('GET', this.#path, { timeoutMs: 5000 });
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      const now = microTime(this.#o.clock.now());
      await this.#o.client.request('PUT', this.#path, {
        timeoutMs: 5000,
        body: {
          ...lease,
          spec: {
            holderIdentity: '',
            leaseDurationSeconds: 1,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: lease.spec.leaseTransitions ?? 0,
          },
        },
      });
      this.#o.log.info('released the leader lease');
    } catch (e) {
      this.#o.log.warn(`could not release the leader lease: ${(e as Error).message}`);
    }
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { client, clock, identity, leaseDurationMs, log } = this.#o;
    const now = clock.now();
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.round(leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    // Requests must end well within the renew deadline.
    const timeoutMs = Math.min(5000, this.#o.renewDeadlineMs / 2);
    let lease: Lease;
    try {
      lease = await client.request<Lease>('GET', this.#path, { timeoutMs });
    } catch (e) {
      if (!isNotFound(e)) {
        log.warn(`leader election: cannot read lease: ${(e as Error).message}`);
        return false;
      }
      try {
        await client.request('POST', collectionPath(RESOURCES.lease, this.#o.namespace), {
          timeoutMs,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.#o.name, namespace: this.#o.namespace },
            spec,
          },
        });
      } catch (err) {
        if (!isConflict(err)) log.warn(`leader election: cannot create lease: ${(err as Error).message}`);
        return false;
      }
      this.#observe(spec, now);
      return true;
    }
    const current = lease.spec ?? {};
    // Observed when the read returned (as client-go): a renewal may have landed while it was in flight.
    this.#observe(current, clock.now());
    const holder = current.holderIdentity ?? '';
    const expired = (this.#observed?.at ?? now) + (current.leaseDurationSeconds ?? 0) * 1000 <= now;
    if (holder !== '' && holder !== identity && !expired) return false;
    if (holder === identity) {
      spec.acquireTime = current.acquireTime ?? spec.acquireTime;
      spec.leaseTransitions = current.leaseTransitions ?? 0;
    } else spec.leaseTransitions = (current.leaseTransitions ?? 0) + 1;
    try {
      await client.request('PUT', this.#path, { timeoutMs, body: { ...lease, spec } });
    } catch (e) {
      if (!isConflict(e)) log.warn(`leader election: cannot update lease: ${(e as Error).message}`);
      return false;
    }
    this.#observe(spec, now);
    return true;
  }

  /** Remembers when the record last changed, on our clock. */
  #observe(spec: LeaseSpec, now: number): void {
    const record = JSON.stringify([
      spec.holderIdentity ?? '',
      spec.renewTime,
      spec.leaseDurationSeconds,
      spec.leaseTransitions,
    ]);
    if (this.#observed?.record !== record) this.#observed = { record, at: now };
    const holder = spec.holderIdentity ?? '';
    if (holder !== this.#lastHolder) {
      this.#lastHolder = holder;
      if (holder !== '') this.#o.onLeaderChanged?.(holder);
    }
  }
}
