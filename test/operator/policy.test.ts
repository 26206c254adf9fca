// The reconcile policy (controller/policy.ts) with the status computed from its verdict
// (status/compute-status.ts), as the reconcile runs them: sizings are planned in this thread when
// the policy asks for them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { buildTrainerJob, DEFAULT_TRAINER_SETTINGS } from '../../operator/children/trainer-job.ts';
import { buildInventory } from '../../operator/cluster/gpu-inventory.ts';
import { gpuMemoryTable } from '../../operator/cluster/gpu-memory-table.ts';
import { gpuUsage } from '../../operator/cluster/placement.ts';
import {
  type Sizing,
  SizingError,
  sizeTile,
  sizingKey,
  tileLimitsOf,
} from '../../operator/cluster/tile-sizing.ts';
import {
  type AttemptInput,
  decide as decidePolicy,
  type PolicyInput,
} from '../../operator/controller/policy.ts';
import type { Job, Node, Pod } from '../../operator/kube/types.ts';
import {
  type EventSpec,
  isTerminal,
  type OwnedStatus,
  ownedStatus,
  statusEvents,
  statusFor,
} from '../../operator/status/compute-status.ts';
import { makeNode, makePod, makeStj, withJobStatus } from './builders.ts';

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const gpuNodes = (): Node[] => [
  makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
  makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
];
/** smallcnn on 20480² images: 2×2 tiles of 10272 px on 40 GiB, 3×3 of 6880 px on 16 GiB. */
const stjBig = () => makeStj().image(20480);

/** Sizings shared by the tests, planned in this thread (the operator plans them on worker threads). */
const memo = new Map<string, Sizing | SizingError>();

function world(
  stj: StreamingTrainingJob,
  o: { nodes?: Node[]; jobs?: Job[]; pods?: Pod[]; now?: number } = {},
): Omit<PolicyInput, 'sizings'> {
  let tileLimits: PolicyInput['tileLimits'];
  try {
    tileLimits = tileLimitsOf(stj.spec);
  } catch (e) {
    if (!(e instanceof SizingError)) throw e;
    tileLimits = e;
  }
  return {
    stj,
    now: o.now ?? NOW,
    jobs: o.jobs ?? [],
    pods: o.pods ?? [],
    inventory: buildInventory(o.nodes ?? gpuNodes(), { memoryTable: gpuMemoryTable() }),
    usage: gpuUsage(o.pods ?? []),
    tileLimits,
  };
}

/** One reconcile's outcome, in the shape the assertions read. */
interface Decision {
  create?: AttemptInput;
  suspendJob?: { name: string; suspend: boolean };
  recordRestarts?: { name: string; restarts: number };
  deleteJobs: string[];
  deleteStj: boolean;
  status: OwnedStatus;
  events: EventSpec[];
  requeueAfterMs?: number;
}

/** The policy, with every sizing it asks for planned first, then the status of its verdict. */
function decide(input: Omit<PolicyInput, 'sizings'>): Decision {
  const prev = ownedStatus(input.stj.status);
  for (let pass = 0; pass < 3; pass++) {
    const r = decidePolicy({ ...input, sizings: memo }, isTerminal(prev), prev.completionTime);
    if (r.kind === 'needs-sizings') {
      for (const req of r.requests) {
        let v: Sizing | SizingError;
        try {
          v = sizeTile(req);
        } catch (e) {
          if (!(e instanceof SizingError)) throw e;
          v = e;
        }
        memo.set(sizingKey(req), v);
      }
      continue;
    }
    const status = statusFor(input.stj, r.verdict, prev, input.now);
    const d: Decision = { deleteJobs: [], deleteStj: false, status, events: statusEvents(prev, status) };
    for (const a of r.actions) {
      if (a.kind === 'create-attempt') d.create = a.attempt;
      else if (a.kind === 'set-suspend') d.suspendJob = { name: a.job, suspend: a.suspend };
      else if (a.kind === 'record-restarts') d.recordRestarts = { name: a.job, restarts: a.restarts };
      else if (a.kind === 'delete-job') d.deleteJobs.push(a.job);
      else d.deleteStj = true;
    }
    if (r.requeueAfterMs !== undefined) d.requeueAfterMs = r.requeueAfterMs;
    return d;
  }
  throw new Error('the policy still needs sizings after 3 passes');
}

/** The trainer Job the operator would have created for a decision, as the API server stores it. */
function jobFrom(stj: StreamingTrainingJob, d: Decision, status: NonNullable<Job['status']> = {}): Job {
  assert.ok(d.create, 'the decision creates a Job');
  const built = buildTrainerJob({
    stj,
    ...d.create,
    settings: { image: 'img', ...DEFAULT_TRAINER_SETTINGS },
  });
  return withJobStatus(built as unknown as Job, status);
}

