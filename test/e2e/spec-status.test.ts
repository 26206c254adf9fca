// Spec and status semantics on a real control plane (test/controlplane; skipped with the reason when
// the binaries cannot be had), with the operator (as a service account with only operator/rbac.ts's
// rules), the fake GPU classes and the node agent running the real trainer on the tiny synthetic job:
//   - the phase never goes back over a whole run (every status the watch delivers);
//   - an edit of a running job (spec.streaming.tileSize, spec.resources.memory) leaves the running
//     trainer alone and says so: observedGeneration moves, SpecApplied=False SpecChangePending names
//     the fields, a Warning Event; an edit of a suspended job is applied by a new attempt;
//   - nodeSelector and toleration keys outside Kubernetes' label syntax are refused at admission;
//   - a job whose data manifest is missing fails with reason DataNotFound, shown in the Reason column.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { operatorConfig } from '../../operator/config.ts';
import { KubeClient } from '../../operator/kube/client.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { conditionOf, type TinyJobOptions, tinyJob } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const started = await startControlPlaneOrSkip();
if (started.skip) process.stderr.write(`SKIP spec/status scenarios: ${started.skip}\n`);

const NS = 'semantics';
const work = mkdtempSync(join(tmpdir(), 'tilestream-semantics-'));
const dataDir = join(work, 'data');
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;
/** Phase order; Suspended stands beside it. */
const ORDER = ['Pending', 'Planned', 'Running', 'Succeeded', 'Failed'];

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
}
interface Stj {
  metadata: { generation?: number };
  status?: {
    restarts?: number;
    observedGeneration?: number;
    phase?: string;
    plan?: { tileSize?: number };
    conditions?: Condition[];
    progress?: { fraction?: number };
  };
}

function job(name: string, opts: Omit<TinyJobOptions, 'namespace' | 'dataDir' | 'checkpointsDir'> = {}) {
  return tinyJob(name, {
    namespace: NS,
    dataDir,
    checkpointsDir: join(work, 'checkpoints', name),
    image: 'tilestream:e2e',
    ...opts,
  });
}

