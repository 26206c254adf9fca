// Counting one client's API requests from the API server's own audit log. apiserver_request_total
// has no user or user-agent label (Kubernetes 1.37: verb, group, version, resource, subresource,
// scope, component, code, dry_run), so the audit log, filtered to the operator's service account,
// is the server-side record of exactly what the operator asked for. Pure apart from the file read.

import { readFileSync } from 'node:fs';

/**
 * An audit policy that records `users` at Metadata level (no bodies) and nothing else. Stage
 * RequestReceived is omitted; a watch still open at the end has only ResponseStarted, a finished
 * request ResponseComplete, so each request is counted once by its auditID.
 */
export function auditPolicyYaml(users: readonly string[]): string {
  return [
    'apiVersion: audit.k8s.io/v1',
    'kind: Policy',
    'omitStages: [RequestReceived]',
    'rules:',
    '  - level: Metadata',
    `    users: [${users.map((u) => JSON.stringify(u)).join(', ')}]`,
    '  - level: None',
    '',
  ].join('\n');
}

export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
  /** When the stage was reached: for ResponseComplete, when the answer was sent. */
  stageTimestamp?: string;
}

export interface RequestCounts {
  total: number;
  /** get, list, watch, create, patch, update, delete, … */
  byVerb: Record<string, number>;
  /** `patch streamingtrainingjobs/status`, `create events`, … */
  byVerbResource: Record<string, number>;
  /** HTTP status of finished requests; watches still open count under `open`. */
  byCode: Record<string, number>;
}

/** Milliseconds of an RFC 3339 timestamp with any number of fraction digits. */
export function auditTimeMs(ts: string): number {
  const ms = Date.parse(ts.replace(/(\.\d{3})\d+/, '$1'));
  if (Number.isNaN(ms)) throw new Error(`audit event timestamp '${ts}' is not RFC 3339`);
  return ms;
}

/** Parses JSON lines; a torn last line (the server still writing) is skipped. */
export function parseAuditLines(text: string): AuditEvent[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const out: AuditEvent[] = [];
  for (const [i, line] of lines.entries()) {
    try {
      out.push(JSON.parse(line) as AuditEvent);
    } catch {
      // Only the last line can be partial; anything else means this is not an audit log.
      if (i !== lines.length - 1)
        throw new Error(`audit log line ${i + 1} is not JSON: ${line.slice(0, 200)}`);
    }
  }
  return out;
}

/** Requests of `user` received in [fromMs, toMs), each counted once; `exclude` drops resources (e.g. leases). */
export function countRequests(
  events: readonly AuditEvent[],
  o: { user: string; fromMs?: number; toMs?: number; excludeResources?: readonly string[] },
): RequestCounts {
  const latest = new Map<string, AuditEvent>();
  for (const e of events) {
    if (e.user?.username !== o.user) continue;
    const t = auditTimeMs(e.requestReceivedTimestamp);
    if ((o.fromMs !== undefined && t < o.fromMs) || (o.toMs !== undefined && t >= o.toMs)) continue;
    if (o.excludeResources?.includes(e.objectRef?.resource ?? '')) continue;
    // ResponseComplete supersedes ResponseStarted (a watch that has ended).
    const prev = latest.get(e.auditID);
    if (!prev || e.stage === 'ResponseComplete') latest.set(e.auditID, e);
  }
  const counts: RequestCounts = { total: 0, byVerb: {}, byVerbResource: {}, byCode: {} };
  const inc = (m: Record<string, number>, k: string) => {
    m[k] = (m[k] ?? 0) + 1;
  };
  for (const e of latest.values()) {
    counts.total++;
    inc(counts.byVerb, e.verb);
    const r = e.objectRef?.resource;
    const sub = e.objectRef?.subresource;
    inc(counts.byVerbResource, r ? `${e.verb} ${r}${sub ? `/${sub}` : ''}` : `${e.verb} (non-resource)`);
    inc(counts.byCode, e.stage === 'ResponseComplete' ? String(e.responseStatus?.code ?? '?') : 'open');
  }
  return counts;
}

