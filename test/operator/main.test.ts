// The whole operator process against a scripted API server: caches sync from list+watch, the
// candidate takes the Lease, the job is reconciled, /readyz and /metrics answer, and a stop drains
// and releases the Lease. Plus the command-line surface.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Command } from 'commander';
import nock from 'nock';
import { registerOperatorCommand } from '../../operator/cli.ts';
import { PlannerPool, PoolClosedError } from '../../operator/cluster/planner-pool.ts';
import { ConfigError, operatorConfig } from '../../operator/config.ts';
import { ManualClock } from '../../operator/controller/clock.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { makeNode, makeStj } from './builders.ts';
import { api, eventually, never, type TestWatch, testKubeConfig, watchStream } from './kube-fixture.ts';

const LIST = { limit: '500' };
const WATCH = (q: Record<string, string>) => q.watch === 'true';

function scriptCaches() {
  const watches: TestWatch[] = [];
  const open = () => {
    const w = watchStream();
    watches.push(w);
    return w.body;
  };
  const stj = makeStj().image(16384).obj();
  const scope = api()
    .get('/apis/tilestream.io/v1alpha1/streamingtrainingjobs')
    .query(LIST)
    .reply(200, { metadata: { resourceVersion: '100' }, items: [stj] })
    .get('/apis/tilestream.io/v1alpha1/streamingtrainingjobs')
    .query(WATCH)
    .reply(200, open)
    .get('/apis/batch/v1/jobs')
    .query({ ...LIST, labelSelector: 'app.kubernetes.io/managed-by=tilestream-operator' })
    .reply(200, { metadata: { resourceVersion: '100' }, items: [] })
    .get('/apis/batch/v1/jobs')
    .query(WATCH)
    .reply(200, open)
    .get('/api/v1/pods')
    .query({ ...LIST, labelSelector: 'app.kubernetes.io/managed-by=tilestream-operator' })
    .reply(200, { metadata: { resourceVersion: '100' }, items: [] })
    .get('/api/v1/pods')
    .query(WATCH)
    .reply(200, open)
    .get('/api/v1/nodes')
    .query(LIST)
    .reply(200, {
      metadata: { resourceVersion: '100' },
      items: [makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj()],
    })
    .get('/api/v1/nodes')
    .query(WATCH)
    .reply(200, open);
  return { scope, watches };
}