/** The StreamingTrainingJob after the operator wrote the decision's status. */
const after = (b: ReturnType<typeof makeStj>, d: Decision) => b.status(d.status).obj();

const conditions = (d: Decision) =>
  Object.fromEntries((d.status.conditions ?? []).map((c) => [c.type, `${c.status}/${c.reason}`]));

describe('decide: planning and starting', () => {
  it('a fixed tile below the body minimum (stored before the CRD refused it) is refused naming spec.streaming.tileSize, not a CLI flag', () => {
    const stj = stjBig().minTileSize(64).obj();
    stj.spec.streaming.tileSize = 64;
    const d = decide(world(stj));
    assert.equal(d.create, undefined);
    const planned = d.status.conditions?.find((c) => c.type === 'Planned');
    assert.equal(`${planned?.status}/${planned?.reason}`, 'False/InvalidSpec');
    assert.match(planned?.message ?? '', /^spec\.streaming\.tileSize: 64 is below the minimum tile 80 px/);
    assert.doesNotMatch(planned?.message ?? '', /--tile/);
  });

  it('plans a new job onto the best class, asks for attempt 0, and records the plan', () => {
    const d = decide(world(stjBig().obj()));
    assert.equal(d.create?.attempt, 0);
    assert.equal(d.create?.plan.gpuClass, 'a100-sxm4-40gb-40960mib');
    assert.equal(d.create?.plan.tileSize, 10272);
    assert.equal(d.create?.suspend, false);
    assert.equal(d.status.phase, 'Planned');
    assert.deepEqual(conditions(d), {
      Planned: 'True/PlanFound',
      Running: 'False/TrainerStarting',
      SpecApplied: 'True/SpecCurrent',
    });
    assert.equal(d.status.plan?.tileSize, 10272);
    assert.match(d.status.plan?.memorySaved ?? '', /^\d+\.\dGi \(\d+%\)$/);
    assert.equal(d.status.observedGeneration, 1);
    assert.ok(
      d.status.conditions?.every((c) => c.observedGeneration === 1 && c.lastTransitionTime === iso(NOW)),
    );
    assert.deepEqual(
      d.events.map((e) => `${e.type} ${e.reason}`),
      ['Normal PlanFound'],
    );
    assert.match(
      d.events[0]?.message ?? '',
      /tile 10272 px on GPU class a100-sxm4-40gb-40960mib \(A100-SXM4-40GB, 40\.0Gi per GPU\): predicted peak/,
    );
  });

  it('no GPU can hold the minimum tile: Planned=False NoGPUWithSufficientMemory, no Job, a Warning', () => {
    const stj = makeStj().model({ architecture: 'resnet18' }).image(8192).obj();
    const d = decide(
      world(stj, { nodes: [makeNode('mig').migSingle(7, 'A100-SXM4-80GB', '1g.5gb', 4864).obj()] }),
    );
    assert.equal(d.create, undefined);
    assert.equal(d.status.phase, 'Pending');
    assert.deepEqual(conditions(d), {
      Planned: 'False/NoGPUWithSufficientMemory',
      Running: 'False/NoGPUWithSufficientMemory',
    });
    assert.equal(d.status.phase, 'Pending');
    assert.match(d.status.conditions?.[0]?.message ?? '', /needs 5\.6 GiB/);
    assert.equal(d.events[0]?.type, 'Warning');
  });

  it('is idempotent: with the Job created and the status written, a second decision changes nothing', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first);
    const again = decide(world(after(b, first), { jobs: [job], now: NOW + 60_000 }));
    assert.equal(again.create, undefined);
    assert.equal(again.suspendJob, undefined);
    assert.deepEqual(again.deleteJobs, []);
    assert.deepEqual(again.status, first.status, 'same status, transition times kept');
    assert.deepEqual(again.events, []);
  });

  it('a running trainer pod makes the job Running, and the transition is recorded once', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { active: 1, startTime: iso(NOW + 5000) });
    const pods = [makePod('demo-0', 'team', { node: 'a100-0' })];
    const running = decide(world(after(b, first), { jobs: [job], pods, now: NOW + 10_000 }));
    assert.equal(running.status.phase, 'Running');
    assert.deepEqual(conditions(running), {
      Planned: 'True/PlanFound',
      Running: 'True/TrainerRunning',
      SpecApplied: 'True/SpecCurrent',
    });
    assert.equal(running.status.startTime, iso(NOW + 5000));
    assert.deepEqual(
      running.events.map((e) => e.reason),
      ['TrainerRunning'],
    );
    const planned = running.status.conditions?.find((c) => c.type === 'Planned');
    assert.equal(planned?.lastTransitionTime, iso(NOW), 'Planned did not flip, so its time stays');
  });

  it('deletes Jobs of older attempts', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const j0 = jobFrom(b.obj(), first);
    const j1 = jobFrom(b.obj(), { ...first, create: { ...first.create!, attempt: 1 } });
    const d = decide(world(after(b, first), { jobs: [j0, j1] }));
    assert.deepEqual(d.deleteJobs, ['demo-0']);
  });
});

