// End to end on a real control plane (test/controlplane; skipped with the reason when the binaries
// cannot be had): the CRD, the operator (as a service account with only operator/rbac.ts's rules),
// the four standard fake GPU classes and the node agent, which runs the real `tilestream train`
// (through pod-trainer.ts, which maps in-pod paths onto the agent's pod folder) on a tiny synthetic
// dataset on a hostPath volume. Jobs are applied with the plane's kubectl as a user would.
// Scenarios: no GPU class is big enough → Planned=False and no Job; a job runs to Succeeded with
// plan, progress and result; a simulated out-of-memory exit → the tile is reduced and the job
// succeeds; the trainer killed mid-run → the Job's new pod resumes from the checkpoint; invalid
// manifests (test/crds's fixtures) and immutable-field changes refused by `kubectl apply` naming the
// field, with nothing created; suspend → the trainer checkpoints on SIGTERM and exits 143, no pod
// runs → resume from that checkpoint → Succeeded; ttlSecondsAfterFinished → the job and all its
// children deleted; the trainer's token may apply its own job's status and nothing else (403).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { operatorConfig } from '../../operator/config.ts';
import { ApiError, isNotFound, KubeClient } from '../../operator/kube/client.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { createStatusReporter, TRAINER_FIELD_MANAGER } from '../../trainer/train/report-k8s.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import type { NodeAgent } from '../controlplane/node-agent.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { edit, INVALID_MANIFESTS } from '../crds/invalid-manifests.ts';
import { mapLimit } from '../crds/map-limit.ts';
import { conditionOf, type TinyJobOptions, tinyJob } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const started = await startControlPlaneOrSkip();
if (started.skip) process.stderr.write(`SKIP end-to-end scenarios: ${started.skip}\n`);

const NS = 'e2e';
const work = mkdtempSync(join(tmpdir(), 'tilestream-e2e-'));
const dataDir = join(work, 'data');
const OOM_MARK = join(work, 'oom-once');
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;
const JOB_LABEL = 'tilestream.io/job-name';
const SMOKE_EXAMPLE = fileURLToPath(new URL('../../examples/cluster-smoke.yaml', import.meta.url));

interface Condition {
  type: string;
  status: string;
  reason: string;
  message?: string;
}
interface Stj {
  status?: {
    phase?: string;
    plan?: { tileSize?: number; gpuProduct?: string; gpuMemory?: string };
    progress?: Record<string, unknown>;
    result?: Record<string, unknown>;
    lastCheckpoint?: Record<string, unknown>;
    conditions?: Condition[];
    tileReductions?: number;
    restarts?: number;
    completionTime?: string;
  };
}
interface StjObject extends Stj {
  metadata: {
    generation?: number;
    managedFields?: { manager?: string; subresource?: string }[];
  };
  spec: Record<string, unknown>;
}
interface List {
  items: { metadata: { name: string; labels?: Record<string, string> } }[];
}
/** How a trainer container ended; `message` is the termination message (the trainer's JSON summary). */
interface TrainerExit {
  exitCode: number;
  message?: string;
}
interface PodEvent {
  metadata: { name: string };
  status?: { containerStatuses?: { name: string; state?: { terminated?: TrainerExit } }[] };
}
interface PodList {
  items: {
    metadata: { name: string; labels?: Record<string, string> };
    spec: { nodeName?: string };
    status?: { phase?: string; containerStatuses?: { state?: { running?: unknown } }[] };
  }[];
}

/** The tiny synthetic job in this suite's namespace, on the trainer wrapper's image by default. */
function job(name: string, opts: Omit<TinyJobOptions, 'namespace' | 'dataDir' | 'checkpointsDir'> = {}) {
  return tinyJob(name, {
    namespace: NS,
    dataDir,
    checkpointsDir: join(work, 'checkpoints', name),
    image: 'tilestream:e2e',
    ...opts,
  });
}

/** The steps of the checkpoints a job has written to its hostPath volume. */
function checkpointSteps(name: string): number[] {
  return readdirSync(join(work, 'checkpoints', name)).flatMap((f) => {
    const m = /^ckpt-(\d+)\.tsckpt$/.exec(f);
    return m ? [Number(m[1])] : [];
  });
}

/** The trainer's JSON log line that says it resumed from a checkpoint, if any. */
function resumeLine(log: string): Record<string, unknown> | undefined {
  return log
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    })
    .find((e) => Object.values(e).some((v) => typeof v === 'string' && v.startsWith('resumed from')));
}