describe('the operator process', () => {
  beforeEach(() => {
    nock.disableNetConnect();
    nock.enableNetConnect('127.0.0.1');
  });
  afterEach(() => nock.cleanAll());

  it('syncs its caches, leads, reconciles, serves probes and metrics, and on stop drains and releases the Lease', async () => {
    const caches = scriptCaches();
    const leasePath = '/apis/coordination.k8s.io/v1/namespaces/ops/leases/tilestream-operator';
    const lease = api()
      .get(leasePath)
      .reply(404, { kind: 'Status', code: 404, reason: 'NotFound' })
      .post('/apis/coordination.k8s.io/v1/namespaces/ops/leases')
      .reply(201, {});
    const work = api()
      .patch(/\/(configmaps|serviceaccounts|roles|rolebindings|jobs)\//)
      .query(true)
      .times(5)
      .reply(200, {})
      .patch('/apis/tilestream.io/v1alpha1/namespaces/team/streamingtrainingjobs/demo/status')
      .query(true)
      .reply(200, {})
      .post('/api/v1/namespaces/team/events')
      .reply(201, {});
    const config = operatorConfig({
      leaseNamespace: 'ops',
      identity: 'op-0',
      metricsPort: 0,
      healthPort: 0,
      trainerImage: 'registry.local/tilestream:test',
    });
    const stop = new AbortController();
    let ports = { healthPort: 0, metricsPort: 0 };
    const planner = new PlannerPool();
    const exit = runOperator(config, {
      signal: stop.signal,
      kubeConfig: testKubeConfig(),
      clock: new ManualClock(),
      log: silentLogger,
      version: '9.9.9',
      handleSignals: false,
      planner,
      onListening: (p) => {
        ports = p;
      },
    });
    await eventually(() => work.isDone(), 'the job reconciled', 10_000);
    assert.ok(caches.scope.isDone());
    assert.ok(lease.isDone());
    const ready = await fetch(`http://127.0.0.1:${ports.healthPort}/readyz?verbose`);
    assert.equal(ready.status, 200);
    assert.match(await ready.text(), /\[\+\]informer streamingtrainingjobs ok/);
    assert.equal((await fetch(`http://127.0.0.1:${ports.healthPort}/healthz`)).status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${ports.metricsPort}/metrics`)).text();
    for (const name of [
      'controller_runtime_reconcile_total{controller="streamingtrainingjob",result="requeue_after"} 1',
      'workqueue_depth{name="streamingtrainingjob",controller="streamingtrainingjob"} 0',
      'leader_election_master_status{name="tilestream-operator"} 1',
      'tilestream_gpu_class_nodes{gpu_class="a100-sxm4-40gb-40960mib",gpu_product="A100-SXM4-40GB"} 1',
      'tilestream_gpu_class_allocatable_gpus{gpu_class="a100-sxm4-40gb-40960mib",gpu_product="A100-SXM4-40GB"} 8',
      'tilestream_jobs{namespace="team",phase="Pending"} 1',
      'tilestream_operator_build_info{version="9.9.9"} 1',
      'tilestream_informer_relists_total{resource="nodes",reason="initial"} 1',
    ]) {
      assert.ok(metrics.includes(name), `metrics lack ${name}`);
    }
    assert.equal(
      (await fetch(`http://127.0.0.1:${ports.metricsPort}/healthz`)).status,
      404,
      'separate ports',
    );
    const release = api()
      .get(leasePath)
      .reply(200, {
        metadata: { name: 'tilestream-operator', namespace: 'ops', resourceVersion: '5' },
        spec: { holderIdentity: 'op-0', leaseTransitions: 0 },
      })
      .put(leasePath, (b: { spec: { holderIdentity: string } }) => b.spec.holderIdentity === '')
      .reply(200, {});
    stop.abort();
    assert.equal(await exit, 0);
    assert.ok(release.isDone(), 'the lease was released');
    // The job's tile was planned on a planner thread, and stopping ended the threads.
    assert.deepEqual(planner.stats, { planned: 1, threads: 0, queued: 0 });
    const spec = makeStj().obj().spec;
    await assert.rejects(planner.run({ spec, budgetBytes: 2 ** 30, backend: 'tensorflow' }), PoolClosedError);
  });

  it('losing the lease to a hung API server aborts the reconcile in flight and exits 1 at the renew deadline', async () => {
    scriptCaches();
    const leasePath = '/apis/coordination.k8s.io/v1/namespaces/ops/leases/tilestream-operator';
    api()
      .get(leasePath)
      .reply(404, { kind: 'Status', code: 404, reason: 'NotFound' })
      .post('/apis/coordination.k8s.io/v1/namespaces/ops/leases')
      .reply(201, {});
    // Then the API server stops answering: lease renewals and the reconcile's first write hang.
    const hung = { renewals: 0, writes: 0 };
    api()
      .persist()
      .get(leasePath)
      .reply((() => {
        hung.renewals++;
        return never();
      }) as never);
    api()
      .persist()
      .patch(/\/configmaps\//)
      .query(true)
      .reply((() => {
        hung.writes++;
        return never();
      }) as never);
    const config = operatorConfig({
      leaseNamespace: 'ops',
      identity: 'op-0',
      metricsPort: 0,
      healthPort: 0,
      trainerImage: 'registry.local/tilestream:test',
    });
    const clock = new ManualClock();
    const started = clock.now();
    const lines: string[] = [];
    // The clock when the leader stepped down: the exit comes a little later in real time, in which
    // the loop below keeps stepping the clock (shutdown ends the planner threads, among others).
    let steppedDownAt: number | undefined;
    const log = {
      ...silentLogger,
      info: (m: string) => lines.push(m),
      error: (m: string) => {
        if (/lost leadership/.test(m)) steppedDownAt ??= clock.now();
        lines.push(m);
      },
    };
    let exitCode: number | undefined;
    const stop = new AbortController();
    const exit = runOperator(config, {
      signal: stop.signal,
      kubeConfig: testKubeConfig(),
      clock,
      log,
      handleSignals: false,
    });
    void exit.then((code) => {
      exitCode = code;
    });
    try {
      await eventually(() => hung.writes === 1, 'the reconcile is writing', 10_000);
      // Step the lease's clock; the client's own request timeout (30 s, real time) never fires here.
      while (exitCode === undefined && clock.now() - started < 12_000) {
        clock.advance(250);
        await new Promise((r) => setTimeout(r, 5));
      }
      await eventually(() => exitCode !== undefined, 'the operator exits', 3000);
      assert.equal(exitCode, 1);
      assert.ok(hung.renewals >= 1, 'renewals were attempted');
      const at = (steppedDownAt ?? Number.NaN) - started;
      assert.ok(at >= 10_000 && at <= 10_500, `stepped down at ${at} ms; the renew deadline is 10 s`);
      assert.ok(
        lines.some((l) => /^reconcile cancelled: PATCH .*configmaps.*cancelled: lost leadership/.test(l)),
        `the write was cancelled, logged: ${lines.join(' | ')}`,
      );
    } finally {
      stop.abort();
      await exit;
    }
  });

  it('exits 2 with the reason when the GPU memory table cannot be read', async () => {
    const config = operatorConfig({
      leaderElect: false,
      gpuMemoryTable: '/nonexistent/table.yaml',
      metricsPort: 0,
      healthPort: 0,
    });
    const lines: string[] = [];
    const log = { ...silentLogger, error: (m: string) => lines.push(m) };
    assert.equal(await runOperator(config, { kubeConfig: testKubeConfig(), log, handleSignals: false }), 2);
    assert.match(lines[0] ?? '', /cannot use the GPU memory table: .*no such file/i);
  });
});

describe('operator configuration', () => {
  it('reads flags with defaults (controller-runtime ports, 15/10/2 s lease in the pod namespace)', () => {
    const c = operatorConfig(
      { namespace: ['a,b', 'c'] },
      { POD_NAMESPACE: 'ops', POD_NAME: 'op-7d9' },
      '1.2.3',
    );
    assert.deepEqual(c.namespaces, ['a', 'b', 'c']);
    assert.equal(c.leaderElection.namespace, 'ops');
    assert.match(c.leaderElection.identity, /^op-7d9_[a-z0-9]+$/);
    assert.equal(c.metricsPort, 8080);
    assert.equal(c.healthPort, 8081);
    assert.equal(c.trainer.image, 'tilestream:1.2.3');
    assert.equal(c.trainer.metricsPort, 9400);
    assert.equal(c.fieldManager, 'tilestream-operator');
    assert.equal(c.namespaces?.length, 3);
  });

  it('refuses bad settings naming the flag and the fix', () => {
    assert.throws(
      () => operatorConfig({ workers: 0 }, { POD_NAMESPACE: 'x' }),
      /--workers must be at least 1/,
    );
    assert.throws(
      () => operatorConfig({}, {}),
      (e: Error) =>
        e instanceof ConfigError && /--lease-namespace .* or pass --no-leader-elect/.test(e.message),
    );
    assert.throws(
      () => operatorConfig({ metricsPort: 70000 }, { POD_NAMESPACE: 'x' }),
      /--metrics-port must be a port number/,
    );
  });

  it('registerOperatorCommand adds `operator` with its flags and environment fallbacks', async () => {
    const program = new Command('tilestream').version('0.1.0').exitOverride();
    registerOperatorCommand(program);
    const cmd = program.commands.find((c) => c.name() === 'operator');
    assert.ok(cmd);
    const flags = cmd.options.map((o) => o.long);
    for (const f of [
      '--namespace',
      '--no-leader-elect',
      '--lease-namespace',
      '--metrics-port',
      '--health-port',
      '--trainer-image',
      '--gpu-memory-table',
      '--field-manager',
    ]) {
      assert.ok(flags.includes(f), `missing ${f}`);
    }
    assert.equal(cmd.options.find((o) => o.long === '--trainer-image')?.envVar, 'TILESTREAM_TRAINER_IMAGE');
    let err = '';
    cmd.configureOutput({ writeErr: (s) => (err += s) }).exitOverride();
    await assert.rejects(program.parseAsync(['node', 'tilestream', 'operator', '--workers', 'many']));
    assert.match(err, /expected a whole number, got 'many'/);
  });
});