/** A Job's Failed condition after a FailJob rule of its pod failure policy matched (exit 3). */
const podFailurePolicy = {
  type: 'Failed',
  status: 'True',
  reason: 'PodFailurePolicy',
  message: 'Container trainer for pod team/demo-0-x failed with exit code 3 matching FailJob rule at index 1',
  lastTransitionTime: iso(NOW + 60_000),
} as const;

/** The trainer Job of `d` after its trainer exited 3 (out of memory), and that trainer's pod. */
const oomJob = (b: ReturnType<typeof makeStj>, d: Decision) =>
  jobFrom(b.obj(), d, { failed: 1, startTime: iso(NOW), conditions: [podFailurePolicy] });
const oomPod = (job: string) =>
  makePod(job, 'team', {
    node: 'a100-0',
    phase: 'Failed',
    exitCode: 3,
    message: 'OOM when allocating tensor',
  });

describe('decide: out of memory', () => {
  it('re-plans with a smaller tile as a new attempt, deletes the failed Job, and says TileSizeReduced', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = oomJob(b, first);
    const d = decide(world(after(b, first), { jobs: [job], pods: [oomPod('demo-0')], now: NOW + 61_000 }));
    assert.equal(d.create?.attempt, 1);
    assert.equal(d.create?.tileReductions, 1);
    assert.equal(d.create?.restartsBefore, 1);
    assert.ok((d.create?.plan.tileSize ?? 0) <= 10272 * 0.75, `smaller tile, got ${d.create?.plan.tileSize}`);
    assert.deepEqual(d.deleteJobs, ['demo-0']);
    assert.deepEqual(conditions(d), {
      Planned: 'True/TileSizeReduced',
      Running: 'False/TrainerRestarted',
      SpecApplied: 'True/SpecCurrent',
    });
    assert.equal(d.status.tileReductions, 1);
    assert.equal(d.status.restarts, 1);
    assert.equal(d.status.startTime, iso(NOW));
    const warn = d.events.find((e) => e.reason === 'TileSizeReduced');
    assert.equal(warn?.type, 'Warning');
    assert.match(
      warn?.message ?? '',
      /ran out of memory at tile 10272 px; re-planned with tile \d+ px \(reduction 1 of at most 3\)/,
    );
  });

  it('fails with TileReductionsExhausted once maxTileReductions is used up', () => {
    const b = stjBig().runPolicy({ maxTileReductions: 1 });
    const first = decide(world(b.obj()));
    const job = oomJob(b, { ...first, create: { ...first.create!, attempt: 1, tileReductions: 1 } });
    const d = decide(world(after(b, first), { jobs: [job], pods: [oomPod('demo-1')], now: NOW + 61_000 }));
    assert.equal(d.create, undefined);
    assert.equal(d.status.phase, 'Failed');
    assert.deepEqual(conditions(d), {
      Planned: 'True/PlanFound',
      Running: 'False/TileReductionsExhausted',
      Failed: 'True/TileReductionsExhausted',
    });
    assert.match(
      d.status.conditions?.find((c) => c.type === 'Failed')?.message ?? '',
      /maxTileReductions \(1\)/,
    );
    assert.equal(d.status.completionTime, iso(NOW + 60_000));
  });

  it('fails with OutOfMemory when the tile is already the minimum', () => {
    const b = makeStj().tileSize(80);
    const first = decide(world(b.obj()));
    assert.equal(first.create?.plan.tileSize, 80, 'the minimum tile of this body');
    const d = decide(world(after(b, first), { jobs: [oomJob(b, first)], pods: [oomPod('demo-0')] }));
    assert.deepEqual(conditions(d).Failed, 'True/OutOfMemory');
    assert.match(
      d.events.find((e) => e.reason === 'OutOfMemory')?.message ?? '',
      /even at the minimum tile \(80 px\)/,
    );
  });
});

