// Leader election on a coordination.k8s.io Lease, after client-go tools/leaderelection: 15 s
// lease, 10 s renew deadline, 2 s retry. A candidate takes the lease when it is free or when its
// record has not changed for a whole lease duration as observed on the candidate's own clock (not
// the renewTime written by another machine, whose clock may be skewed). The leader renews every
// retry period. A timer steps it down when the renew deadline passes since the start of its last
// successful renewal, whether or not an attempt is still waiting for the API server (client-go
// bounds each renewal round with a context timeout; a timer from the last renewal is stricter, and
// leaves leaseDuration − renewDeadline for other candidates' clocks). Stepping down aborts the
// term's AbortSignal, which the leader's reconciles and their API requests carry. On shutdown the
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
  /**
   * Called on election with the term's signal: it aborts when leadership is lost (reason a
   * LeadershipLostError) or released on shutdown. Everything the leader writes should carry it.
   */
  onStartedLeading(term: AbortSignal): void;
  /** Called when leadership is lost (not when it is released on shutdown), after the term aborted. */
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

/** The reason a term's signal carries when the lease was lost. */
export class LeadershipLostError extends Error {
  override name = 'LeadershipLostError';
}

/** Where this candidate stands. A term ends by losing the lease or by releasing it. */
type Standing =
  | { kind: 'candidate' }
  | {
      kind: 'leading';
      term: AbortController;
      /** Clock time at which the last successful renewal (or the acquisition) began. */
      renewedAt: number;
      cancelStepDown: () => void;
    }
  | { kind: 'lost' }
  | { kind: 'released' };

/** One tryAcquireOrRenew: the lease is ours, someone else holds it, or the API did not let us know. */
type Attempt = { kind: 'ours' } | { kind: 'held'; holder: string } | { kind: 'failed' };

