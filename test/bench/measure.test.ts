// The benchmark's pure measuring helpers: audit-log request counting, /proc memory, Prometheus sums.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  type AuditEvent,
  auditPolicyYaml,
  auditTimeMs,
  countRequests,
  leaseRenewals,
  parseAuditLines,
  perJob,
} from './audit-log.ts';
import { parseProcStatCpuSeconds, parseProcStatus, percentile, sumMetric } from './measure.ts';

const OP = 'system:serviceaccount:ops:operator';
const ev = (
  auditID: string,
  stage: string,
  verb: string,
  resource: string | undefined,
  at: string,
  o: { user?: string; code?: number; subresource?: string } = {},
): AuditEvent => ({
  auditID,
  stage,
  verb,
  user: { username: o.user ?? OP },
  ...(resource && {
    objectRef: { resource, ...(o.subresource && { subresource: o.subresource }) },
  }),
  ...(o.code !== undefined && { responseStatus: { code: o.code } }),
  requestReceivedTimestamp: at,
});

describe('audit log counting', () => {
  const t = (s: number) => `2026-11-28T12:00:${String(s).padStart(2, '0')}.123456Z`;
  const events = [
    ev('a', 'ResponseComplete', 'patch', 'streamingtrainingjobs', t(1), { code: 200, subresource: 'status' }),
    // A watch that started and later ended: one request, with the final code.
    ev('w', 'ResponseStarted', 'watch', 'pods', t(2), { code: 200 }),
    ev('w', 'ResponseComplete', 'watch', 'pods', t(2), { code: 200 }),
    // A watch still open: counted once, as open.
    ev('v', 'ResponseStarted', 'watch', 'jobs', t(3)),
    ev('c', 'ResponseComplete', 'patch', 'jobs', t(4), { code: 409 }),
    ev('l', 'ResponseComplete', 'update', 'leases', t(5), { code: 200 }),
    ev('x', 'ResponseComplete', 'get', 'pods', t(6), { user: 'admin', code: 200 }),
    ev('n', 'ResponseComplete', 'get', undefined, t(7), { code: 200 }),
  ];

  it('counts each request of the user once, by verb, resource and code', () => {
    const c = countRequests(events, { user: OP });
    assert.equal(c.total, 6);
    assert.deepEqual(c.byVerb, { patch: 2, watch: 2, update: 1, get: 1 });
    assert.deepEqual(c.byVerbResource, {
      'patch streamingtrainingjobs/status': 1,
      'watch pods': 1,
      'watch jobs': 1,
      'patch jobs': 1,
      'update leases': 1,
      'get (non-resource)': 1,
    });
    assert.deepEqual(c.byCode, { '200': 4, open: 1, '409': 1 });
  });

  it('keeps only the window [from, to) and drops excluded resources', () => {
    const c = countRequests(events, {
      user: OP,
      fromMs: auditTimeMs(t(2)),
      toMs: auditTimeMs(t(5)),
      excludeResources: ['pods'],
    });
    assert.deepEqual(c.byVerbResource, { 'watch jobs': 1, 'patch jobs': 1 });
    assert.equal(countRequests(events, { user: OP, excludeResources: ['leases'] }).total, 5);
  });

  it('lease renewals: successful updates only, and the largest gap ending inside the window', () => {
    const renewals = [
      ev('r1', 'ResponseComplete', 'update', 'leases', t(1), { code: 200 }),
      ev('r2', 'ResponseComplete', 'update', 'leases', t(3), { code: 200 }),
      ev('g', 'ResponseComplete', 'get', 'leases', t(5), { code: 200 }),
      ev('r3', 'ResponseComplete', 'update', 'leases', t(9), { code: 200 }),
      ev('c', 'ResponseComplete', 'update', 'leases', t(10), { code: 409 }),
      ev('o', 'ResponseComplete', 'update', 'leases', t(11), { code: 200, user: 'other' }),
      ev('r4', 'ResponseStarted', 'update', 'leases', t(12)),
      ev('r4', 'ResponseComplete', 'update', 'leases', t(12), { code: 200 }),
      ev('r5', 'ResponseComplete', 'update', 'leases', t(20), { code: 200 }),
    ];
    assert.deepEqual(
      leaseRenewals(renewals, { user: OP, fromMs: auditTimeMs(t(2)), toMs: auditTimeMs(t(13)) }),
      {
        renewals: 3,
        maxGapMs: 6000,
        maxGapEndMs: auditTimeMs(t(9)),
        maxOperatorDelayMs: 4000,
      },
    );
    // The renewal before the window opens the first gap.
    assert.deepEqual(
      leaseRenewals(renewals, { user: OP, fromMs: auditTimeMs(t(10)), toMs: auditTimeMs(t(13)) }),
      {
        renewals: 1,
        maxGapMs: 3000,
        maxGapEndMs: auditTimeMs(t(12)),
        maxOperatorDelayMs: 1000,
      },
    );
    // The create that took the Lease opens the first renewal's gap.
    const acquired = [
      ev('a', 'ResponseComplete', 'create', 'leases', t(1), { code: 201 }),
      ...renewals.slice(1),
    ];
    assert.equal(
      leaseRenewals(acquired, { user: OP, fromMs: auditTimeMs(t(1)), toMs: auditTimeMs(t(4)) }).maxGapMs,
      2000,
    );
    assert.deepEqual(leaseRenewals([], { user: OP, fromMs: 0, toMs: 1 }), {
      renewals: 0,
      maxGapMs: 0,
      maxGapEndMs: 0,
      maxOperatorDelayMs: 0,
    });
  });

  it("lease renewals: a gap less the retry period and the API server's answers is the operator's delay", () => {
    const at = (ms: number) => new Date(Date.UTC(2026, 10, 28, 12, 0, 0, ms)).toISOString();
    const timed = (e: AuditEvent, doneMs: number): AuditEvent => ({ ...e, stageTimestamp: at(doneMs) });
    const events = [
      timed(ev('a', 'ResponseComplete', 'update', 'leases', at(0), { code: 200 }), 500),
      // The read after the 2 s wait took the API server 1.5 s; the write went out 100 ms after it.
      timed(ev('g', 'ResponseComplete', 'get', 'leases', at(2600), { code: 200 }), 4100),
      timed(ev('b', 'ResponseComplete', 'update', 'leases', at(4200), { code: 200 }), 4300),
    ];
    assert.deepEqual(
      leaseRenewals(events, { user: OP, fromMs: auditTimeMs(at(0)), toMs: auditTimeMs(at(9000)) }),
      {
        renewals: 2,
        maxGapMs: 4200,
        maxGapEndMs: auditTimeMs(at(4200)),
        maxOperatorDelayMs: 200,
      },
    );
  });

  it('reads microsecond timestamps to the millisecond', () => {
    assert.equal(auditTimeMs('2026-11-28T12:00:01.123456Z'), Date.UTC(2026, 10, 28, 12, 0, 1, 123));
    assert.throws(() => auditTimeMs('yesterday'), /not RFC 3339/);
  });

  it('skips a torn last line but refuses garbage elsewhere', () => {
    const good = JSON.stringify(events[0]);
    assert.equal(parseAuditLines(`${good}\n${good}\n{"kind":"Ev`).length, 2);
    assert.throws(() => parseAuditLines(`{"kind":"Ev\n${good}\n`), /line 1 is not JSON/);
  });

  it('divides by the number of jobs', () => {
    assert.deepEqual(perJob(countRequests(events, { user: OP }), 4), {
      total: 1.5,
      byVerb: { patch: 0.5, watch: 0.5, update: 0.25, get: 0.25 },
    });
  });

  it('writes a policy that records only the given users, without request stage events', () => {
    const p = parse(auditPolicyYaml([OP]));
    assert.equal(p.kind, 'Policy');
    assert.deepEqual(p.omitStages, ['RequestReceived']);
    assert.deepEqual(p.rules, [{ level: 'Metadata', users: [OP] }, { level: 'None' }]);
  });
});