describe('decide: endings and the TTL', () => {
  it('a completed Job makes the job Succeeded with the completion time; the TTL deletes it later', () => {
    const b = stjBig().runPolicy({ ttlSecondsAfterFinished: 3600 });
    const first = decide(world(b.obj()));
    const done = jobFrom(b.obj(), first, {
      succeeded: 1,
      startTime: iso(NOW),
      completionTime: iso(NOW + 600_000),
      conditions: [{ type: 'Complete', status: 'True' }],
    });
    const d = decide(world(after(b, first), { jobs: [done], now: NOW + 601_000 }));
    assert.equal(d.status.phase, 'Succeeded');
    assert.deepEqual(conditions(d), {
      Planned: 'True/PlanFound',
      Running: 'False/TrainingCompleted',
      Succeeded: 'True/TrainingCompleted',
    });
    assert.equal(d.status.completionTime, iso(NOW + 600_000));
    assert.equal(d.requeueAfterMs, 3600_000 - 1000);
    assert.deepEqual(
      d.events.map((e) => `${e.type} ${e.reason}`),
      ['Normal TrainingCompleted'],
    );
    // Terminal is sticky: even with the Job gone, nothing is re-created; at the TTL the job is deleted.
    const terminal = after(b, d);
    const later = decide(world(terminal, { jobs: [], now: NOW + 600_000 + 3600_000 }));
    assert.equal(later.create, undefined);
    assert.equal(later.deleteStj, true);
    assert.deepEqual(later.status, d.status);
  });

  it('a pod failed by a disruption counts as a restart, and stays counted once the pod garbage collector deletes it', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { startTime: iso(NOW) });
    // PodGC marks the pod of a lost node Failed with DisruptionTarget (ignored by the pod failure
    // policy, so not in job.status.failed), then deletes it; the Job's replacement waits to start.
    const lost = makePod('demo-0', 'team', { node: 'a100-0', phase: 'Failed', disrupted: true });
    const seen = decide(world(after(b, first), { jobs: [job], pods: [lost] }));
    assert.equal(seen.status.restarts, 1);
    // The count is recorded on the Job, where it outlives the pod (not in the status, which is computed).
    assert.deepEqual(seen.recordRestarts, { name: 'demo-0', restarts: 1 });
    job.metadata.annotations = { ...job.metadata.annotations, 'tilestream.io/restarts-seen': '1' };
    const replacement = makePod('demo-0', 'team', { name: 'demo-0-fghij', phase: 'Pending' });
    const gone = decide(world(after(b, seen), { jobs: [job], pods: [replacement] }));
    assert.equal(gone.status.restarts, 1, 'not 0 once the disrupted pod is deleted');
    assert.equal(gone.recordRestarts, undefined, 'recorded once');
    // Carried into the next attempt when its class is gone and the job is re-planned elsewhere.
    const onlyV100 = [makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj()];
    const replanned = decide(world(after(b, gone), { jobs: [job], pods: [replacement], nodes: onlyV100 }));
    assert.equal(replanned.create?.attempt, 1);
    assert.equal(replanned.create?.restartsBefore, 1);
    assert.equal(replanned.status.restarts, 1);
  });

  it('backoffLimit exceeded: Failed with the trainer termination message; restarts count the replaced pods', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const failed = jobFrom(b.obj(), first, {
      failed: 4,
      conditions: [
        {
          type: 'Failed',
          status: 'True',
          reason: 'BackoffLimitExceeded',
          message: 'Job has reached the specified backoff limit',
          lastTransitionTime: iso(NOW + 9000),
        },
      ],
    });
    const pods = [
      makePod('demo-0', 'team', {
        phase: 'Failed',
        exitCode: 1,
        message: 'cannot read /data/train.csv: ENOENT',
      }),
    ];
    const d = decide(world(after(b, first), { jobs: [failed], pods }));
    assert.deepEqual(conditions(d).Failed, 'True/BackoffLimitExceeded');
    assert.equal(d.status.restarts, 3);
    assert.match(
      d.status.conditions?.find((c) => c.type === 'Failed')?.message ?? '',
      /backoff limit; trainer: cannot read \/data\/train\.csv: ENOENT/,
    );
  });

  it('the invalid-manifest exit and the Job deadline map to their reasons', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const invalid = jobFrom(b.obj(), first, { failed: 1, conditions: [podFailurePolicy] });
    const pods = [
      makePod('demo-0', 'team', { phase: 'Failed', exitCode: 2, message: 'spec.data: no images' }),
    ];
    const d = decide(world(after(b, first), { jobs: [invalid], pods }));
    assert.equal(conditions(d).Failed, 'True/InvalidSpec');
    assert.match(
      d.status.conditions?.find((c) => c.type === 'Failed')?.message ?? '',
      /trainer: spec\.data: no images/,
    );
    const late = jobFrom(b.obj(), first, {
      conditions: [
        {
          type: 'Failed',
          status: 'True',
          reason: 'DeadlineExceeded',
          message: 'Job was active longer than specified deadline',
        },
      ],
    });
    assert.equal(
      conditions(decide(world(after(b, first), { jobs: [late] }))).Failed,
      'True/DeadlineExceeded',
    );
  });

  it('the full-checkpoint-volume exit fails the job at once with reason CheckpointVolumeFull and the trainer message', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { failed: 1, conditions: [podFailurePolicy] });
    const said =
      'checkpoint volume full: cannot write checkpoint /checkpoints/ckpt-000000005.tsckpt: the volume is ' +
      'full (ENOSPC); the previous checkpoint /checkpoints/ckpt-000000004.tsckpt is kept';
    const pods = [makePod('demo-0', 'team', { phase: 'Failed', exitCode: 4, message: said })];
    const d = decide(world(after(b, first), { jobs: [job], pods }));
    assert.equal(d.create, undefined, 'no new attempt: it would fail at the next save');
    assert.equal(conditions(d).Failed, 'True/CheckpointVolumeFull');
    assert.equal(d.status.phase, 'Failed');
    assert.match(
      d.status.conditions?.find((c) => c.type === 'Failed')?.message ?? '',
      /trainer: checkpoint volume full: .*the previous checkpoint \/checkpoints\/ckpt-000000004\.tsckpt is kept/,
    );
    assert.ok(
      d.events.some((e) => e.type === 'Warning' && e.reason === 'CheckpointVolumeFull'),
      'a Warning Event names it too',
    );
  });

  it('the cause of a pod-failure-policy failure is the pod exit code, whatever the condition says', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    // The wording names exit code 3; the pod says 2. Kubernetes' wording is not an API.
    const job = jobFrom(b.obj(), first, { failed: 1, conditions: [podFailurePolicy] });
    const pods = [makePod('demo-0', 'team', { phase: 'Failed', exitCode: 2, message: 'bad manifest' })];
    const d = decide(world(after(b, first), { jobs: [job], pods }));
    assert.equal(d.create, undefined, 'no re-plan: the input is invalid, not too big');
    assert.equal(conditions(d).Failed, 'True/InvalidSpec');
  });

  it('a trainer exit for missing data (5) fails with reason DataNotFound, not InvalidSpec', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { failed: 1, conditions: [podFailurePolicy] });
    const said = 'data not found: spec.data.train: no manifest at /data/train.csv; put the manifest there';
    const pods = [makePod('demo-0', 'team', { phase: 'Failed', exitCode: 5, message: said })];
    const d = decide(world(after(b, first), { jobs: [job], pods }));
    assert.equal(d.create, undefined, 'no new attempt: the data is still not there');
    assert.equal(conditions(d).Failed, 'True/DataNotFound');
    assert.equal(conditions(d).Running, 'False/DataNotFound');
    assert.match(
      d.status.conditions?.find((c) => c.type === 'Failed')?.message ?? '',
      /trainer: data not found: spec\.data\.train: no manifest at \/data\/train\.csv/,
    );
    assert.ok(d.events.some((e) => e.type === 'Warning' && e.reason === 'DataNotFound'));
  });

  it('waits while the pod cache has not yet seen the exit the pod failure policy acted on', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { failed: 1, conditions: [podFailurePolicy] });
    const stale = [makePod('demo-0', 'team', { node: 'a100-0', phase: 'Running' })];
    const prev = after(b, first);
    const d = decide(world(prev, { jobs: [job], pods: stale }));
    assert.equal(d.create, undefined);
    assert.deepEqual(d.deleteJobs, []);
    assert.equal(conditions(d).Failed, undefined, 'not failed on a guess');
    assert.deepEqual(d.status.conditions, prev.status?.conditions, 'the status is left as it was');
    assert.equal(d.requeueAfterMs, 1000);
  });

  it('a pod-failure-policy failure whose pods are gone fails with a reason that says so, not a guess from the wording', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { failed: 1, conditions: [podFailurePolicy] });
    const d = decide(world(after(b, first), { jobs: [job], pods: [] }));
    assert.equal(d.create, undefined);
    assert.equal(conditions(d).Failed, 'True/TrainerFailed');
    assert.match(
      d.status.conditions?.find((c) => c.type === 'Failed')?.message ?? '',
      /exit code 2 \(invalid input\), 3 \(out of memory\), 4 \(checkpoint volume full\) or 5 \(data not found\).*pod is gone/,
    );
  });

  it('a re-plan after the deadline has passed fails instead of starting again', () => {
    const b = stjBig().runPolicy({ activeDeadlineSeconds: 600 });
    const first = decide(world(b.obj()));
    assert.equal(first.create?.activeDeadlineSeconds, 600);
    const withStart = b.status({ ...first.status, startTime: iso(NOW) });
    const oom = oomJob(b, first);
    const pods = [oomPod('demo-0')];
    const d = decide(world(withStart.obj(), { jobs: [oom], pods, now: NOW + 700_000 }));
    assert.equal(d.create, undefined);
    assert.equal(conditions(d).Failed, 'True/DeadlineExceeded');
    const early = decide(world(withStart.obj(), { jobs: [oom], pods, now: NOW + 200_000 }));
    assert.equal(early.create?.activeDeadlineSeconds, 400, 'the next attempt gets what is left');
  });
});

