// Faults injected on a real control plane (test/controlplane; skipped with the reason when the
// binaries cannot be had) while the tiny synthetic job trains: the operator runs as a separate
// `tilestream operator` process with exactly operator/rbac.ts's rules, restarted whenever it exits
// (as kubelet restarts its container), and the node agent runs the real trainer. Each scenario asserts
// that nothing is lost — one trainer Job and one set of children, progress that never rewinds, the
// final result and checkpoint, and final weights equal to an uninterrupted run's — and that the job
// ends Succeeded or Failed with a reason that names the fault:
//   api-restart  kube-apiserver killed and started again mid-job: the operator reconnects and
//                reconciles a spec change made after the restart; no duplicate children; the status
//                carries on.
//   etcd-outage  etcd stopped for 20 s mid-job: training goes on without the control plane, the
//                leader steps down (exit 1) and leads again once etcd is back; the pod's exit and the
//                trainer's last report, made during the outage, reach the API afterwards.
//   sigkill      the trainer SIGKILLed three times: each new pod resumes from the newest checkpoint.
//   node-lost    the node of a running job vanishes (processes killed, Node deleted): Kubernetes'
//                pod garbage collector fails and deletes its pod, and as the job's GPU class has no
//                node left the operator re-plans it onto another class, where it resumes.
//   node-lost-in-class  the same with another node left in the class: the Job controller runs a
//                replacement pod there, within the same attempt and plan.
//   volume-full  the checkpoint volume (a tmpfs) fills up: the trainer exits 4, the Job fails at
//                once and the job is Failed with reason CheckpointVolumeFull naming the volume; the
//                last good checkpoint is intact, and the job applied again resumes from it.
// The control-plane outages run one after the other; the pod-level faults alongside them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { KubeClient } from '../../operator/kube/client.ts';
import { listCheckpoints, readCheckpoint } from '../../trainer/train/checkpoint.ts';
import type { FakeGpuClass } from '../controlplane/gpu-node-spec.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import type { NodeAgent } from '../controlplane/node-agent.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { OperatorProcesses, type SupervisedOperator } from './operator-process.ts';
import { conditionOf, STEPS_PER_EPOCH, type TinyJobOptions, tinyJob } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const started = await startControlPlaneOrSkip();
if (started.skip) process.stderr.write(`SKIP fault scenarios: ${started.skip}\n`);

const NS = 'faults';
const IMAGE = 'tilestream:e2e';
const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tilestream-faults-'));
const dataDir = join(work, 'data');
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;
const JOB_LABEL = 'tilestream.io/job-name';
/** Every scenario's job: 6 epochs of 8 steps, so that one uninterrupted run is the reference for all. */
const EPOCHS = 6;
const STEPS = EPOCHS * STEPS_PER_EPOCH;
/** The whole 192² image is one tile on every class (asserted), so the reference runs with it too. */
const TILE = 192;
/** A GPU class only the node-lost job tolerates (tainted), smaller than the others so it is chosen. */
const SPOT: FakeGpuClass = {
  name: 'gpu-spot',
  product: 'Tesla-P4',
  memoryMiB: 7680,
  gpuCount: 1,
  family: 'pascal',
  computeMajor: 6,
  computeMinor: 1,
};
const SPOT_TAINT = { key: 'tilestream.test/spot', value: 'true', effect: 'NoSchedule' };
/** A two-node class only the node-lost-in-class job tolerates: losing one node leaves the other. */
const PAIR: FakeGpuClass = {
  name: 'gpu-pair',
  product: 'Quadro-P4000',
  memoryMiB: 8192,
  gpuCount: 1,
  family: 'pascal',
  computeMajor: 6,
  computeMinor: 1,
  nodes: 2,
};
const PAIR_TAINT = { key: 'tilestream.test/pair', value: 'true', effect: 'NoSchedule' };
/** How long etcd stays down. */
const ETCD_OUTAGE_MS = 20_000;

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
    observedGeneration?: number;
    phase?: string;
    plan?: { tileSize?: number; gpuProduct?: string; gpuClass?: string };
    startTime?: string;
    progress?: { step?: number; fraction?: number };
    lastCheckpoint?: { step?: number; path?: string };
    result?: Record<string, unknown>;
    conditions?: Condition[];
    restarts?: number;
  };
}
interface Pod {
  metadata: { name: string; deletionTimestamp?: string; ownerReferences?: { name: string }[] };
  spec: { nodeName?: string };
  status?: {
    phase?: string;
    conditions?: { type: string; status: string; reason?: string }[];
    containerStatuses?: { name: string; state?: { terminated?: { exitCode: number } } }[];
  };
}
interface List<T = { metadata: { name: string } }> {
  items: T[];
}

