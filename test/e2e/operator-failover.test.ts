// The operator's own failures on a real control plane (test/controlplane; skipped with the reason
// when the binaries cannot be had). Unlike e2e.test.ts the operator runs as a separate
// `tilestream operator` process (test/e2e/operator-process.ts) with the service account of exactly
// operator/rbac.ts's rules, so it can be SIGKILLed as a crash would kill it: no drain, no lease release.
// Scenarios: (3) the operator killed mid-job and restarted → the running trainer Job is adopted, not
// duplicated, and the status carries on; (4) two replicas on one Lease → one leader; the leader killed
// → the standby takes the Lease within the lease time and reconciles a job applied after the kill.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { KubeClient } from '../../operator/kube/client.ts';
import { LEADER_ELECTION_DEFAULTS } from '../../operator/leader.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import type { NodeAgent } from '../controlplane/node-agent.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { type OperatorProcess, OperatorProcesses } from './operator-process.ts';
import { conditionOf, STEPS_PER_EPOCH, tinyJob } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const started = await startControlPlaneOrSkip();
if (started.skip) process.stderr.write(`SKIP operator failover scenarios: ${started.skip}\n`);

/** The operator's account and its Leases. */
const OPERATOR_NS = 'failover';
/** Each scenario's operators watch only their own namespace, so they never reconcile each other's jobs. */
const RESTART_NS = 'restart';
const HANDOVER_NS = 'handover';
const IMAGE = 'tilestream:e2e';
const work = mkdtempSync(join(tmpdir(), 'tilestream-failover-'));
const dataDir = join(work, 'data');
const TRAINER_LABEL = 'tilestream.io/job-name';
/** The trainer's status-report throttle (trainer/train/run.ts: createStatusReporter(…, 10_000, …)). */
const TRAINER_REPORT_INTERVAL_MS = 10_000;

interface Condition {
  type: string;
  status: string;
  reason: string;
  observedGeneration?: number;
}
interface Stj {
  metadata: { generation?: number };
  status?: {
    observedGeneration?: number;
    phase?: string;
    plan?: Record<string, unknown>;
    startTime?: string;
    progress?: { step?: number; fraction?: number };
    conditions?: Condition[];
    restarts?: number;
  };
}
interface List<T = Record<string, unknown>> {
  items: ({ metadata: { name: string; ownerReferences?: { name: string; controller?: boolean }[] } } & T)[];
}
interface Lease {
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    leaseTransitions?: number;
    acquireTime?: string;
    renewTime?: string;
  };
}

/** The tiny synthetic job on the operator's trainer image, kept an hour after it finishes. */
const job = (namespace: string, name: string, epochs: number) =>
  tinyJob(name, {
    namespace,
    dataDir,
    checkpointsDir: join(work, 'checkpoints', namespace, name),
    epochs,
    runPolicy: { ttlSecondsAfterFinished: 3600 },
  });