describe('decide: status times that cannot be read', () => {
  it('a malformed status.startTime is replaced by the Job start, and the next attempt gets a whole-second deadline', () => {
    const b = stjBig().runPolicy({ activeDeadlineSeconds: 600 });
    const first = decide(world(b.obj()));
    const garbled = b.status({ ...first.status, startTime: 'yesterday at noon' });
    const d = decide(
      world(garbled.obj(), { jobs: [oomJob(b, first)], pods: [oomPod('demo-0')], now: NOW + 200_000 }),
    );
    assert.equal(d.create?.activeDeadlineSeconds, 400, 'counted from the Job start');
    assert.equal(d.status.startTime, iso(NOW), 'the status is repaired');
  });

  it('with no Job start to fall back on, a malformed startTime is dropped and the deadline counts from the next start', () => {
    const b = stjBig().runPolicy({ activeDeadlineSeconds: 600 });
    const garbled = b.status({ startTime: '2026-06-01 12:00' });
    const d = decide(world(garbled.obj()));
    assert.equal(d.create?.activeDeadlineSeconds, 600);
    assert.equal(d.status.startTime, undefined);
  });

  it('a malformed completionTime of a finished job restarts the TTL from now instead of requeueing after NaN ms', () => {
    const b = stjBig().runPolicy({ ttlSecondsAfterFinished: 3600 });
    const first = decide(world(b.obj()));
    const done = jobFrom(b.obj(), first, {
      succeeded: 1,
      startTime: iso(NOW),
      completionTime: iso(NOW + 600_000),
      conditions: [{ type: 'Complete', status: 'True' }],
    });
    const succeeded = decide(world(after(b, first), { jobs: [done], now: NOW + 601_000 }));
    const garbled = b.status({ ...succeeded.status, completionTime: 'soon' });
    const d = decide(world(garbled.obj(), { jobs: [done], now: NOW + 700_000 }));
    assert.equal(d.requeueAfterMs, 3600_000);
    assert.equal(d.status.completionTime, iso(NOW + 700_000));
    assert.equal(d.deleteStj, false);
  });
});