/** Kubernetes MicroTime: RFC 3339 with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  readonly #o: Required<Omit<LeaderElectionOptions, 'onLeaderChanged'>> &
    Pick<LeaderElectionOptions, 'onLeaderChanged'>;
  #observed: { record: string; at: number } | undefined;
  #standing: Standing = { kind: 'candidate' };
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
    return this.#standing.kind === 'leading';
  }

  get #path(): string {
    return objectPath(RESOURCES.lease, this.#o.namespace, this.#o.name);
  }

  get #lease(): string {
    return `${this.#o.namespace}/${this.#o.name}`;
  }

  /**
   * Campaigns until elected, then renews until `signal` aborts (then releases the lease and
   * resolves) or the lease is lost (then the term aborts, onStoppedLeading runs, and it resolves).
   */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, retryPeriodMs, log } = this.#o;
    let acquiredAt: number | undefined;
    while (!signal.aborted) {
      const began = clock.now();
      if ((await this.#tryAcquireOrRenew(signal, false)).kind === 'ours') {
        acquiredAt = began;
        break;
      }
      // Jitter as client-go so candidates do not retry in lockstep.
      await clock.sleep(retryPeriodMs * (1 + LEADER_ELECTION_DEFAULTS.retryJitter * Math.random()), signal);
    }
    if (signal.aborted || acquiredAt === undefined) return;
    const term = new AbortController();
    this.#standing = { kind: 'leading', term, renewedAt: acquiredAt, cancelStepDown: () => {} };
    this.#armStepDown(acquiredAt);
    log.info(`became leader (lease ${this.#lease})`, { identity: this.#o.identity });
    this.#o.onStartedLeading(term.signal);
    // Every wait and every request of the term ends when the term does, or on stop.
    const either = AbortSignal.any([signal, term.signal]);
    while (!either.aborted) {
      await clock.sleep(retryPeriodMs, either);
      if (either.aborted) break;
      const began = clock.now();
      const attempt = await this.#tryAcquireOrRenew(either, true);
      if (term.signal.aborted) break; // stepped down while the attempt was in flight
      if (attempt.kind === 'ours') this.#armStepDown(began);
      else if (attempt.kind === 'held') this.#stepDown(`the lease is now held by ${attempt.holder}`);
    }
    if (!term.signal.aborted) await this.release();
  }

  /** (Re)starts the step-down timer: the renew deadline counted from `renewedAt`. */
  #armStepDown(renewedAt: number): void {
    const s = this.#standing;
    if (s.kind !== 'leading') return;
    const { clock, renewDeadlineMs } = this.#o;
    s.cancelStepDown();
    s.renewedAt = renewedAt;
    s.cancelStepDown = clock.setTimer(renewedAt + renewDeadlineMs - clock.now(), () =>
      this.#stepDown(`could not renew it within the renew deadline (${renewDeadlineMs} ms)`),
    );
  }

  #stepDown(why: string): void {
    const s = this.#standing;
    if (s.kind !== 'leading') return;
    s.cancelStepDown();
    this.#standing = { kind: 'lost' };
    const message = `lost leadership of lease ${this.#lease}: ${why}`;
    this.#o.log.error(`${message}; stepping down`, {
      identity: this.#o.identity,
      sinceLastRenewalMs: this.#o.clock.now() - s.renewedAt,
    });
    s.term.abort(new LeadershipLostError(message));
    this.#o.onStoppedLeading();
  }

  /** Ends the term and gives the lease up if this candidate holds it (on shutdown). */
  async release(): Promise<void> {
    const s = this.#standing;
    if (s.kind !== 'leading') return;
    s.cancelStepDown();
    this.#standing = { kind: 'released' };
    s.term.abort(new Error(`released lease ${this.#lease} on shutdown`));
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

  /** One read-then-write of the lease; `signal` cancels both (the renew deadline, or stop). */
  async #tryAcquireOrRenew(signal: AbortSignal, leading: boolean): Promise<Attempt> {
    const { client, clock, identity, leaseDurationMs } = this.#o;
    const now = clock.now();
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.round(leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    // Each request ends within half the renew deadline, so a hung one leaves time for a retry.
    const timeoutMs = Math.min(5000, this.#o.renewDeadlineMs / 2);
    // A cancelled attempt (stop, or the step-down) is not worth a warning.
    const warn = (m: string) => void (signal.aborted || this.#o.log.warn(`leader election: ${m}`));
    let lease: Lease;
    try {
      lease = await client.request<Lease>('GET', this.#path, { timeoutMs, signal });
    } catch (e) {
      if (!isNotFound(e)) {
        warn(`cannot read lease: ${(e as Error).message}`);
        return { kind: 'failed' };
      }
      try {
        await client.request('POST', collectionPath(RESOURCES.lease, this.#o.namespace), {
          timeoutMs,
          signal,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.#o.name, namespace: this.#o.namespace },
            spec,
          },
        });
      } catch (err) {
        if (!isConflict(err)) warn(`cannot create lease: ${(err as Error).message}`);
        return { kind: 'failed' };
      }
      this.#observe(spec, now);
      return { kind: 'ours' };
    }
    const current = lease.spec ?? {};
    // Observed when the read returned (as client-go): a renewal may have landed while it was in flight.
    this.#observe(current, clock.now());
    const holder = current.holderIdentity ?? '';
    const expired = (this.#observed?.at ?? now) + (current.leaseDurationSeconds ?? 0) * 1000 <= now;
    // A leader that sees another holder has been replaced, expired record or not.
    if (holder !== '' && holder !== identity && (leading || !expired)) return { kind: 'held', holder };
    if (holder === identity) {
      spec.acquireTime = current.acquireTime ?? spec.acquireTime;
      spec.leaseTransitions = current.leaseTransitions ?? 0;
    } else spec.leaseTransitions = (current.leaseTransitions ?? 0) + 1;
    try {
      await client.request('PUT', this.#path, { timeoutMs, signal, body: { ...lease, spec } });
    } catch (e) {
      if (!isConflict(e)) warn(`cannot update lease: ${(e as Error).message}`);
      return { kind: 'failed' };
    }
    this.#observe(spec, now);
    return { kind: 'ours' };
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