describe('spec and status semantics on a real control plane', {
  skip: started.skip,
  timeout: 600_000,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  let exit: Promise<number> | undefined;
  let cluster: TrainingCluster | undefined;

  const apply = async (manifest: object) => {
    const r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(manifest) });
    assert.equal(r.code, 0, r.stderr);
  };
  const get = (name: string) => admin.request<Stj>('GET', `${STJ}/${name}`);
  const until = (name: string, what: string, ok: (s: Stj) => boolean, timeoutMs = 120_000) =>
    waitFor(
      `${name}: ${what}`,
      async () => {
        const s = await get(name);
        return ok(s) ? s : undefined;
      },
      { timeoutMs, intervalMs: 200 },
    );
  const patchSpec = (name: string, spec: object) =>
    plane.kubectl(['patch', 'stj', name, '-n', NS, '--type=merge', '-p', JSON.stringify({ spec })]);
  /** Every phase a watch delivers for one job, in order (repeats collapsed). */
  const watchPhases = (name: string) => {
    const phases: string[] = [];
    const failed: { error?: Error } = {};
    const ctl = new AbortController();
    const watching = new KubeClient(plane.kubeConfig, { timeoutMs: 300_000 })
      .stream(
        STJ,
        { watch: true, fieldSelector: `metadata.name=${name}` },
        (e) => {
          if (e.type === 'BOOKMARK' || e.type === 'ERROR') return;
          const phase = (e.object as unknown as Stj).status?.phase;
          if (phase !== undefined && phases.at(-1) !== phase) phases.push(phase);
        },
        ctl.signal,
      )
      .catch((e: Error) => {
        failed.error = e;
      });
    return {
      phases,
      stop: async () => {
        ctl.abort();
        await watching;
        if (failed.error) throw failed.error;
      },
    };
  };
  const eventsOf = async (name: string) =>
    (
      await admin.request<{
        items: { reason?: string; type?: string; note?: string; regarding?: { name?: string } }[];
      }>('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`)
    ).items.filter((e) => e.regarding?.name === name);
  const jobsOf = async (name: string) =>
    (
      await admin.request<{ items: { metadata: { name: string } }[] }>(
        'GET',
        `/apis/batch/v1/namespaces/${NS}/jobs`,
      )
    ).items
      .map((j) => j.metadata.name)
      .filter((n) => n.startsWith(`${name}-`))
      .sort();

  before(async () => {
    cluster = await startTrainingCluster(plane, dataDir, {
      'tilestream:e2e': [process.execPath, POD_TRAINER],
    });
    await plane.createNamespace(NS);
    // The CRD's storage answers 429 for a moment after it is established.
    await waitFor('the StreamingTrainingJob API', async () =>
      admin.request('GET', STJ).then(
        () => true,
        () => undefined,
      ),
    );
    const { kubeConfig } = await createOperatorAccount(plane, NS, { prefix: 'semantics' });
    exit = runOperator(
      operatorConfig({
        identity: 'semantics-0',
        leaseNamespace: NS,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:e2e',
      }),
      { signal: stop.signal, kubeConfig, log: silentLogger, handleSignals: false },
    );
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await cluster?.stop();
    await plane?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('refuses nodeSelector and toleration keys outside the label syntax at admission, naming the field', async () => {
    const bad = [
      {
        nodeSelector: { 'gpu pool': 'a' },
        field: 'spec.resources.nodeSelector',
        says: 'must be a label key',
      },
      { nodeSelector: { pool: 'a/b' }, field: 'spec.resources.nodeSelector.pool', says: 'should match' },
      {
        tolerations: [{ key: `${'p'.repeat(254)}/gpu`, operator: 'Exists' }],
        field: 'spec.resources.tolerations[0].key',
        says: 'at most 253 characters',
      },
    ];
    for (const [i, b] of bad.entries()) {
      const m = job(`bad-labels-${i}`);
      const { field, says, ...resources } = b;
      Object.assign(m.spec.resources, resources);
      const r = await plane.kubectl(['create', '-f', '-'], { input: stringify(m) });
      assert.notEqual(r.code, 0, `${field}: accepted`);
      assert.ok(r.stderr.includes(field), `${field} not named in: ${r.stderr}`);
      assert.ok(r.stderr.includes(says), `'${says}' not in: ${r.stderr}`);
    }
    const ok = job('good-labels');
    Object.assign(ok.spec.resources, {
      nodeSelector: { 'nvidia.com/gpu.product': 'A100-SXM4-80GB', pool: '' },
    });
    const r = await plane.kubectl(['create', '--dry-run=server', '-f', '-'], { input: stringify(ok) });
    assert.equal(r.code, 0, r.stderr);
  });

  it('a job whose data manifest is missing fails with reason DataNotFound, in the Reason column too', async () => {
    const m = job('no-data');
    Object.assign(m.spec.data, { train: 'absent.csv', validation: undefined, synthetic: undefined });
    delete (m.spec.data as { validation?: string }).validation;
    delete (m.spec.data as { synthetic?: unknown }).synthetic;
    await apply(m);
    const s = await until('no-data', 'Failed', (x) => x.status?.phase === 'Failed');
    assert.equal(conditionOf(s, 'Failed')?.reason, 'DataNotFound');
    assert.match(conditionOf(s, 'Failed')?.message ?? '', /spec\.data\.train: no manifest at \S*absent\.csv/);
    const row = await plane.kubectl([
      'get',
      'stj',
      'no-data',
      '-n',
      NS,
      '--no-headers',
      '-o',
      'custom-columns=R:.status.conditions[?(@.type=="Running")].reason',
    ]);
    assert.equal(row.stdout.trim(), 'DataNotFound', row.stderr);
    const table = await plane.kubectl(['get', 'stj', 'no-data', '-n', NS]);
    assert.match(table.stdout, /no-data\s+Failed\s+.*DataNotFound/);
  });

  it('the phase never goes back over a whole run, and an edit while running is reported, not silently applied', async (t) => {
    const watch = watchPhases('edited');
    await apply(job('edited', { epochs: 8 }));
    const running = await until('edited', 'Running', (s) => s.status?.phase === 'Running');
    assert.equal(running.status?.plan?.tileSize, 192);
    const generation = running.metadata.generation as number;
    const r = await patchSpec('edited', { streaming: { tileSize: 96 }, resources: { memory: '3Gi' } });
    assert.equal(r.code, 0, r.stderr);
    const pending = await until(
      'edited',
      'SpecApplied=False',
      (s) =>
        s.status?.observedGeneration === generation + 1 && conditionOf(s, 'SpecApplied')?.status === 'False',
      30_000,
    );
    const c = conditionOf(pending, 'SpecApplied') as Condition;
    assert.equal(c.reason, 'SpecChangePending');
    assert.equal(c.observedGeneration, generation + 1);
    assert.match(
      c.message,
      /spec\.streaming\.tileSize and spec\.resources\.memory changed .* while trainer Job edited-0 runs/,
    );
    assert.equal(pending.status?.phase, 'Running');
    assert.equal(pending.status?.plan?.tileSize, 192, 'the running attempt keeps its tile');
    await waitFor('edited: a SpecChangePending Warning event', async () =>
      (await eventsOf('edited')).find((e) => e.reason === 'SpecChangePending' && e.type === 'Warning'),
    );
    const done = await until('edited', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 300_000);
    assert.equal(done.status?.progress?.fraction, 1);
    // The running trainer is never replaced. Only if it failed and waited for a replacement pod (a
    // restart: no trainer running) does the edit get in by a new attempt, as SpecChangeApplied says.
    const jobs = await jobsOf('edited');
    const restarted = (done.status?.restarts ?? 0) > 0;
    t.diagnostic(
      `phases ${watch.phases.join(' → ')}; trainer Jobs ${jobs.join(', ')}; restarts ${done.status?.restarts ?? 0}`,
    );
    if (!restarted)
      assert.deepEqual(
        jobs,
        ['edited-0'],
        `the running trainer Job was replaced: ${JSON.stringify(done.status)}`,
      );
    else {
      assert.deepEqual(jobs, ['edited-1'], JSON.stringify(done.status));
      assert.equal(conditionOf(done, 'Planned')?.reason, 'SpecChangeApplied');
    }
    await new Promise((res) => setTimeout(res, 500));
    await watch.stop();
    const seen = watch.phases.filter((p) => p !== 'Suspended');
    for (let i = 1; i < seen.length; i++)
      assert.ok(ORDER.indexOf(seen[i] as string) >= ORDER.indexOf(seen[i - 1] as string), seen.join(' → '));
    assert.equal(seen.at(-1), 'Succeeded', seen.join(' → '));
    assert.ok(seen.includes('Running'), seen.join(' → '));
  });

  it('an edit while suspended is applied by a new attempt, which runs with it once resumed', async () => {
    await apply(job('held', { runPolicy: { suspend: true } }));
    await until('held', 'Suspended', (s) => s.status?.phase === 'Suspended', 60_000);
    const r = await patchSpec('held', { streaming: { tileSize: 96 } });
    assert.equal(r.code, 0, r.stderr);
    const replanned = await until(
      'held',
      'Planned=True SpecChangeApplied',
      (s) => conditionOf(s, 'Planned')?.reason === 'SpecChangeApplied',
      30_000,
    );
    assert.equal(replanned.status?.plan?.tileSize, 96);
    assert.equal(conditionOf(replanned, 'SpecApplied')?.status, 'True');
    await waitFor('held: only attempt 1 left', async () =>
      JSON.stringify(await jobsOf('held')) === JSON.stringify(['held-1']) ? true : undefined,
    );
    assert.equal((await patchSpec('held', { runPolicy: { suspend: false } })).code, 0);
    const done = await until('held', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 300_000);
    assert.equal(done.status?.plan?.tileSize, 96);
  });
});