describe('decide: suspend and Kueue', () => {
  it('spec suspend suspends the running Job; resuming flips it back with Suspended=False Resumed', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { active: 1 });
    const pods = [makePod('demo-0', 'team', { node: 'a100-0' })];
    const running = decide(world(after(b, first), { jobs: [job], pods }));
    const held = b.runPolicy({ suspend: true }).meta({ generation: 2 });
    const s = decide(world(after(held, running), { jobs: [job], pods }));
    assert.deepEqual(s.suspendJob, { name: 'demo-0', suspend: true });
    assert.equal(s.status.phase, 'Suspended');
    assert.deepEqual(conditions(s), {
      Planned: 'True/PlanFound',
      Running: 'False/Suspended',
      Suspended: 'True/Suspended',
      SpecApplied: 'True/SpecCurrent',
    });
    assert.ok(s.status.conditions?.every((c) => c.observedGeneration === 2));
    const suspendedJob = { ...job, spec: { ...job.spec, suspend: true }, status: {} };
    const resumedStj = held.runPolicy({ suspend: false }).meta({ generation: 3 });
    const r = decide(world(after(resumedStj, s), { jobs: [suspendedJob] }));
    assert.deepEqual(r.suspendJob, { name: 'demo-0', suspend: false });
    assert.equal(conditions(r).Suspended, 'False/Resumed');
    assert.ok(r.events.some((e) => e.reason === 'Resumed'));
  });

  it('with a queue the Job is created suspended for Kueue to admit, and Kueue’s choice is never overridden', () => {
    const b = stjBig().runPolicy({ queueName: 'gpus' });
    const first = decide(world(b.obj()));
    assert.equal(first.create?.suspend, true);
    assert.equal(first.status.phase, 'Suspended');
    assert.match(
      first.status.conditions?.find((c) => c.type === 'Suspended')?.message ?? '',
      /Kueue to admit .* LocalQueue gpus/,
    );
    const waiting = jobFrom(b.obj(), first);
    const stillWaiting = decide(world(after(b, first), { jobs: [waiting] }));
    assert.equal(stillWaiting.suspendJob, undefined);
    const admitted = { ...waiting, spec: { ...waiting.spec, suspend: false }, status: { active: 1 } };
    const pods = [makePod('demo-0', 'team', { node: 'a100-0' })];
    const running = decide(world(after(b, first), { jobs: [admitted], pods }));
    assert.equal(running.suspendJob, undefined, 'no fight with Kueue');
    assert.equal(running.status.phase, 'Running');
    assert.equal(conditions(running).Suspended, 'False/Resumed');
  });
});