/** A scenario's job: the tiny synthetic task for EPOCHS epochs, checkpoints on its own hostPath. */
const job = (name: string, o: Partial<TinyJobOptions> = {}) =>
  tinyJob(name, {
    namespace: NS,
    dataDir,
    checkpointsDir: checkpointsOf(name),
    epochs: EPOCHS,
    runPolicy: { ttlSecondsAfterFinished: 3600 },
    ...o,
  });
const checkpointsOf = (name: string) => join(work, 'checkpoints', name);
/** The newest checkpoint step on a job's volume (0 when there is none). */
const checkpointStep = (name: string) =>
  Math.max(
    0,
    ...readdirSync(checkpointsOf(name)).flatMap((f) => {
      const m = /^ckpt-(\d+)\.tsckpt$/.exec(f);
      return m ? [Number(m[1])] : [];
    }),
  );

function finalWeights(dir: string): Map<string, Float32Array> {
  const newest = listCheckpoints(dir)[0];
  assert.ok(newest, `no checkpoint in ${dir}`);
  return new Map([...readCheckpoint(newest).tensors].map(([n, t]) => [n, t.values]));
}

function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let worst = 0;
  for (const [n, x] of a) {
    const y = b.get(n) as Float32Array;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs((x[i] as number) - (y[i] as number)));
  }
  return worst;
}

/** The steps the trainer's JSON log says it resumed from, in order (one per start that found a checkpoint). */
function resumedSteps(log: string): number[] {
  return log.split('\n').flatMap((l) => {
    if (!l.includes('resumed from')) return [];
    try {
      const e = JSON.parse(l) as { step?: unknown };
      return typeof e.step === 'number' ? [e.step] : [];
    } catch {
      return [];
    }
  });
}

/** `tilestream train` on the host, uninterrupted: the weights every scenario must end with. */
function referenceRun(): Promise<Map<string, Float32Array>> {
  const dir = join(work, 'reference');
  const manifest = job('reference') as { spec: { data: { root: string }; checkpoint: { path: string } } };
  manifest.spec.data.root = dataDir;
  manifest.spec.checkpoint.path = dir;
  const file = join(work, 'reference.yaml');
  writeFileSync(file, stringify(manifest));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'train', file, '--tile-size', String(TILE), '--json'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', (code) => {
      if (code === 0) resolve(finalWeights(dir));
      else reject(new Error(`the reference run exited ${code}:\n${stderr.slice(-2000)}`));
    });
  });
}

/** Mounts a tmpfs of `size` at `dir` (root only); undefined when it worked, else why not. */
function mountTmpfs(dir: string, size: string): Promise<string | undefined> {
  mkdirSync(dir, { recursive: true });
  return new Promise((resolve) => {
    const child = spawn('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', (e) => resolve(`cannot run mount: ${e.message}`));
    child.on('exit', (code) =>
      resolve(code === 0 ? undefined : `cannot mount a tmpfs (root needed): ${err.trim()}`),
    );
  });
}

function unmount(dir: string): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn('umount', [dir], { stdio: 'ignore' });
    child.on('error', () => resolve());
    child.on('exit', () => resolve());
  });
}