/** Informer warnings in an operator's log (a broken or silent watch); the operators here run long enough to show them. */
const watchWarnings = (op: OperatorProcess) =>
  readFileSync(op.process.logPath, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"informer"') && l.includes('"level":"warn"'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('operator failover: a separate operator process killed, restarted and replicated', {
  skip: started.skip,
  timeout: 240_000,
  // The scenarios use their own namespaces, operators and Leases; side by side, the lease wait of (4)
  // and the trainer run of (3) overlap instead of adding up.
  concurrency: true,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const operators = new OperatorProcesses();
  let kubeconfigPath: string;
  let cluster: TrainingCluster | undefined;
  let agent: NodeAgent;

  const kubectl = async (args: string[], input?: string) => {
    const r = await plane.kubectl(args, input === undefined ? {} : { input });
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], stringify(manifest));
  const get = (ns: string, name: string) =>
    admin.request<Stj>('GET', `/apis/tilestream.io/v1alpha1/namespaces/${ns}/streamingtrainingjobs/${name}`);
  const lease = (name: string) =>
    admin.request<Lease>('GET', `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NS}/leases/${name}`);
  /** Names of one kind of child (by the label every child carries) in `ns`. */
  const children = async (path: string, name: string) =>
    (
      await admin.request<List>(
        'GET',
        `${path}?labelSelector=${encodeURIComponent(`${TRAINER_LABEL}=${name}`)}`,
      )
    ).items.map((i) => i.metadata.name);
  const podsOf = async (ns: string, name: string) =>
    (
      await admin.request<List<{ status?: { phase?: string } }>>(
        'GET',
        `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(`${TRAINER_LABEL}=${name}`)}`,
      )
    ).items;
  const until = async (
    ns: string,
    name: string,
    what: string,
    ok: (s: Stj) => boolean,
    diagnose: () => string,
    timeoutMs = 90_000,
  ) => {
    try {
      return await waitFor(
        `${ns}/${name}: ${what}`,
        async () => {
          const s = await get(ns, name);
          if (conditionOf(s, 'Failed')?.status === 'True')
            throw new Error(`${name} failed: ${JSON.stringify(s.status)}`);
          return ok(s) ? s : undefined;
        },
        { timeoutMs, intervalMs: 250 },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${diagnose()}`);
    }
  };
  const start = (identity: string, leaseName: string, namespace: string) =>
    operators.start({
      identity,
      kubeconfigPath,
      leaseNamespace: OPERATOR_NS,
      leaseName,
      namespaces: [namespace],
      trainerImage: IMAGE,
    });
  const logs = (...ops: (OperatorProcess | undefined)[]) =>
    ops.flatMap((o) => (o ? [`--- operator ${o.identity}:\n${o.logTail()}`] : [])).join('\n');

  before(async () => {
    cluster = await startTrainingCluster(plane, dataDir, { [IMAGE]: [process.execPath, POD_TRAINER] });
    agent = cluster.agent;
    for (const ns of [OPERATOR_NS, RESTART_NS, HANDOVER_NS]) await plane.createNamespace(ns);
    ({ kubeconfigPath } = await createOperatorAccount(plane, OPERATOR_NS, { prefix: 'failover' }));
  });

  after(async () => {
    // Even after a failed assertion: no operator process outlives the suite.
    await operators.stopAll();
    await cluster?.stop();
    await plane?.stop();
    rmSync(work, { recursive: true, force: true });
    operators.cleanUp();
  });

  it('(3) restarted after a SIGKILL mid-job: the running Job is adopted, not duplicated, and the status carries on', async (t) => {
    const name = 'survivor';
    const EPOCHS = 8;
    const STEPS = EPOCHS * STEPS_PER_EPOCH;
    const first = await start('restart-0', 'restart', RESTART_NS);
    let second: OperatorProcess | undefined;
    const diagnose = () => logs(first, second);
    await apply(job(RESTART_NS, name, EPOCHS));
    // Mid-run: the trainer has written a checkpoint at step ≥ 2 (so its first status report is pending).
    const ckptDir = join(work, 'checkpoints', RESTART_NS, name);
    await waitFor(
      `${name}: a checkpoint at step ≥ 2`,
      async () => readdirSync(ckptDir).some((f) => Number(/^ckpt-(\d+)\.tsckpt$/.exec(f)?.[1]) >= 2),
      { timeoutMs: 60_000, intervalMs: 100 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${diagnose()}`);
    });
    const running = await until(
      RESTART_NS,
      name,
      'phase Running',
      (s) => s.status?.phase === 'Running',
      diagnose,
    );
    assert.equal(running.metadata.generation, 1);
    const [pod, ...others] = await podsOf(RESTART_NS, name);
    assert.ok(pod && others.length === 0, 'one trainer pod');
    // Freeze the trainer (SIGSTOP to its process group) so the job is certainly still running while
    // no operator runs and when the successor starts, however loaded the machine is.
    assert.equal(agent.killContainer(RESTART_NS, pod.metadata.name, 'trainer', 'SIGSTOP'), true);
    const frozenAt = Date.now();

    // A crash: no drain, no lease release.
    assert.equal(await first.crash(), 128 + 9);
    // While no operator runs, the spec changes (a mutable field): generation 2, for the successor to observe.
    await kubectl([
      '-n',
      RESTART_NS,
      'patch',
      `streamingtrainingjobs.tilestream.io/${name}`,
      '--type=merge',
      '-p',
      JSON.stringify({ spec: { runPolicy: { ttlSecondsAfterFinished: 7200 } } }),
    ]);

    // Sample the status from now to the end: it must never lose or rewind what it had.
    const samples: Stj[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push(await get(RESTART_NS, name));
        await sleep(200);
      }
    })();
    try {
      // The same identity (the pod's container restarted): it holds the unreleased Lease and renews at once.
      const restartedAt = Date.now();
      second = await start('restart-0', 'restart', RESTART_NS);
      const listening = Date.now() - restartedAt;
      const observed = await until(
        RESTART_NS,
        name,
        'observedGeneration 2',
        (s) => s.status?.observedGeneration === 2,
        diagnose,
        30_000,
      );
      t.diagnostic(
        `the restarted operator listened after ${listening} ms and observed generation 2 after ${Date.now() - restartedAt} ms`,
      );
      assert.equal(observed.status?.phase, 'Running', 'the restarted operator found the job still running');
      assert.deepEqual(observed.status?.plan, running.status?.plan);
      // Frozen longer than the trainer's report interval, its pending report is overdue when it resumes:
      // the first progress report then lands mid-run, under the new operator.
      await sleep(Math.max(0, frozenAt + TRAINER_REPORT_INTERVAL_MS - Date.now()));
      assert.equal(agent.killContainer(RESTART_NS, pod.metadata.name, 'trainer', 'SIGCONT'), true);
      const done = await until(
        RESTART_NS,
        name,
        'Succeeded',
        (s) => s.status?.phase === 'Succeeded',
        diagnose,
      );
      sampling = false;
      await sampler;

      // Exactly the children the operator builds for one attempt, and only the first operator's Job.
      assert.deepEqual(await children(`/apis/batch/v1/namespaces/${RESTART_NS}/jobs`, name), [`${name}-0`]);
      assert.deepEqual(await children(`/api/v1/namespaces/${RESTART_NS}/configmaps`, name), [`${name}-job`]);
      assert.deepEqual(await children(`/api/v1/namespaces/${RESTART_NS}/serviceaccounts`, name), [
        `${name}-trainer`,
      ]);
      const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${RESTART_NS}`;
      assert.deepEqual(await children(`${rbac}/roles`, name), [`${name}-trainer`]);
      assert.deepEqual(await children(`${rbac}/rolebindings`, name), [`${name}-trainer`]);
      const trainerJob = await admin.request<{ status?: { succeeded?: number; failed?: number } }>(
        'GET',
        `/apis/batch/v1/namespaces/${RESTART_NS}/jobs/${name}-0`,
      );
      const pods = await podsOf(RESTART_NS, name);
      assert.equal(pods.length, (trainerJob.status?.succeeded ?? 0) + (trainerJob.status?.failed ?? 0));
      assert.deepEqual(
        pods.map((p) => [p.metadata.ownerReferences?.find((o) => o.controller)?.name, p.status?.phase]),
        [[`${name}-0`, 'Succeeded']],
      );
      const secondLog = readFileSync(second.process.logPath, 'utf8');
      assert.ok(
        !secondLog.includes('created trainer Job'),
        `the restarted operator created a Job:\n${secondLog}`,
      );

      // The status carries on: same plan and start, no restarts, every condition at generation 2.
      assert.equal(done.status?.restarts, 0);
      assert.deepEqual(done.status?.plan, running.status?.plan);
      assert.equal(done.status?.startTime, running.status?.startTime);
      assert.equal(done.status?.observedGeneration, 2);
      for (const c of done.status?.conditions ?? [])
        assert.equal(
          c.observedGeneration,
          2,
          `condition ${c.type} observed generation ${c.observedGeneration}`,
        );
      assert.equal(conditionOf(done, 'Succeeded')?.reason, 'TrainingCompleted');
      assert.equal(done.status?.progress?.step, STEPS);
      assert.equal(done.status?.progress?.fraction, 1);
      // The trainer's progress reports went on under the new operator and were never wiped or rewound.
      const steps = samples.map((s) => s.status?.progress?.step);
      const firstSeen = steps.findIndex((s) => s !== undefined);
      for (let i = Math.max(firstSeen, 0) + 1; i < steps.length; i++) {
        assert.ok(
          (steps[i] ?? -1) >= (steps[i - 1] ?? 0),
          `progress went from ${steps[i - 1]} to ${steps[i]}`,
        );
      }
      const distinct = [...new Set(steps.filter((s) => s !== undefined))];
      assert.ok(
        distinct.some((s) => s > 0 && s < STEPS),
        `a mid-run progress report under the new operator (saw ${distinct.join(', ')})`,
      );
      t.diagnostic(`status.progress.step under the restarted operator: ${distinct.join(' → ')} of ${STEPS}`);
      for (const s of samples) if (s.status?.plan) assert.deepEqual(s.status.plan, running.status?.plan);
      assert.deepEqual(watchWarnings(second), []);
      assert.equal(await second.stop(), 0);
    } finally {
      sampling = false;
      await sampler;
    }
  });

  it('(4) two replicas elect one leader; the leader SIGKILLed → the standby holds the Lease within the lease time and reconciles', async (t) => {
    const LEASE = 'handover';
    const { leaseDurationMs, retryPeriodMs, retryJitter } = LEADER_ELECTION_DEFAULTS;
    const maxRetryMs = retryPeriodMs * (1 + retryJitter);
    // The standby sees the leader's last renewal up to one (jittered) retry after it was written, waits
    // a lease duration from then on its own clock, and notices the expiry up to one retry later; 1 s
    // more covers the API requests of those two tries under load.
    const upperMs = leaseDurationMs + 2 * maxRetryMs + 1000;
    const ids = ['ha-a', 'ha-b'];
    const replicas: OperatorProcess[] = await Promise.all(ids.map((id) => start(id, LEASE, HANDOVER_NS)));
    const diagnose = () => logs(...replicas);
    const byId = (id: string) => replicas.find((r) => r.identity === id) as OperatorProcess;

    /** The holder when it is one of the replicas and exactly it reports leader_election_master_status 1. */
    const soleLeader = async () => {
      const holder = (await lease(LEASE)).spec?.holderIdentity ?? '';
      const gauges = await Promise.all(replicas.map((r) => r.leaderGauge()));
      const expected = replicas.map((r) => (r.identity === holder ? 1 : 0));
      return ids.includes(holder) && gauges.every((g, i) => g === expected[i]) ? holder : undefined;
    };
    let leaderId: string;
    try {
      leaderId = await waitFor('one leader among two replicas', soleLeader, { timeoutMs: 30_000 });
      // The standby keeps campaigning every retry period; it must keep losing.
      const stableUntil = Date.now() + 2 * maxRetryMs;
      while (Date.now() < stableUntil) {
        assert.equal(await soleLeader(), leaderId);
        await sleep(250);
      }
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${diagnose()}`);
    }
    const leader = byId(leaderId);
    const standby = replicas.find((r) => r !== leader) as OperatorProcess;
    const held = await lease(LEASE);
    assert.equal(
      held.spec?.leaseDurationSeconds,
      leaseDurationMs / 1000,
      'the Lease carries the default duration',
    );

    // The leader reconciles, the standby does not.
    await apply(job(HANDOVER_NS, 'before-kill', 1));
    await until(
      HANDOVER_NS,
      'before-kill',
      'Planned',
      (s) => conditionOf(s, 'Planned')?.status === 'True',
      diagnose,
      30_000,
    );
    assert.match(readFileSync(leader.process.logPath, 'utf8'), /created trainer Job before-kill-0/);

    // Its renewal as last read before the kill (it may renew once more before the signal lands: later, not earlier).
    const lastRenewal = Date.parse((await lease(LEASE)).spec?.renewTime ?? '');
    const killedAt = Date.now();
    assert.equal(await leader.crash(), 128 + 9);
    await apply(job(HANDOVER_NS, 'after-kill', 1));
    const taken = await waitFor(
      `the Lease held by ${standby.identity}`,
      async () => {
        const l = await lease(LEASE);
        return l.spec?.holderIdentity === standby.identity ? l : undefined;
      },
      { timeoutMs: upperMs + 10_000, intervalMs: 100 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${diagnose()}`);
    });
    // acquireTime is the standby's clock at the take-over: the same host's clock as killedAt.
    const acquiredAt = Date.parse(taken.spec?.acquireTime ?? '');
    const handoverMs = acquiredAt - killedAt;
    t.diagnostic(
      `hand-over ${(handoverMs / 1000).toFixed(1)} s after SIGKILL, seen by this test after ${((Date.now() - killedAt) / 1000).toFixed(1)} s (bound ${upperMs / 1000} s: lease ${leaseDurationMs / 1000} s + 2 × retry ${retryPeriodMs / 1000} s × ${1 + retryJitter} + 1 s)`,
    );
    assert.ok(handoverMs <= upperMs, `hand-over took ${handoverMs} ms, more than ${upperMs} ms`);
    // Never before a whole lease duration after the leader's last renewal: that would be two leaders.
    assert.ok(
      acquiredAt - lastRenewal >= leaseDurationMs,
      `taken over ${acquiredAt - lastRenewal} ms after the last renewal, within the ${leaseDurationMs} ms lease`,
    );
    assert.equal(taken.spec?.leaseTransitions, (held.spec?.leaseTransitions ?? 0) + 1);
    await waitFor(
      `${standby.identity} reports leader_election_master_status 1`,
      async () => (await standby.leaderGauge()) === 1,
      {
        timeoutMs: 10_000,
      },
    );

    // The new leader reconciles: the job applied while nobody led runs, and so does the one it inherited.
    const planned = await until(
      HANDOVER_NS,
      'after-kill',
      'Planned',
      (s) => conditionOf(s, 'Planned')?.status === 'True',
      diagnose,
      30_000,
    );
    assert.equal(planned.status?.observedGeneration, 1);
    assert.match(readFileSync(standby.process.logPath, 'utf8'), /created trainer Job after-kill-0/);
    for (const name of ['before-kill', 'after-kill']) {
      const done = await until(
        HANDOVER_NS,
        name,
        'Succeeded',
        (s) => s.status?.phase === 'Succeeded',
        diagnose,
      );
      assert.equal(done.status?.progress?.step, STEPS_PER_EPOCH);
      assert.deepEqual(await children(`/apis/batch/v1/namespaces/${HANDOVER_NS}/jobs`, name), [`${name}-0`]);
    }

    assert.deepEqual(watchWarnings(standby), []);
    // A graceful stop releases the Lease at once (empty holder), so a successor need not wait.
    assert.equal(await standby.stop(), 0);
    assert.equal((await lease(LEASE)).spec?.holderIdentity, '');
  });
});