describe('decide: the cluster changes under a waiting job', () => {
  it('re-plans onto another class when the planned class vanished before the pod started', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { active: 1 });
    const pending = [makePod('demo-0', 'team', { phase: 'Pending' })];
    const onlyV100 = [makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj()];
    const d = decide(world(after(b, first), { jobs: [job], pods: pending, nodes: onlyV100 }));
    assert.equal(d.create?.attempt, 1);
    assert.equal(d.create?.plan.gpuClass, 'tesla-v100-sxm2-16gb-16384mib');
    assert.deepEqual(d.deleteJobs, ['demo-0']);
    assert.match(
      d.status.conditions?.[0]?.message ?? '',
      /class a100-sxm4-40gb-40960mib has no node left that admits this job; re-planned/,
    );
  });

  it('keeps a running trainer where it is even if its class disappears from the inventory', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { active: 1 });
    const pods = [makePod('demo-0', 'team', { node: 'a100-0' })];
    const d = decide(world(after(b, first), { jobs: [job], pods, nodes: [] }));
    assert.equal(d.create, undefined);
    assert.equal(d.status.phase, 'Running');
  });

  it('waits while a Job it did not delete is being deleted', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first);
    job.metadata.deletionTimestamp = iso(NOW);
    const d = decide(world(after(b, first), { jobs: [job] }));
    assert.equal(d.create, undefined);
    assert.equal(d.requeueAfterMs, 5000);
  });
});

describe('status from observation (the previous status gives only transition times)', () => {
  it('a status rewritten by hand is recomputed from the trainer Job: plan, reductions, restarts, first start', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { startTime: iso(NOW) });
    const forged = b.status({
      ...first.status,
      phase: 'Pending',
      restarts: 9,
      tileReductions: 5,
      plan: { tileSize: 64 },
      startTime: iso(NOW - 3600_000),
    });
    const pods = [makePod('demo-0', 'team', { node: 'a100-0', phase: 'Running' })];
    const d = decide(world(forged.obj(), { jobs: [job], pods }));
    assert.equal(d.status.phase, 'Running');
    assert.equal(d.status.restarts, 0);
    assert.equal(d.status.tileReductions, 0);
    assert.equal(d.status.plan?.tileSize, 10272);
    assert.equal(d.status.startTime, iso(NOW), "the Job's start, not the one written by hand");
  });

  it('the first start, the restarts and that the trainer ran are carried on the next attempt’s Job', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const oom = oomJob(b, first);
    const replanned = decide(
      world(after(b, first), { jobs: [oom], pods: [oomPod('demo-0')], now: NOW + 120_000 }),
    );
    assert.equal(replanned.create?.firstStart, iso(NOW));
    assert.equal(replanned.create?.trainerRan, true);
    const next = jobFrom(b.obj(), replanned, {});
    assert.equal(next.metadata.annotations?.['tilestream.io/first-start'], iso(NOW));
    // With the failed Job gone, the new Job alone says it all.
    const d = decide(world(after(b, replanned), { jobs: [next], now: NOW + 130_000 }));
    assert.equal(d.status.startTime, iso(NOW));
    assert.equal(d.status.restarts, 1);
    assert.equal(d.status.tileReductions, 1);
    assert.equal(d.status.phase, 'Running', 'the trainer ran before: not back to Planned');
    assert.equal(conditions(d).Running, 'False/TrainerRestarted');
  });
});

