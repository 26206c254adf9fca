// End to end on a real control plane (test/controlplane; skipped with the reason when the binaries
// cannot be had): the CRD, the operator (as a service account with only operator/rbac.ts's rules),
// the four standard fake GPU classes and the node agent, which runs the real `tilestream train`
// (through pod-trainer.ts, which maps in-pod paths onto the agent's pod folder) on a tiny synthetic
// dataset on a hostPath volume. Jobs are applied with the plane's kubectl as a user would.
// Scenarios: no GPU class is big enough → Planned=False and no Job; a job runs to Succeeded with
// plan, progress and result; a simulated out-of-memory exit → the tile is reduced and the job
// succeeds; the trainer killed mid-run → the Job's new pod resumes from the checkpoint.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { operatorConfig } from '../../operator/config.ts';
import { KubeClient } from '../../operator/kube/client.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { ensureSyntheticDataset } from '../../trainer/data/synthetic.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { STANDARD_GPU_CLASSES } from '../controlplane/gpu-node-spec.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { type NodeAgent, startNodeAgent } from '../controlplane/node-agent.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';

const started = await startControlPlaneOrSkip();
if (started.skip) process.stderr.write(`SKIP end-to-end scenarios: ${started.skip}\n`);

const NS = 'e2e';
const POD_TRAINER = fileURLToPath(new URL('./pod-trainer.ts', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tilestream-e2e-'));
const dataDir = join(work, 'data');
const OOM_MARK = join(work, 'oom-once');
const SYNTHETIC = { count: 16, validationCount: 4, seed: 3, format: 'png' as const };
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;

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
  };
}
interface PodList {
  items: {
    metadata: { name: string; labels?: Record<string, string> };
    spec: { nodeName?: string };
    status?: { phase?: string; containerStatuses?: { state?: { running?: unknown } }[] };
  }[];
}

/** A tiny synthetic job (the one of test/train/train-command.test.ts) on hostPath volumes. */
function job(name: string, opts: { image?: string; epochs?: number; minGpuMemory?: string } = {}) {
  const checkpoints = join(work, 'checkpoints', name);
  mkdirSync(checkpoints, { recursive: true });
  return {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name, namespace: NS },
    spec: {
      image: opts.image ?? 'tilestream:e2e',
      model: { architecture: 'smallcnn', width: 4, head: { pooling: 'max', classes: 1 } },
      data: {
        root: '/data',
        volume: { hostPath: { path: dataDir } },
        train: 'train.csv',
        validation: 'val.csv',
        imageSize: { height: 192, width: 192 },
        channels: 1,
        normalization: { mean: [0.5], std: [0.05] },
        synthetic: SYNTHETIC,
      },
      training: {
        epochs: opts.epochs ?? 1,
        batchSize: 2,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.003 },
        seed: 7,
        backend: 'wasm',
      },
      resources: { gpus: 1, ...(opts.minGpuMemory && { minGpuMemory: opts.minGpuMemory }) },
      checkpoint: {
        path: '/checkpoints',
        volume: { hostPath: { path: checkpoints } },
        everySteps: 1,
        keep: 2,
      },
    },
  };
}

const conditionOf = (s: Stj, type: string) => s.status?.conditions?.find((c) => c.type === type);

describe('end to end: kubectl → operator → Job → node agent → trainer', {
  skip: started.skip,
  timeout: 240_000,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  let exit: Promise<number>;
  let nodes: Awaited<ReturnType<typeof registerFakeGpuNodes>>;
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

  before(async () => {
    await ensureSyntheticDataset(dataDir, { height: 192, width: 192, ...SYNTHETIC });
    await installCrd(plane);
    nodes = await registerFakeGpuNodes(plane.kubeConfig, STANDARD_GPU_CLASSES, {
      kubeConfigForNode: (n) => plane.nodeKubeConfig(n),
    });
    agent = await startNodeAgent(plane.kubeConfig, nodes.names, {
      kubeConfigForNode: plane.nodeKubeConfig,
      imageCommands: {
        'tilestream:e2e': [process.execPath, POD_TRAINER],
        'tilestream:e2e-oom': [process.execPath, POD_TRAINER, `--e2e-oom-once=${OOM_MARK}`],
      },
      restartDelayMs: 200,
    });
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
      { signal: stop.signal, kubeConfig: operatorKc, log: silentLogger, handleSignals: false },
    );
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await agent?.stop();
    await nodes?.stop();
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
    const ckptDir = join(work, 'checkpoints', 'resume');
    const killedAt = await waitFor(
      'resume: a checkpoint at step ≥ 3',
      async () => {
        const steps = readdirSync(ckptDir).flatMap((f) => {
          const m = /^ckpt-(\d+)\.tsckpt$/.exec(f);
          return m ? [Number(m[1])] : [];
        });
        const step = Math.max(0, ...steps);
        return step >= 3 ? step : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const [first] = await podsOf('resume');
    assert.ok(first, 'a trainer pod runs');
    assert.equal(agent.killContainer(NS, first.metadata.name, 'trainer', 'SIGKILL'), true);
    const done = await until('resume', 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
    assert.ok(killedAt < STEPS, `killed mid-run at step ${killedAt}`);
    assert.equal(done.status?.progress?.step, STEPS);
    assert.equal(done.status?.restarts, 1);
    const pods = await podsOf('resume');
    assert.equal(pods.length, 2, 'the Job replaced the killed pod');
    const second = pods.find((p) => p.metadata.name !== first.metadata.name);
    const log = readFileSync(agent.logPath(NS, second?.metadata.name as string, 'trainer') as string, 'utf8');
    const resumed = log
      .split('\n')
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      })
      .find((e) => Object.values(e).some((v) => typeof v === 'string' && v.startsWith('resumed from')));
    assert.ok(resumed, `the new pod resumed from a checkpoint; its log:\n${log.slice(-2000)}`);
    t.diagnostic(`killed after checkpoint ${killedAt}, resumed at step ${resumed.step} of ${STEPS}`);
    assert.ok(Number(resumed.step) >= 3, `resumed at step ${resumed.step}, not from scratch`);
  });
});