/** Fills the filesystem of `dir` to the last byte with one file; returns its path. */
function fillUp(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  try {
    for (let chunk = 1 << 16; chunk >= 1; chunk >>= 1) {
      const buf = Buffer.alloc(chunk, 0xab);
      for (;;) {
        try {
          if (writeSync(fd, buf) < chunk) break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('faults on a real control plane: nothing is lost', {
  skip: started.skip,
  timeout: 300_000,
  concurrency: true,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const operators = new OperatorProcesses();
  let operator: SupervisedOperator;
  let cluster: TrainingCluster | undefined;
  let agent: NodeAgent;
  let reference: Promise<Map<string, Float32Array>>;
  const tmpfsDir = checkpointsOf('volume-full');
  let tmpfsSkip: string | undefined;

  const kubectl = async (args: string[], input?: string) => {
    const r = await plane.kubectl(args, input === undefined ? {} : { input });
    assert.equal(r.code, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], stringify(manifest));
  const get = (name: string) => admin.request<Stj>('GET', `${STJ}/${name}`);
  const podsOf = async (name: string) =>
    (
      await admin.request<List<Pod>>('GET', `/api/v1/namespaces/${NS}/pods`, {
        query: { labelSelector: `${JOB_LABEL}=${name}` },
      })
    ).items;
  /** Names of one kind of child (by the label every child carries). */
  const children = async (path: string, name: string) =>
    (await admin.request<List>('GET', path, { query: { labelSelector: `${JOB_LABEL}=${name}` } })).items
      .map((i) => i.metadata.name)
      .sort();
  /** The operator's children of a job, by kind. */
  const childSet = async (name: string) => ({
    jobs: await children(`/apis/batch/v1/namespaces/${NS}/jobs`, name),
    configmaps: await children(`/api/v1/namespaces/${NS}/configmaps`, name),
    serviceaccounts: await children(`/api/v1/namespaces/${NS}/serviceaccounts`, name),
    roles: await children(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, name),
    rolebindings: await children(`/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, name),
  });
  const oneAttempt = (name: string, attempt = 0) => ({
    jobs: [`${name}-${attempt}`],
    configmaps: [`${name}-job`],
    serviceaccounts: [`${name}-trainer`],
    roles: [`${name}-trainer`],
    rolebindings: [`${name}-trainer`],
  });
  /** The trainer logs of a job's pods the agent still knows, for failure messages and resume checks. */
  const trainerLogs = async (name: string) => {
    const out: { pod: string; log: string }[] = [];
    for (const p of await podsOf(name).catch(() => [])) {
      const path = agent.logPath(NS, p.metadata.name, 'trainer');
      if (path && existsSync(path)) out.push({ pod: p.metadata.name, log: readFileSync(path, 'utf8') });
    }
    return out;
  };
  const diagnose = async (name: string) =>
    [
      operator?.logs(25) ?? '',
      ...(await trainerLogs(name)).map((l) => `--- trainer ${l.pod}:\n${l.log.slice(-2500)}`),
    ].join('\n');
  const until = async (name: string, what: string, ok: (s: Stj) => boolean, timeoutMs = 90_000) => {
    try {
      return await waitFor(
        `${name}: ${what}`,
        async () => {
          const s = await get(name);
          if (conditionOf(s, 'Failed')?.status === 'True' && !ok(s))
            throw new Error(`${name} failed: ${JSON.stringify(s.status)}`);
          return ok(s) ? s : undefined;
        },
        { timeoutMs, intervalMs: 250 },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await diagnose(name)}`);
    }
  };
  const untilCheckpoint = (name: string, step: number, timeoutMs = 60_000) =>
    waitFor(`${name}: a checkpoint at step ≥ ${step}`, async () => checkpointStep(name) >= step, {
      timeoutMs,
      intervalMs: 50,
    }).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await diagnose(name)}`);
    });
  /** Signals the trainer of a job's running pod, found in the agent's records (the API may be down); returns the pod. */
  const signalTrainer = (name: string, signal: NodeJS.Signals) =>
    waitFor(
      `${name}: a running trainer to ${signal}`,
      async () => {
        for (const pod of agent.runningPods(NS).filter((p) => p.startsWith(`${name}-`)))
          if (agent.killContainer(NS, pod, 'trainer', signal)) return pod;
        return undefined;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  /** Samples a job's status until stopped, for the never-rewinds checks. */
  const sampleStatus = (name: string) => {
    const samples: Stj[] = [];
    let on = true;
    const loop = (async () => {
      while (on) {
        try {
          samples.push(await get(name));
        } catch {
          // The API is down: nothing to sample.
        }
        await sleep(200);
      }
    })();
    return {
      samples,
      stop: async () => {
        on = false;
        await loop;
      },
    };
  };
  /** Progress reports never went backwards and the plan never changed while they were sampled. */
  const assertNeverRewound = (samples: readonly Stj[], plan: unknown) => {
    let last = 0;
    for (const s of samples) {
      const step = s.status?.progress?.step;
      if (step !== undefined) {
        assert.ok(step >= last, `status.progress.step went from ${last} to ${step}`);
        last = step;
      }
      if (s.status?.plan) assert.deepEqual(s.status.plan, plan);
      assert.notEqual(s.status?.phase, 'Failed');
    }
  };
  /** What every job that ran to the end must show: the final progress, checkpoint and result. */
  const assertFinished = (done: Stj) => {
    assert.equal(done.status?.phase, 'Succeeded');
    assert.equal(conditionOf(done, 'Succeeded')?.reason, 'TrainingCompleted');
    assert.equal(done.status?.progress?.step, STEPS, 'the final progress report landed');
    assert.equal(done.status?.progress?.fraction, 1);
    assert.equal(done.status?.lastCheckpoint?.step, STEPS, 'the final checkpoint was reported');
    assert.equal(typeof done.status?.result?.validationAccuracy, 'number', 'the result was reported');
  };
  const assertReferenceWeights = async (name: string) => {
    const diff = maxAbsDiff(finalWeights(checkpointsOf(name)), await reference);
    assert.ok(diff <= 1e-6, `${name}: final weights differ from the uninterrupted run's by ${diff}`);
  };

  before(async () => {
    cluster = await startTrainingCluster(
      plane,
      dataDir,
      { [IMAGE]: [process.execPath, POD_TRAINER] },
      { extraClasses: [SPOT, PAIR] },
    );
    agent = cluster.agent;
    for (const [node, taint] of [
      [`${SPOT.name}-0`, SPOT_TAINT],
      [`${PAIR.name}-0`, PAIR_TAINT],
      [`${PAIR.name}-1`, PAIR_TAINT],
    ] as const) {
      await admin.request('PATCH', `/api/v1/nodes/${node}`, {
        body: { spec: { taints: [taint] } },
        contentType: 'application/merge-patch+json',
      });
    }
    await plane.createNamespace(NS);
    const { kubeconfigPath } = await createOperatorAccount(plane, NS, { prefix: 'faults' });
    operator = await operators.supervise({
      identity: 'faults-0',
      kubeconfigPath,
      leaseNamespace: NS,
      leaseName: 'faults',
      namespaces: [NS],
      trainerImage: IMAGE,
    });
    // The dataset exists now (startTrainingCluster made it), so the reference run only reads it.
    reference = referenceRun();
    reference.catch(() => {});
    tmpfsSkip = await mountTmpfs(tmpfsDir, '256k');
  });

  after(async () => {
    await operator?.stop().catch(() => {});
    await operators.stopAll();
    await cluster?.stop();
    await plane?.stop();
    if (!tmpfsSkip) await unmount(tmpfsDir);
    rmSync(work, { recursive: true, force: true });
    operators.cleanUp();
  });

  describe('control-plane outages, one after the other', { concurrency: false }, () => {
    it('api-restart: kube-apiserver restarted mid-job → the operator reconnects, no duplicate children, the status carries on', async (t) => {
      const name = 'api-restart';
      await apply(job(name));
      const running = await until(name, 'phase Running', (s) => s.status?.phase === 'Running');
      await untilCheckpoint(name, 2);
      // Frozen, the trainer is certainly mid-job when the API server goes, however loaded the machine.
      const pod = await signalTrainer(name, 'SIGSTOP');
      const at = checkpointStep(name);
      const sampler = sampleStatus(name);
      try {
        // A crash (SIGKILL): a graceful stop waits for open watches and took over 10 s here.
        const t0 = Date.now();
        await plane.stopComponent('kube-apiserver', { signal: 'SIGKILL' });
        // The trainer goes on while the API server is down.
        assert.equal(agent.killContainer(NS, pod, 'trainer', 'SIGCONT'), true);
        await plane.startComponent('kube-apiserver');
        t.diagnostic(
          `kube-apiserver down ${Date.now() - t0} ms from checkpoint ${at}; the trainer was at ${checkpointStep(name)} when it was back`,
        );
        // A spec change after the restart: only an operator whose watches reconnected sees it (its
        // periodic resync is 10 minutes away).
        await kubectl([
          '-n',
          NS,
          'patch',
          `streamingtrainingjobs.tilestream.io/${name}`,
          '--type=merge',
          '-p',
          JSON.stringify({ spec: { runPolicy: { ttlSecondsAfterFinished: 7200 } } }),
        ]);
        await until(name, 'observedGeneration 2', (s) => s.status?.observedGeneration === 2, 60_000);
        const done = await until(name, 'Succeeded', (s) => s.status?.phase === 'Succeeded');
        await sampler.stop();
        assertFinished(done);
        assertNeverRewound(sampler.samples, running.status?.plan);
        assert.deepEqual(done.status?.plan, running.status?.plan);
        assert.equal(done.status?.startTime, running.status?.startTime);
        assert.equal(done.status?.restarts, 0);
        assert.deepEqual(await childSet(name), oneAttempt(name));
        const pods = await podsOf(name);
        assert.deepEqual(
          pods.map((p) => p.status?.phase),
          ['Succeeded'],
        );
        await assertReferenceWeights(name);
        t.diagnostic(`operator exits so far: [${operator.exits.join(', ')}]`);
      } finally {
        await sampler.stop();
      }
    });

    it('etcd-outage: etcd stopped for 20 s mid-job → training goes on, the leader steps down and leads again, nothing reported during the outage is lost', async (t) => {
      const name = 'etcd-outage';
      await apply(job(name));
      const running = await until(name, 'phase Running', (s) => s.status?.phase === 'Running');
      // Near the end, so the trainer finishes while etcd is down: its pod's exit and its last status
      // report can only reach the API afterwards. Frozen until etcd is down, whatever the load.
      await untilCheckpoint(name, STEPS - 8);
      const pod = await signalTrainer(name, 'SIGSTOP');
      const exitsBefore = operator.exits.length;
      const stoppedAt = checkpointStep(name);
      const t0 = Date.now();
      await plane.stopComponent('etcd');
      try {
        // The API cannot answer a read that needs etcd.
        await waitFor(
          'the API server to fail without etcd',
          async () => {
            try {
              await admin.request('GET', `${STJ}/${name}`, { timeoutMs: 3000 });
              return false;
            } catch {
              return true;
            }
          },
          { timeoutMs: 15_000, intervalMs: 500 },
        );
        assert.equal(agent.killContainer(NS, pod, 'trainer', 'SIGCONT'), true);
        // Training goes on without the control plane: the trainer checkpoints to the end.
        await waitFor(
          `${name}: the last checkpoint during the outage`,
          async () => checkpointStep(name) === STEPS,
          {
            timeoutMs: ETCD_OUTAGE_MS - (Date.now() - t0),
            intervalMs: 100,
          },
        );
        await sleep(ETCD_OUTAGE_MS - (Date.now() - t0));
      } finally {
        await plane.startComponent('etcd');
      }
      t.diagnostic(
        `etcd down ${Date.now() - t0} ms from checkpoint ${stoppedAt}; the trainer reached ${STEPS} meanwhile`,
      );
      const done = await until(name, 'Succeeded', (s) => s.status?.phase === 'Succeeded');
      assertFinished(done);
      assert.deepEqual(done.status?.plan, running.status?.plan);
      assert.equal(done.status?.restarts, 0);
      assert.deepEqual(await childSet(name), oneAttempt(name));
      assert.deepEqual(
        (await podsOf(name)).map((p) => p.status?.phase),
        ['Succeeded'],
      );
      await assertReferenceWeights(name);
      // The final report failed while etcd was down and was sent again: the status above has it.
      const log = (await trainerLogs(name)).map((l) => l.log).join('\n');
      assert.match(log, /could not report progress to faults\/etcd-outage/);
      // 20 s without a renewal is past the 10 s renew deadline: the leader stepped down (exit 1),
      // was started again and leads again.
      const exits = operator.exits.slice(exitsBefore);
      assert.ok(
        exits.includes(1),
        `the operator exited 1 after losing its lease (exits: ${exits.join(', ')})`,
      );
      const lease = await admin.request<{ spec?: { holderIdentity?: string } }>(
        'GET',
        `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/faults`,
      );
      assert.equal(lease.spec?.holderIdentity, 'faults-0');
      t.diagnostic(`operator exits during the outage: [${exits.join(', ')}]`);
    });
  });

  it('sigkill: the trainer SIGKILLed three times → each new pod resumes, the weights equal an uninterrupted run', async (t) => {
    const name = 'sigkill';
    await apply(job(name));
    const kills: number[] = [];
    for (const target of [8, 20, 32]) {
      await untilCheckpoint(name, target);
      // Anywhere inside the following step: mid-tile, mid-backward, mid-checkpoint.
      await sleep(Math.floor(Math.random() * 150));
      const step = checkpointStep(name);
      // From the agent's records, not the API: this runs while the API server may be down.
      const killed = await signalTrainer(name, 'SIGKILL');
      kills.push(step);
      t.diagnostic(`SIGKILLed ${killed} at checkpoint ${step}`);
    }
    const done = await until(name, 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
    assertFinished(done);
    assert.equal(done.status?.restarts, 3);
    assert.deepEqual(await childSet(name), oneAttempt(name));
    const pods = await podsOf(name);
    assert.deepEqual(pods.map((p) => p.status?.phase).sort(), ['Failed', 'Failed', 'Failed', 'Succeeded']);
    // Each replacement resumed from a checkpoint at least as new as the one seen before its kill.
    const resumed = (await trainerLogs(name)).flatMap((l) => resumedSteps(l.log)).sort((a, b) => a - b);
    assert.equal(resumed.length, 3, `three resumes (saw ${resumed.join(', ')})`);
    for (const [i, step] of resumed.entries())
      assert.ok(step >= (kills[i] as number), `resume ${i + 1} at step ${step}, killed after ${kills[i]}`);
    t.diagnostic(`killed after checkpoints ${kills.join(', ')}; resumed at ${resumed.join(', ')}`);
    await assertReferenceWeights(name);
  });

  it('node-lost: the node of a running job vanishes → its pod is garbage-collected, the operator re-plans onto another class, the job resumes', async (t) => {
    const name = 'node-lost';
    const node = `${SPOT.name}-0`;
    await apply(job(name, { tolerations: [{ key: SPOT_TAINT.key, operator: 'Exists' }] }));
    const running = await until(name, 'phase Running', (s) => s.status?.phase === 'Running');
    assert.equal(running.status?.plan?.gpuProduct, SPOT.product, 'planned on the tolerated spot class');
    assert.deepEqual(
      (await podsOf(name)).map((p) => p.spec.nodeName),
      [node],
    );
    await untilCheckpoint(name, 4);
    // The machine is gone: its processes die with no word to the API server, its heartbeats stop,
    // and the Node object is deleted (as a cloud controller or an autoscaler does).
    const lostAt = checkpointStep(name);
    const t0 = Date.now();
    await agent.loseNode(node);
    cluster?.nodes.stopHeartbeat(node);
    await admin.request('DELETE', `/api/v1/nodes/${node}`);
    const replanned = await until(
      name,
      'attempt 1 planned on another class',
      (s) =>
        conditionOf(s, 'Planned')?.message.includes('re-planned') === true && s.status?.phase === 'Running',
      150_000,
    );
    t.diagnostic(
      `re-planned ${((Date.now() - t0) / 1000).toFixed(1)} s after the node vanished at checkpoint ${lostAt}`,
    );
    assert.match(
      conditionOf(replanned, 'Planned')?.message ?? '',
      /^GPU class tesla-p4-\S+ has no node left that admits this job; re-planned: tile 192 px on GPU class /,
    );
    assert.notEqual(replanned.status?.plan?.gpuProduct, SPOT.product);
    const done = await until(name, 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
    assertFinished(done);
    assert.equal(done.status?.plan?.tileSize, TILE);
    assert.deepEqual(await childSet(name), oneAttempt(name, 1));
    const pods = await podsOf(name);
    assert.ok(
      pods.every((p) => p.spec.nodeName !== node),
      `no pod is left on the deleted node: ${pods.map((p) => `${p.metadata.name}@${p.spec.nodeName}`).join(', ')}`,
    );
    const resumed = (await trainerLogs(name)).flatMap((l) => resumedSteps(l.log));
    assert.equal(resumed.length, 1, `one resume on the new class (saw ${resumed.join(', ')})`);
    assert.ok(
      (resumed[0] as number) >= lostAt,
      `resumed at ${resumed[0]}, the node vanished after ${lostAt}`,
    );
    t.diagnostic(
      `restarts ${done.status?.restarts}; resumed at step ${resumed[0]} on ${done.status?.plan?.gpuProduct}`,
    );
    await assertReferenceWeights(name);
  });

  it('node-lost-in-class: the node of a running job vanishes and its class has another → the Job runs a new pod there, no re-plan', async (t) => {
    const name = 'node-lost-in-class';
    await apply(job(name, { tolerations: [{ key: PAIR_TAINT.key, operator: 'Exists' }] }));
    const running = await until(name, 'phase Running', (s) => s.status?.phase === 'Running');
    assert.equal(running.status?.plan?.gpuProduct, PAIR.product, 'planned on the tolerated pair class');
    const [first] = await podsOf(name);
    const node = first?.spec.nodeName as string;
    const other = [`${PAIR.name}-0`, `${PAIR.name}-1`].find((n) => n !== node);
    assert.ok(node && other, `the pod runs on a pair node (${node})`);
    await untilCheckpoint(name, 4);
    const lostAt = checkpointStep(name);
    const t0 = Date.now();
    await agent.loseNode(node);
    cluster?.nodes.stopHeartbeat(node);
    await admin.request('DELETE', `/api/v1/nodes/${node}`);
    await waitFor(
      `${name}: a replacement pod running on ${other}`,
      async () =>
        (await podsOf(name)).some((p) => p.spec.nodeName === other && p.status?.phase === 'Running'),
      { timeoutMs: 150_000, intervalMs: 500 },
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await diagnose(name)}`);
    });
    t.diagnostic(
      `a new pod ran on ${other} ${((Date.now() - t0) / 1000).toFixed(1)} s after ${node} vanished`,
    );
    const done = await until(name, 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
    assertFinished(done);
    // The Job controller replaced the pod within the attempt; the operator had nothing to re-plan.
    assert.deepEqual(done.status?.plan, running.status?.plan);
    assert.deepEqual(await childSet(name), oneAttempt(name));
    assert.equal(conditionOf(done, 'Planned')?.reason, 'PlanFound');
    assert.doesNotMatch(conditionOf(done, 'Planned')?.message ?? '', /re-planned/);
    const resumed = (await trainerLogs(name)).flatMap((l) => resumedSteps(l.log));
    assert.equal(resumed.length, 1, `one resume on ${other} (saw ${resumed.join(', ')})`);
    assert.ok(
      (resumed[0] as number) >= lostAt,
      `resumed at ${resumed[0]}, the node vanished after ${lostAt}`,
    );
    t.diagnostic(`restarts ${done.status?.restarts}; resumed at step ${resumed[0]}`);
    await assertReferenceWeights(name);
  });

  it('volume-full: the checkpoint volume fills up → the job fails at once naming the volume, the last checkpoint is intact, and the job applied again resumes from it', async (t) => {
    if (tmpfsSkip) {
      t.skip(skipUnlessRequired(tmpfsSkip));
      return;
    }
    const name = 'volume-full';
    await apply(job(name));
    await untilCheckpoint(name, 4);
    const filler = fillUp(tmpfsDir);
    const failed = await until(name, 'Failed', (s) => conditionOf(s, 'Failed')?.status === 'True', 60_000);
    const reason = conditionOf(failed, 'Failed');
    t.diagnostic(`Failed ${reason?.reason}: ${reason?.message}`);
    assert.equal(reason?.reason, 'CheckpointVolumeFull');
    // In a pod the path is /checkpoints/…; the node agent puts the pod's root in front of it.
    assert.match(
      reason?.message ?? '',
      /trainer: checkpoint volume full: cannot write checkpoint \S*\/checkpoints\/ckpt-\d+\.tsckpt: the volume is full \(ENOSPC\)/,
    );
    assert.match(reason?.message ?? '', /the previous checkpoint \S*\/checkpoints\/ckpt-\d+\.tsckpt is kept/);
    assert.match(
      reason?.message ?? '',
      /Free space on the checkpoint volume or lower spec\.checkpoint\.keep/,
    );
    // At once: one pod, no retries of a save that cannot succeed.
    const pods = await podsOf(name);
    assert.equal(pods.length, 1);
    assert.equal(
      pods[0]?.status?.containerStatuses?.find((c) => c.name === 'trainer')?.state?.terminated?.exitCode,
      4,
    );
    // Nothing lost: no temporary file left, and the newest checkpoint is the one the message names, intact.
    const files = readdirSync(tmpfsDir);
    assert.deepEqual(
      files.filter((f) => f.includes('.tmp-')),
      [],
    );
    const kept = /the previous checkpoint \S*\/checkpoints\/(ckpt-\d+\.tsckpt) is kept/.exec(
      reason?.message ?? '',
    )?.[1];
    const newest = listCheckpoints(tmpfsDir)[0] ?? '';
    assert.equal(newest, join(tmpfsDir, kept ?? '?'));
    const keptStep = readCheckpoint(newest).step;

    // With room again, the same job applied anew resumes from the kept checkpoint and ends as if never interrupted.
    rmSync(filler);
    await kubectl(['-n', NS, 'delete', `streamingtrainingjobs.tilestream.io/${name}`, '--wait=true']);
    await waitFor(`${name}: its trainer Job gone`, async () => (await childSet(name)).jobs.length === 0, {
      timeoutMs: 60_000,
    });
    await apply(job(name));
    const done = await until(name, 'Succeeded', (s) => s.status?.phase === 'Succeeded', 120_000);
    assertFinished(done);
    const resumed = (await trainerLogs(name)).flatMap((l) => resumedSteps(l.log));
    assert.deepEqual(resumed, [keptStep]);
    await assertReferenceWeights(name);
  });
});