describe('the phase never goes back', () => {
  const ORDER = ['Pending', 'Planned', 'Running', 'Succeeded'];

  it('Planned → Running → (pod finished, Job not yet Complete) Running → Succeeded', () => {
    const b = stjBig();
    const phases: string[] = [];
    const first = decide(world(b.obj()));
    phases.push(first.status.phase as string);
    const job = jobFrom(b.obj(), first, { startTime: iso(NOW), active: 1 });
    const running = decide(
      world(after(b, first), { jobs: [job], pods: [makePod('demo-0', 'team', { node: 'a100-0' })] }),
    );
    phases.push(running.status.phase as string);
    // The kubelet reports the pod Succeeded before the Job controller marks the Job Complete.
    const donePod = makePod('demo-0', 'team', { node: 'a100-0', phase: 'Succeeded', exitCode: 0 });
    const finishing = decide(world(after(b, running), { jobs: [job], pods: [donePod] }));
    phases.push(finishing.status.phase as string);
    const complete = withJobStatus(job, {
      succeeded: 1,
      startTime: iso(NOW),
      completionTime: iso(NOW + 600_000),
      conditions: [{ type: 'Complete', status: 'True' }],
    });
    const done = decide(world(after(b, finishing), { jobs: [complete], pods: [donePod] }));
    phases.push(done.status.phase as string);
    assert.deepEqual(phases, ['Planned', 'Running', 'Running', 'Succeeded']);
    for (let i = 1; i < phases.length; i++)
      assert.ok(ORDER.indexOf(phases[i]!) >= ORDER.indexOf(phases[i - 1]!), phases.join(' → '));
  });

  it('a trainer that ran stays Running through a restart and an out-of-memory re-plan, even one with no placement', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const oom = oomJob(b, first);
    const replanned = decide(world(after(b, first), { jobs: [oom], pods: [oomPod('demo-0')] }));
    assert.equal(replanned.status.phase, 'Running');
    // No GPU left at all: the failed Job stays, the status says why, the phase holds.
    const stranded = decide(world(after(b, first), { jobs: [oom], pods: [oomPod('demo-0')], nodes: [] }));
    assert.equal(stranded.create, undefined);
    assert.equal(stranded.status.phase, 'Running');
    assert.equal(conditions(stranded).Planned, 'False/NoGPUNodes');
    assert.equal(conditions(stranded).Running, 'False/NoGPUNodes');
  });
});

describe('spec edits while a trainer Job exists', () => {
  const edited = (b: ReturnType<typeof makeStj>) =>
    b.meta({ generation: 2 }).tileSize(4096).resources({ memory: '24Gi' });

  it('a running trainer keeps its spec: SpecApplied=False SpecChangePending names the fields, with a Warning', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, { startTime: iso(NOW), active: 1 });
    const pods = [makePod('demo-0', 'team', { node: 'a100-0' })];
    const running = decide(world(after(b, first), { jobs: [job], pods }));
    const d = decide(
      world(edited(after(b, running) && b.status(running.status)).obj(), { jobs: [job], pods }),
    );
    assert.equal(d.create, undefined, 'the running trainer is not disturbed');
    assert.deepEqual(d.deleteJobs, []);
    assert.equal(d.status.observedGeneration, 2);
    assert.equal(d.status.phase, 'Running');
    const c = d.status.conditions?.find((x) => x.type === 'SpecApplied');
    assert.equal(`${c?.status}/${c?.reason}`, 'False/SpecChangePending');
    assert.equal(c?.observedGeneration, 2);
    assert.match(
      c?.message ?? '',
      /^spec\.streaming\.tileSize and spec\.resources\.memory changed \(generation 2\) while trainer Job demo-0 runs; .*next attempt/,
    );
    assert.deepEqual(
      d.events.map((e) => `${e.type} ${e.reason}`),
      ['Warning SpecChangePending'],
    );
  });

  it('a suspended (or not yet started) trainer Job is replaced by a new attempt built from the edited spec', () => {
    const b = stjBig().runPolicy({ suspend: true });
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, {});
    const d = decide(world(edited(b.status(first.status)).obj(), { jobs: [job] }));
    assert.equal(d.create?.attempt, 1);
    assert.equal(d.create?.plan.tileSize, 4096);
    assert.equal(d.create?.suspend, true);
    assert.deepEqual(d.deleteJobs, ['demo-0']);
    assert.equal(conditions(d).Planned, 'True/SpecChangeApplied');
    assert.equal(conditions(d).SpecApplied, 'True/SpecCurrent');
    assert.match(
      d.status.conditions?.find((x) => x.type === 'Planned')?.message ?? '',
      /^spec\.streaming\.tileSize and spec\.resources\.memory changed while no trainer was running; re-planned with the new spec: tile 4096 px/,
    );
    assert.ok(d.events.some((e) => e.type === 'Normal' && e.reason === 'SpecChangeApplied'));
    // The new Job carries the new spec: nothing more to do.
    const next = jobFrom(edited(b).obj(), d, {});
    const again = decide(world(edited(b.status(d.status)).obj(), { jobs: [next] }));
    assert.equal(again.create, undefined);
    assert.deepEqual(again.deleteJobs, []);
  });

  it('a Job of an older operator (no spec annotation) is left alone', () => {
    const b = stjBig();
    const first = decide(world(b.obj()));
    const job = jobFrom(b.obj(), first, {});
    delete job.metadata.annotations?.['tilestream.io/spec'];
    const d = decide(world(edited(b.status(first.status)).obj(), { jobs: [job] }));
    assert.equal(d.create, undefined);
    assert.equal(conditions(d).SpecApplied, undefined);
  });
});