describe('end to end: kubectl → operator → Job → node agent → trainer', {
  skip: started.skip,
  timeout: 420_000,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  let exit: Promise<number>;
  let operatorMetricsPort = 0;
  const scrape = async (port: number) => {
    assert.ok(port > 0, 'a /metrics port');
    const r = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(r.status, 200);
    return r.text();
  };
  let cluster: TrainingCluster | undefined;
  let agent: NodeAgent;

  const apply = async (manifest: object) => {
    const r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(manifest) });
    assert.equal(r.code, 0, r.stderr);
  };
  const get = (name: string) => admin.request<Stj>('GET', `${STJ}/${name}`);
  const podsOf = async (name: string) =>
    (
      await admin.request<PodList>(
        'GET',
        `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(`job-name`)}`,
      )
    ).items.filter((p) => p.metadata.labels?.['job-name']?.startsWith(`${name}-`));
  /** The trainer logs of a job's pods, for failure messages (the agent has no `kubectl logs`). */
  const logsOf = async (name: string) => {
    const out: string[] = [];
    for (const p of await podsOf(name)) {
      const path = agent.logPath(NS, p.metadata.name, 'trainer');
      out.push(
        `--- ${p.metadata.name} on ${p.spec.nodeName}: ${path && existsSync(path) ? readFileSync(path, 'utf8').slice(-3000) : '(no log)'}`,
      );
    }
    return out.join('\n');
  };
  const until = async (name: string, what: string, ok: (s: Stj) => boolean, timeoutMs = 90_000) => {
    try {
      return await waitFor(
        `${name}: ${what}`,
        async () => {
          const s = await get(name);
          if (conditionOf(s, 'Failed')?.status === 'True')
            throw new Error(`${name} failed: ${JSON.stringify(s.status)}`);
          return ok(s) ? s : undefined;
        },
        { timeoutMs, intervalMs: 300 },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await logsOf(name)}`);
    }
  };

  /** The children the operator makes for a job (and the Job's pods), as `kind/name`, by their job label. */
  const childrenOf = async (isOurs: (jobLabel: string) => boolean) => {
    const lists: [string, string][] = [
      ['job', `/apis/batch/v1/namespaces/${NS}/jobs`],
      ['pod', `/api/v1/namespaces/${NS}/pods`],
      ['configmap', `/api/v1/namespaces/${NS}/configmaps`],
      ['serviceaccount', `/api/v1/namespaces/${NS}/serviceaccounts`],
      ['role', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`],
      ['rolebinding', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`],
    ];
    const out: string[] = [];
    for (const [kind, path] of lists) {
      const list = await admin.request<List>('GET', path, { query: { labelSelector: JOB_LABEL } });
      for (const o of list.items)
        if (isOurs(o.metadata.labels?.[JOB_LABEL] ?? '')) out.push(`${kind}/${o.metadata.name}`);
    }
    return out.sort();
  };
  /**
   * Exit codes of a job's trainer containers, by pod, from a watch: the agent deletes a pod it stopped
   * right after reporting the exit, so polling could miss it.
   */
  const watchTrainerExits = (name: string) => {
    const exits = new Map<string, TrainerExit>();
    const failed: { error?: Error } = {};
    const stop = new AbortController();
    // A long connect timeout: the watch stays open across the whole suspension.
    const watching = new KubeClient(plane.kubeConfig, { timeoutMs: 300_000 })
      .stream(
        `/api/v1/namespaces/${NS}/pods`,
        { watch: true, labelSelector: `${JOB_LABEL}=${name}` },
        (e) => {
          const pod = e.object as unknown as PodEvent;
          const end = pod.status?.containerStatuses?.find((c) => c.name === 'trainer')?.state?.terminated;
          if (end) exits.set(pod.metadata.name, end);
        },
        stop.signal,
      )
      .catch((e: Error) => {
        failed.error = e;
      });
    return {
      exits,
      /** Ends the watch; rethrows its error, if it failed (a wait on it then timed out). */
      stop: async () => {
        stop.abort();
        await watching;
        if (failed.error) throw failed.error;
      },
    };
  };
  /** A job's newest state and when it was deleted, from a watch. */
  const watchStj = (name: string) => {
    const seen: { last?: Stj; deletedAt?: number; error?: Error } = {};
    const stop = new AbortController();
    const watching = new KubeClient(plane.kubeConfig, { timeoutMs: 300_000 })
      .stream(
        STJ,
        { watch: true, fieldSelector: `metadata.name=${name}` },
        (e) => {
          if (e.type === 'BOOKMARK' || e.type === 'ERROR') return;
          seen.last = e.object as Stj;
          if (e.type === 'DELETED') seen.deletedAt = Date.now();
        },
        stop.signal,
      )
      .catch((e: Error) => {
        seen.error = e;
      });
    return Object.assign(seen, {
      /** Ends the watch; rethrows its error, if it failed (a wait on it then timed out). */
      stop: async () => {
        stop.abort();
        await watching;
        if (seen.error) throw seen.error;
      },
    });
  };
  const patchStj = (name: string, patch: object) =>
    plane.kubectl(['patch', 'stj', name, '-n', NS, '--type=merge', '-p', JSON.stringify(patch)]);

  before(async () => {
    cluster = await startTrainingCluster(plane, dataDir, {
      'tilestream:e2e': [process.execPath, POD_TRAINER],
      'tilestream:e2e-oom': [process.execPath, POD_TRAINER, `--e2e-oom-once=${OOM_MARK}`],
    });
    agent = cluster.agent;
    await plane.createNamespace(NS);
    // The operator runs as a service account holding exactly the rules operator/rbac.ts lists.
    const { kubeConfig: operatorKc } = await createOperatorAccount(plane, NS, { prefix: 'e2e' });
    exit = runOperator(
      operatorConfig({
        identity: 'e2e-0',
        leaseNamespace: NS,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:e2e',
      }),
      {
        signal: stop.signal,
        kubeConfig: operatorKc,
        log: silentLogger,
        handleSignals: false,
        onListening: (ports) => {
          operatorMetricsPort = ports.metricsPort;
        },
      },
    );
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await cluster?.stop();
    await plane?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('leaves a job that no GPU class can hold unplanned, with no Job', async () => {
    await apply(job('too-big', { minGpuMemory: '200Gi' }));
    const s = await until(
      'too-big',
      'Planned=False',
      (s) => conditionOf(s, 'Planned')?.status === 'False',
      30_000,
    );
    assert.equal(conditionOf(s, 'Planned')?.reason, 'NoGPUWithSufficientMemory');
    // Give the operator time to (wrongly) create a Job before looking.
    await new Promise((r) => setTimeout(r, 1000));
    const jobs = await admin.request<{ items: { metadata: { name: string } }[] }>(
      'GET',
      `/apis/batch/v1/namespaces/${NS}/jobs`,
    );
    assert.deepEqual(
      jobs.items.map((j) => j.metadata.name).filter((n) => n.startsWith('too-big')),
      [],
    );
  });

  it('runs a tiny synthetic job to Succeeded on the planned GPU class', async () => {
    await apply(job('tiny'));
    const planned = await until('tiny', 'status.plan', (s) => !!s.status?.plan?.tileSize, 30_000);
    // The smallest class that holds it: the 10 GB MIG slice; the whole 192² image is one tile.
    assert.equal(planned.status?.plan?.gpuProduct, 'A100-SXM4-80GB-MIG-1g.10gb');
    assert.equal(planned.status?.plan?.tileSize, 192);
    // The plan is on the operator's /metrics too: tile and predicted memory saved for this job. The
    // operator records them just after it writes the status, so the series may trail the status a little.
    const operatorMetrics = await waitFor(
      'tiny: its series on the operator /metrics',
      async () => {
        const text = await scrape(operatorMetricsPort);
        return /^tilestream_job_tile_size_pixels\{[^}]*job="tiny"/m.test(text) ? text : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    assert.match(operatorMetrics, /^tilestream_job_tile_size_pixels\{[^}]*job="tiny"[^}]*\} 192$/m);
    for (const mode of ['streamed', 'conventional']) {
      const bytes = new RegExp(
        `^tilestream_job_predicted_peak_memory_bytes\\{[^}]*job="tiny",mode="${mode}"\\} [1-9]\\d*$`,
        'm',
      );
      assert.match(operatorMetrics, bytes);
    }
    // One tile holds the whole 192² image, so streaming saves nothing here (the ratio is clamped at 0).
    assert.match(operatorMetrics, /^tilestream_job_memory_savings_ratio\{[^}]*job="tiny"[^}]*\} 0$/m);
    const done = await until('tiny', 'Succeeded', (s) => s.status?.phase === 'Succeeded');
    const pods = await podsOf('tiny');
    assert.deepEqual(
      pods.map((p) => [p.spec.nodeName, p.status?.phase]),
      [['gpu-mig-10g-0', 'Succeeded']],
    );
    // Progress and result come from the trainer in the pod (its own field manager), not the operator.
    assert.equal(done.status?.progress?.fraction, 1);
    assert.equal(done.status?.progress?.step, 8); // 16 images, batch 2, 1 epoch
    assert.equal(typeof done.status?.result?.validationAccuracy, 'number');
    assert.equal(done.status?.lastCheckpoint?.step, 8);
    assert.ok(
      readdirSync(join(work, 'checkpoints', 'tiny')).some((f) => f.endsWith('.tsckpt')),
      'the checkpoint lands on the hostPath volume',
    );
    assert.equal(conditionOf(done, 'Succeeded')?.reason, 'TrainingCompleted');
  });

  it('runs examples/cluster-smoke.yaml, applied as it is with kubectl, to Succeeded', async () => {
    const r = await plane.kubectl(['apply', '-n', NS, '-f', SMOKE_EXAMPLE]);
    assert.equal(r.code, 0, r.stderr);
    const done = await until('cluster-smoke', 'Succeeded', (s) => s.status?.phase === 'Succeeded');
    // The example's fixed tile 128 fits the smallest class, the MIG slice.
    assert.equal(done.status?.plan?.tileSize, 128);
    assert.equal(done.status?.plan?.gpuProduct, 'A100-SXM4-80GB-MIG-1g.10gb');
    const pods = await podsOf('cluster-smoke');
    assert.deepEqual(
      pods.map((p) => [p.spec.nodeName, p.status?.phase]),
      [['gpu-mig-10g-0', 'Succeeded']],
    );
    assert.equal(done.status?.progress?.step, 8); // 16 synthetic images made in the pod, batch 2
    assert.equal(done.status?.progress?.fraction, 1);
    assert.equal(typeof done.status?.result?.validationAccuracy, 'number');
    assert.equal(done.status?.lastCheckpoint?.step, 8);
  });

  it('reduces the tile after an out-of-memory exit and then succeeds', async (t) => {
    // The wrapper exits 3 (the trainer's out-of-memory code) on the first attempt only.
    await apply(job('oom', { image: 'tilestream:e2e-oom' }));
    const done = await until('oom', 'Succeeded', (s) => s.status?.phase === 'Succeeded');
    const firstTile = Number(readFileSync(OOM_MARK, 'utf8'));
    assert.equal(firstTile, 192);
    const tile = done.status?.plan?.tileSize as number;
    assert.ok(tile < firstTile, `the re-planned tile ${tile} is smaller than ${firstTile}`);
    t.diagnostic(`tile ${firstTile} → ${tile} after the out-of-memory exit`);
    assert.equal(done.status?.tileReductions, 1);
    assert.equal(conditionOf(done, 'Planned')?.reason, 'TileSizeReduced');
    // The failed attempt's Job is replaced by attempt 1, which carries the smaller tile.
    const jobs = await admin.request<{ items: { metadata: { name: string } }[] }>(
      'GET',
      `/apis/batch/v1/namespaces/${NS}/jobs`,
    );
    assert.ok(jobs.items.some((j) => j.metadata.name === 'oom-1'));
    assert.equal(done.status?.progress?.fraction, 1);
  });

  it('resumes from the checkpoint after the trainer is killed mid-run', async (t) => {
    const EPOCHS = 6;
    const STEPS = EPOCHS * 8;
    await apply(job('resume', { epochs: EPOCHS }));
    // Kill once step 3 is checkpointed (everySteps: 1): watched on the hostPath volume, since status
    // reports are throttled and a run of this size takes only seconds.
    const killedAt = await waitFor(
      'resume: a checkpoint at step ≥ 3',
      async () => {
        const step = Math.max(0, ...checkpointSteps('resume'));
        return step >= 3 ? step : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const [first] = await podsOf('resume');
    assert.ok(first, 'a trainer pod runs');
    // The running trainer's /metrics: throughput counters and the tile, labelled with the job.
    const firstLog = agent.logPath(NS, first.metadata.name, 'trainer') as string;
    const trainerPort = await waitFor(
      'resume: the trainer logs its metrics port',
      async () => Number(/metrics on :(\d+)\/metrics/.exec(readFileSync(firstLog, 'utf8'))?.[1]) || undefined,
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    const trainerMetrics = await scrape(trainerPort);
    assert.match(
      trainerMetrics,
      /^tilestream_trainer_pixels_processed_total\{namespace="e2e",job="resume"\} [1-9]\d*$/m,
    );
    assert.match(
      trainerMetrics,
      /^tilestream_trainer_tile_size_pixels\{namespace="e2e",job="resume"\} 192$/m,
    );
    assert.equal(agent.killContainer(NS, first.metadata.name, 'trainer', 'SIGKILL'), true);
    const done = await until('resume', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
    assert.ok(killedAt < STEPS, `killed mid-run at step ${killedAt}`);
    assert.equal(done.status?.progress?.step, STEPS);
    assert.equal(done.status?.restarts, 1);
    const pods = await podsOf('resume');
    assert.equal(pods.length, 2, 'the Job replaced the killed pod');
    const second = pods.find((p) => p.metadata.name !== first.metadata.name);
    const log = readFileSync(agent.logPath(NS, second?.metadata.name as string, 'trainer') as string, 'utf8');
    const resumed = resumeLine(log);
    assert.ok(resumed, `the new pod resumed from a checkpoint; its log:\n${log.slice(-2000)}`);
    t.diagnostic(`killed after checkpoint ${killedAt}, resumed at step ${resumed.step} of ${STEPS}`);
    assert.ok(Number(resumed.step) >= 3, `resumed at step ${resumed.step}, not from scratch`);
  });
  /**
   * Where `kubectl apply` itself answers, before the API server is asked: it looks the object up by
   * name first, so a manifest without one never reaches validation.
   */
  const KUBECTL_APPLY_SAYS: Record<string, string[]> = {
    'metadata.name missing': ['resource name may not be empty'],
  };

  it('refuses invalid manifests applied with kubectl, naming the field, and creates nothing', async (t) => {
    // The fixtures of test/crds (those the API server can be asked), each under its own name in this
    // namespace, so one wrongly accepted manifest cannot make the next fail for another reason.
    const cases = INVALID_MANIFESTS.filter((c) => !c.localOnly).map((c, i) => ({
      ...c,
      manifest: edit(c.manifest, {
        'metadata.namespace': NS,
        ...(!c.path.startsWith('metadata') && { 'metadata.name': `bad-${i}` }),
      }),
    }));
    assert.ok(cases.length >= 30, `${cases.length} cases`);
    const t0 = Date.now();
    const failures = await mapLimit(cases, 3, async (c) => {
      // JSON (also YAML) keeps each value's type: kubectl's YAML 1.1 would read a plain `yes` as true.
      const r = await plane.kubectl(['apply', '-f', '-'], { input: JSON.stringify(c.manifest) });
      const expected = KUBECTL_APPLY_SAYS[c.name] ?? [
        c.path,
        ...(c.message === undefined ? [] : [c.message]),
      ];
      const named = expected.every((text) => r.stderr.includes(text));
      return r.code !== 0 && named
        ? null
        : `${c.name} [${c.path}]: exit ${r.code}: ${(r.stdout + r.stderr).trim()}`;
    });
    assert.deepEqual(
      failures.filter((f) => f !== null),
      [],
    );
    t.diagnostic(`${cases.length} invalid manifests refused in ${Date.now() - t0} ms`);
    const names = new Set(
      cases.map((c) => (c.manifest.metadata as { name?: string } | undefined)?.name).filter((n) => n),
    );
    const stjs = await admin.request<List>('GET', STJ);
    assert.deepEqual(
      stjs.items.map((o) => o.metadata.name).filter((n) => names.has(n)),
      [],
    );
    assert.deepEqual(await childrenOf((job) => names.has(job)), []);
  });

  it('refuses changes to immutable fields of an existing job, naming the field, and changes nothing', async () => {
    // With a Kueue queue the trainer Job is made suspended and waits for admission (no Kueue here),
    // so the job keeps its children and no pod runs.
    const base = job('immut', { runPolicy: { queueName: 'gpu-queue' } });
    await apply(base);
    await until(
      'immut',
      'phase Suspended (held for its queue)',
      (s) => s.status?.phase === 'Suspended',
      30_000,
    );
    const stjBefore = await admin.request<StjObject>('GET', `${STJ}/immut`);
    const childrenBefore = await childrenOf((j) => j === 'immut');
    assert.deepEqual(childrenBefore, [
      'configmap/immut-job',
      'job/immut-0',
      'role/immut-trainer',
      'rolebinding/immut-trainer',
      'serviceaccount/immut-trainer',
    ]);
    const configBefore = await admin.request<{ data: unknown }>(
      'GET',
      `/api/v1/namespaces/${NS}/configmaps/immut-job`,
    );
    const jobBefore = await admin.request<{ metadata: { generation: number }; spec: unknown }>(
      'GET',
      `/apis/batch/v1/namespaces/${NS}/jobs/immut-0`,
    );
    // kubectl apply of the edited manifest, as a user would change a job.
    const refused: [Record<string, unknown>, string, string][] = [
      [{ 'spec.model.head.pooling': 'avg' }, 'spec.model', 'spec.model is immutable'],
      [{ 'spec.data.train': 'other.csv' }, 'spec.data', 'spec.data is immutable'],
      [{ 'spec.data.imageSize.height': 256 }, 'spec.data', 'spec.data is immutable'],
      [{ 'spec.training.epochs': 5 }, 'spec.training', 'spec.training is immutable'],
      [{ 'spec.training.optimizer.learningRate': 0.01 }, 'spec.training', 'spec.training is immutable'],
      [{ 'spec.checkpoint.keep': 5 }, 'spec.checkpoint', 'spec.checkpoint is immutable'],
      [{ 'spec.checkpoint': undefined }, 'spec', 'spec.checkpoint cannot be added or removed'],
      [{ 'spec.runPolicy.queueName': 'other-queue' }, 'spec.runPolicy.queueName', 'queueName is immutable'],
      [{ 'spec.runPolicy.queueName': undefined }, 'spec.runPolicy', 'queueName cannot be added or removed'],
    ];
    for (const [edits, path, message] of refused) {
      const r = await plane.kubectl(['apply', '-f', '-'], { input: stringify(edit(base, edits)) });
      assert.notEqual(r.code, 0, `${JSON.stringify(edits)} was accepted`);
      const expected = `${path}: Invalid value: `;
      assert.ok(
        r.stderr.includes(expected) && r.stderr.includes(message),
        `${JSON.stringify(edits)}: expected «${expected}» and «${message}» in: ${r.stderr}`,
      );
    }
    const stjAfter = await admin.request<StjObject>('GET', `${STJ}/immut`);
    assert.equal(stjAfter.metadata.generation, stjBefore.metadata.generation);
    assert.deepEqual(stjAfter.spec, stjBefore.spec);
    assert.deepEqual(await childrenOf((j) => j === 'immut'), childrenBefore, 'no new attempt or child');
    const configAfter = await admin.request<{ data: unknown }>(
      'GET',
      `/api/v1/namespaces/${NS}/configmaps/immut-job`,
    );
    assert.deepEqual(configAfter.data, configBefore.data, 'the manifest the trainer reads is unchanged');
    const jobAfter = await admin.request<{ metadata: { generation: number }; spec: unknown }>(
      'GET',
      `/apis/batch/v1/namespaces/${NS}/jobs/immut-0`,
    );
    assert.equal(jobAfter.metadata.generation, jobBefore.metadata.generation);
    assert.deepEqual(jobAfter.spec, jobBefore.spec);
  });

  it('suspends a running job (checkpoint, exit 143, no pod) and resumes it from that checkpoint', async (t) => {
    const EPOCHS = 3;
    const STEPS = EPOCHS * 8;
    const trainer = watchTrainerExits('pause');
    try {
      await apply(job('pause', { epochs: EPOCHS }));
      await waitFor(
        'pause: a checkpoint at step ≥ 2',
        async () => Math.max(0, ...checkpointSteps('pause')) >= 2,
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      const [first] = await podsOf('pause');
      assert.ok(first, 'a trainer pod runs');
      const r = await patchStj('pause', { spec: { runPolicy: { suspend: true } } });
      assert.equal(r.code, 0, r.stderr);

      const suspended = await until(
        'pause',
        'Suspended, with its pod stopped and gone',
        (s) => s.status?.phase === 'Suspended' && trainer.exits.has(first.metadata.name),
        60_000,
      );
      // The trainer caught SIGTERM, wrote a checkpoint and exited 143 (not SIGKILLed: 137).
      const stopped = trainer.exits.get(first.metadata.name) as TrainerExit;
      assert.equal(stopped.exitCode, 143, JSON.stringify(stopped));
      assert.equal(conditionOf(suspended, 'Suspended')?.status, 'True');
      assert.equal(conditionOf(suspended, 'Suspended')?.reason, 'Suspended');
      assert.equal(conditionOf(suspended, 'Running')?.status, 'False');
      assert.equal(conditionOf(suspended, 'Running')?.reason, 'Suspended');
      const stoppedAt = Math.max(...checkpointSteps('pause'));
      assert.ok(stoppedAt >= 2 && stoppedAt < STEPS, `stopped mid-run at step ${stoppedAt}`);
      // Its summary says it stopped on request at the step of its newest checkpoint (a trainer killed
      // by the signal would leave no summary).
      let summary: { status?: string; steps?: number } = {};
      try {
        summary = JSON.parse(stopped.message ?? '');
      } catch {
        // Not a summary (the log tail of a trainer that did not finish): the assertion below says so.
      }
      assert.deepEqual([summary.status, summary.steps], ['stopped', stoppedAt], stopped.message);
      // Its last report names the checkpoint it stopped at.
      await until(
        'pause',
        `lastCheckpoint at step ${stoppedAt}`,
        (s) => s.status?.lastCheckpoint?.step === stoppedAt,
        15_000,
      );
      await waitFor('pause: no pod left', async () => (await podsOf('pause')).length === 0, {
        timeoutMs: 30_000,
      });
      const held = await admin.request<{ spec: { suspend?: boolean }; status: { active?: number } }>(
        'GET',
        `/apis/batch/v1/namespaces/${NS}/jobs/pause-0`,
      );
      assert.equal(held.spec.suspend, true, 'the trainer Job is suspended, so no pod is started');
      assert.equal(held.status.active ?? 0, 0);

      const resumedPatch = await patchStj('pause', { spec: { runPolicy: { suspend: false } } });
      assert.equal(resumedPatch.code, 0, resumedPatch.stderr);
      const resuming = await until(
        'pause',
        'Suspended=False',
        (s) => conditionOf(s, 'Suspended')?.status === 'False' || s.status?.phase === 'Succeeded',
        30_000,
      );
      if (resuming.status?.phase !== 'Succeeded')
        assert.equal(conditionOf(resuming, 'Suspended')?.reason, 'Resumed');
      const done = await until('pause', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
      assert.equal(done.status?.progress?.step, STEPS);
      assert.equal(done.status?.progress?.fraction, 1);
      assert.equal(done.status?.restarts, 0, 'a suspension is not a restart');
      const pods = await podsOf('pause');
      const second = pods.find((p) => p.metadata.name !== first.metadata.name);
      assert.ok(second, 'a new pod ran after the resume');
      assert.equal(trainer.exits.get(second.metadata.name)?.exitCode, 0);
      const log = readFileSync(agent.logPath(NS, second.metadata.name, 'trainer') as string, 'utf8');
      const resumed = resumeLine(log);
      assert.ok(resumed, `the new pod resumed from a checkpoint; its log:\n${log.slice(-2000)}`);
      assert.equal(Number(resumed.step), stoppedAt, 'resumed where the suspension stopped it');
      t.diagnostic(
        `suspended at step ${stoppedAt}, resumed there, finished ${STEPS}/${STEPS}; restarts ${done.status?.restarts}`,
      );
    } finally {
      await trainer.stop();
    }
  });

  it('deletes a finished job and all its children once ttlSecondsAfterFinished has passed', async (t) => {
    const TTL = 2;
    // Watched, not polled: under load the operator may see the Job complete only after the TTL has
    // passed, and then deletes the job right after writing Succeeded.
    const stj = watchStj('ttl');
    const trainer = watchTrainerExits('ttl');
    try {
      await apply(job('ttl', { runPolicy: { ttlSecondsAfterFinished: TTL } }));
      await waitFor('ttl: planned', async () => stj.last?.status?.plan !== undefined, { timeoutMs: 30_000 });
      const made = await childrenOf((j) => j === 'ttl');
      for (const c of ['configmap/ttl-job', 'job/ttl-0', 'role/ttl-trainer', 'rolebinding/ttl-trainer'])
        assert.ok(made.includes(c), `${c} was made; children: ${made.join(', ')}`);
      assert.ok(made.includes('serviceaccount/ttl-trainer'), made.join(', '));
      const deletedAt = await waitFor('ttl: the job deleted', async () => stj.deletedAt, {
        timeoutMs: 90_000,
      });
      // The job's last state, as the DELETED event carries it.
      const final = stj.last as Stj;
      assert.equal(final.status?.phase, 'Succeeded', JSON.stringify(final.status));
      const completed = Date.parse(final.status?.completionTime as string);
      assert.ok(
        deletedAt - completed >= TTL * 1000,
        `deleted ${deletedAt - completed} ms after completion, not before the ${TTL} s TTL`,
      );
      assert.deepEqual(
        [...trainer.exits.values()].map((e) => e.exitCode),
        [0],
        'its trainer pod ran and succeeded',
      );
      // The garbage collector follows the owner references: Job, ConfigMap and RBAC, then the pod.
      const goneAt = await waitFor(
        'ttl: all its children deleted',
        async () => {
          const left = await childrenOf((j) => j === 'ttl');
          if (left.length > 0) throw new Error(`still there: ${left.join(', ')}`);
          return Date.now();
        },
        { timeoutMs: 45_000, intervalMs: 250 },
      );
      await assert.rejects(get('ttl'), isNotFound);
      t.diagnostic(
        `deleted ${((deletedAt - completed) / 1000).toFixed(1)} s after completion (TTL ${TTL} s), children ${((goneAt - deletedAt) / 1000).toFixed(1)} s later`,
      );
    } finally {
      await Promise.all([stj.stop(), trainer.stop()]);
    }
  });

  it("lets a trainer's token patch its own job's status and nothing else", async () => {
    // Suspended jobs: the operator makes each trainer's account without starting a pod.
    await apply(job('rbac-own', { runPolicy: { suspend: true } }));
    await apply(job('rbac-other', { runPolicy: { suspend: true } }));
    for (const n of ['rbac-own', 'rbac-other'])
      await until(n, 'Suspended', (s) => s.status?.phase === 'Suspended', 30_000);
    const kubeconfig = await plane.serviceAccountKubeconfig(NS, 'rbac-own-trainer');

    // The trainer's own reporter (trainer/train/report-k8s.ts), as a pod runs it.
    const report = async (name: string) => {
      const warnings: string[] = [];
      const reporter = createStatusReporter({ namespace: NS, name }, 10, (m) => warnings.push(m), {
        TILESTREAM_STATUS_KUBECONFIG: kubeconfig,
      });
      assert.ok(reporter);
      reporter.report({
        progress: { epoch: 1, epochs: 1, step: 3, steps: 8, fraction: 0.375, percent: '37%' },
      });
      await reporter.flush();
      return warnings;
    };
    assert.deepEqual(await report('rbac-own'), []);
    const own = await admin.request<StjObject>('GET', `${STJ}/rbac-own`);
    assert.equal(own.status?.progress?.step, 3);
    assert.ok(
      own.metadata.managedFields?.some(
        (f) => f.manager === TRAINER_FIELD_MANAGER && f.subresource === 'status',
      ),
      'the status is applied under the trainer field manager',
    );
    const warnings = await report('rbac-other');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /forbidden/i);

    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const asTrainer = new KubeClient(kc);
    const ssa = (target: string, body: object) => ({
      body: {
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name: target, namespace: NS },
        ...body,
      },
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: TRAINER_FIELD_MANAGER, force: true },
    });
    const attempts: [string, () => Promise<unknown>][] = [
      [
        "apply another job's status",
        () => {
          const o = ssa('rbac-other', { status: { progress: { step: 5 } } });
          return asTrainer.request('PATCH', `${STJ}/rbac-other/status`, o);
        },
      ],
      [
        'apply its own job (spec)',
        () => {
          const o = ssa('rbac-own', { spec: { runPolicy: { suspend: false } } });
          return asTrainer.request('PATCH', `${STJ}/rbac-own`, o);
        },
      ],
      [
        'merge-patch its own job (spec)',
        () =>
          asTrainer.request('PATCH', `${STJ}/rbac-own`, {
            body: { spec: { runPolicy: { suspend: false } } },
            contentType: 'application/merge-patch+json',
          }),
      ],
      ['get its own job', () => asTrainer.request('GET', `${STJ}/rbac-own`)],
      ['list the jobs of its namespace', () => asTrainer.request('GET', STJ)],
      ['delete its own job', () => asTrainer.request('DELETE', `${STJ}/rbac-own`)],
    ];
    for (const [what, attempt] of attempts) {
      await assert.rejects(attempt(), (e) => e instanceof ApiError && e.status === 403, `${what}: not 403`);
    }
    const other = await admin.request<StjObject>('GET', `${STJ}/rbac-other`);
    assert.equal(other.status?.progress, undefined, "the other job's status is untouched");
    const ownAfter = await admin.request<StjObject>('GET', `${STJ}/rbac-own`);
    assert.equal(ownAfter.metadata.generation, own.metadata.generation, 'its own spec is untouched');
  });
});