export function readAuditLog(path: string): AuditEvent[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(
      `cannot read the API server audit log ${path} (started with --audit-log-path?): ${(e as Error).message}`,
    );
  }
  return parseAuditLines(text);
}

/** The requests-per-job figures: every count divided by the number of jobs. */
export function perJob(c: RequestCounts, jobs: number): { total: number; byVerb: Record<string, number> } {
  // Three decimals: a single extra request (a re-opened watch) over 500 jobs still shows.
  const r = (n: number) => Math.round((n / jobs) * 1000) / 1000;
  return {
    total: r(c.total),
    byVerb: Object.fromEntries(Object.entries(c.byVerb).map(([k, v]) => [k, r(v)])),
  };
}

export interface LeaseRenewals {
  /** Successful renewals (update → 200) of the lease received in the window. */
  renewals: number;
  /** The largest time between two successive renewals, the later one in the window (0 with none). */
  maxGapMs: number;
  /** When the later renewal of that gap was received (epoch ms; 0 with none). */
  maxGapEndMs: number;
  /**
   * The largest part of a gap that was neither the retry period nor the API server answering the
   * leader's Lease requests (the earlier update and the reads before the later one): the time the
   * operator took to send them, i.e. its event loop (plus the network, negligible on one machine).
   */
  maxOperatorDelayMs: number;
}

/**
 * The leader's renewals of its Lease as the API server received them. A leader renews every retry
 * period (2 s): it waits that long after a renewal's answer, reads the Lease and writes it. So a gap
 * is the retry period, plus the API server's time to answer the earlier write and the read, plus
 * the operator's own delay in sending them; at the renew deadline (10 s) it steps down. The
 * renewal just before the window (or the create that took the Lease) opens the first gap, so a
 * stall that straddles the window's start is not cut short, and a short window still has a gap.
 */
export function leaseRenewals(
  events: readonly AuditEvent[],
  o: { user: string; fromMs: number; toMs: number; lease?: string; retryPeriodMs?: number },
): LeaseRenewals {
  const retryPeriodMs = o.retryPeriodMs ?? 2000;
  const lease = events
    .filter(
      (e) =>
        e.user?.username === o.user &&
        e.stage === 'ResponseComplete' &&
        e.objectRef?.resource === 'leases' &&
        (o.lease === undefined || e.objectRef.name === o.lease),
    )
    .map((e) => {
      const at = auditTimeMs(e.requestReceivedTimestamp);
      const done = e.stageTimestamp !== undefined ? auditTimeMs(e.stageTimestamp) : at;
      return {
        at,
        apiMs: Math.max(0, done - at),
        renewal: e.verb === 'update' && e.responseStatus?.code === 200,
        acquired: e.verb === 'create' && e.responseStatus?.code === 201,
      };
    })
    .filter((r) => r.at < o.toMs)
    .sort((a, b) => a.at - b.at);
  const out: LeaseRenewals = { renewals: 0, maxGapMs: 0, maxGapEndMs: 0, maxOperatorDelayMs: 0 };
  let previous: (typeof lease)[number] | undefined;
  let apiSince = 0; // API time of the requests since the previous renewal was received
  for (const r of lease) {
    if (r.acquired) {
      // Taking a free Lease starts the first term: the first renewal's gap runs from it.
      previous = r;
      apiSince = 0;
      continue;
    }
    if (!r.renewal) {
      apiSince += r.apiMs;
      continue;
    }
    if (r.at >= o.fromMs) {
      out.renewals++;
      if (previous) {
        const gap = r.at - previous.at;
        if (gap > out.maxGapMs) {
          out.maxGapMs = gap;
          out.maxGapEndMs = r.at;
        }
        const delay = gap - retryPeriodMs - previous.apiMs - apiSince;
        out.maxOperatorDelayMs = Math.max(out.maxOperatorDelayMs, delay);
      }
    }
    previous = r;
    apiSince = 0;
  }
  return out;
}
