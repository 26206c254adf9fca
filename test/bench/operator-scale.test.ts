// The operator scale benchmark at a small N on a real control plane (skipped with the reason when
// the binaries cannot be had): every job gets Planned, every figure of the JSON is there and sane.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  JOB_SHAPES,
  parseScaleArgs,
  runOperatorScale,
  type ScaleResult,
  SkipError,
} from './operator-scale.ts';

const JOBS = 20;

describe('operator scale benchmark', { timeout: 180_000 }, () => {
  it(`plans ${JOBS} jobs created at once, then re-plans them all after an OOM storm, and reports requests, memory, timings and event-loop stalls`, async (t) => {
    let r: ScaleResult;
    try {
      r = await runOperatorScale({
        jobs: JOBS,
        nodesPerClass: 1,
        oomStorm: true,
        timeoutMs: 90_000,
        progress: (l) => t.diagnostic(l),
      });
    } catch (e) {
      if (e instanceof SkipError) return t.skip(e.message);
      throw e;
    }
    t.diagnostic(JSON.stringify(r));
    // The JSON carries every figure as a finite number (NaN and Infinity would not survive).
    assert.deepEqual(JSON.parse(JSON.stringify(r)), r);

    assert.equal(r.plannedTrue, JOBS);
    assert.ok(r.secondsToFirstPlanned > 0 && r.secondsToFirstPlanned <= r.secondsToAllPlanned);
    assert.ok(r.createToPlannedSeconds.p50 <= r.createToPlannedSeconds.p95);
    assert.ok(r.createToPlannedSeconds.p95 <= r.createToPlannedSeconds.max);
    // Every shape meets four GPU classes; each gets a plan of its own.
    assert.ok(Object.keys(r.plans).length >= JOB_SHAPES.length, JSON.stringify(r.plans));
    assert.equal(
      Object.values(r.plans).reduce((a, b) => a + b, 0),
      JOBS,
    );

    const perJob = r.apiRequests.perJob.total;
    assert.ok(Number.isFinite(perJob) && perJob > 0, `requests per job ${perJob}`);
    // At least the five children applied and one status write per job, all by server-side apply.
    assert.ok((r.apiRequests.perJob.byVerb.patch ?? 0) >= 6, JSON.stringify(r.apiRequests.perJob));
    assert.ok(r.apiRequests.startup > 0 && r.apiRequests.leaderLease >= 0);
    const serverErrors = Object.keys(r.apiRequests.settled.byCode).filter((c) => c.startsWith('5'));
    assert.deepEqual(serverErrors, [], JSON.stringify(r.apiRequests.settled.byCode));

    assert.ok(r.operator.peakRssBytes > 0);
    assert.ok(r.operator.peakRssMiB >= r.operator.rssMiBAtEnd && r.operator.rssMiBAtEnd > 0);
    assert.equal(r.operator.reconcileErrors, 0);
    assert.ok(r.operator.reconciles >= JOBS);
    assert.equal(r.operator.workers, 4, "the operator's default --workers");
    assert.ok(r.operator.meanReconcileSeconds > 0 && r.operator.meanQueueWaitSeconds >= 0);
    assert.ok(r.operator.cpuSeconds > 0, 'the operator used CPU while planning');
    assert.equal(r.operator.exitCode, 0, 'the operator exits 0 on SIGTERM');
    // The leader renews every 2 s; a gap past the 10 s renew deadline would have ended its term.
    assert.ok(r.operator.leaseRenewals > 0, 'the leader renewed its Lease while the jobs were planned');
    assert.ok(
      r.operator.maxLeaseRenewalGapSeconds >= 2 && r.operator.maxLeaseRenewalGapSeconds < 10,
      `lease renewal gap ${r.operator.maxLeaseRenewalGapSeconds} s`,
    );
    assert.ok(r.operator.healthzAnswers > 0 && r.operator.healthzP99Ms <= r.operator.maxHealthzMs);
    assert.ok(
      r.operator.maxLeaseOperatorDelaySeconds >= 0 &&
        r.operator.maxLeaseOperatorDelaySeconds <= r.operator.maxLeaseRenewalGapSeconds,
    );
    assert.ok(r.operator.healthzOver1s <= r.operator.healthzAnswers);

    // The storm: every trainer exited 3, every job is Planned again with a smaller tile.
    const storm = r.oomStorm;
    assert.ok(storm, 'the storm ran');
    assert.equal(storm.pods, JOBS);
    assert.equal(storm.replanned, JOBS, JSON.stringify(storm));
    assert.equal(storm.failed, 0);
    assert.equal(storm.reconcileErrors, 0);
    assert.ok(storm.reconciles >= JOBS);
    assert.ok(storm.leaseRenewals > 0 && storm.maxLeaseRenewalGapSeconds < 10, JSON.stringify(storm));
    assert.ok(storm.healthzAnswers > 0 && storm.healthzP99Ms <= storm.maxHealthzMs);
    const tile = (plans: Record<string, number>) =>
      Object.entries(plans).map(([k, n]) => [Number(k.split(' tile ')[1]), n] as const);
    const before = Math.max(...tile(r.plans).map(([px]) => px));
    assert.ok(Math.max(...tile(storm.plans).map(([px]) => px)) < before, JSON.stringify(storm.plans));
    // Pods never run (no node agent), but each planned job has its trainer Job.
    assert.equal(r.children.batchJobs, JOBS);
    assert.equal(r.children.podsRunning, 0);
  });
});

describe('bench arguments', () => {
  it('reads numbers and --json, and refuses nonsense with the flag named', () => {
    assert.deepEqual(parseScaleArgs(['--jobs', '500', '--json', '--timeout', '30', '--workers', '16']), {
      json: true,
      jobs: 500,
      timeoutMs: 30_000,
      workers: 16,
    });
    assert.deepEqual(parseScaleArgs([]), { json: false });
    assert.deepEqual(parseScaleArgs(['--oom-storm']), { json: false, oomStorm: true });
    assert.throws(() => parseScaleArgs(['--jobs', '0']), /--jobs must be a whole number of at least 1/);
    assert.throws(() => parseScaleArgs(['--concurrency', 'x']), /--concurrency/);
  });
});