describe('process memory and metrics', () => {
  it('reads VmRSS and VmHWM from /proc/<pid>/status', () => {
    const status = 'Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t  331000 kB\nVmRSS:\t  327000 kB\n';
    assert.deepEqual(parseProcStatus(status), { rssBytes: 327000 * 1024, peakRssBytes: 331000 * 1024 });
    assert.throws(() => parseProcStatus('Name:\tzombie\n'), /no VmRSS/);
  });

  it('reads user + system CPU time from /proc/<pid>/stat, even with spaces in the name', () => {
    const stat = '4242 (node (main) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 11 0 900';
    assert.equal(parseProcStatCpuSeconds(stat), 12.9);
    assert.throws(() => parseProcStatCpuSeconds('4242 (node) S 1'), /no utime/);
  });

  it('sums the samples of a metric whose labels match', () => {
    const text = [
      '# HELP controller_runtime_reconcile_total x',
      'controller_runtime_reconcile_total{controller="stj",result="success"} 20',
      'controller_runtime_reconcile_total{controller="stj",result="requeue_after"} 4',
      'controller_runtime_reconcile_total_other 99',
      'leader_election_master_status{name="tilestream-operator"} 1',
    ].join('\n');
    assert.equal(sumMetric(text, 'controller_runtime_reconcile_total'), 24);
    assert.equal(sumMetric(text, 'controller_runtime_reconcile_total', { result: 'success' }), 20);
    assert.equal(sumMetric(text, 'controller_runtime_reconcile_errors_total'), 0);
    assert.equal(sumMetric(text, 'leader_election_master_status'), 1);
  });

  it('takes nearest-rank percentiles', () => {
    const xs = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    assert.equal(percentile(xs, 50), 5);
    assert.equal(percentile(xs, 95), 10);
    assert.equal(percentile([7], 95), 7);
    assert.throws(() => percentile([], 50), /empty/);
  });
});
