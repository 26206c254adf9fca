// Data-parallel jobs (spec.resources.replicas × max(gpus, 1) > 1) in the operator's pure parts:
// the Indexed Job, its headless Service and the ranks' environment; placement on a class with room
// for every pod; a failed rank restarting all ranks in a new attempt, counted against
// backoffLimit, exit 6 as PeersUnavailable; status.distributed from the ranks' own reports.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { buildRanksService, rankEnv } from '../../operator/children/ranks.ts';
import { buildTrainerJob, DEFAULT_TRAINER_SETTINGS } from '../../operator/children/trainer-job.ts';
import { buildInventory } from '../../operator/cluster/gpu-inventory.ts';
import { gpuMemoryTable } from '../../operator/cluster/gpu-memory-table.ts';
import { gpuUsage, planPlacement, podSlots } from '../../operator/cluster/placement.ts';
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
  type OwnedStatus,
  ownedStatus,
  statusEvents,
  statusFor,
} from '../../operator/status/compute-status.ts';
import { observeAttempt } from '../../operator/status/observe.ts';
import { ranksSummary } from '../../operator/status/ranks-summary.ts';
import { statusBody } from '../../trainer/train/report-k8s.ts';
import { makeNode, makePod, makeStj, withJobStatus } from './builders.ts';

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const settings = { image: 'img', ...DEFAULT_TRAINER_SETTINGS };
const ranked = (replicas: number, gpus = 1) =>
  makeStj()
    .image(2048)
    .resources({ replicas, gpus })
    .spec((s) => {
      s.training = { ...(s.training as object), batchSize: replicas * Math.max(gpus, 1) * 2 };
    });
const nodes = (): Node[] => [
  makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
  makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
];
const inventory = (n: Node[] = nodes()) => buildInventory(n, { memoryTable: gpuMemoryTable() });

const memo = new Map<string, Sizing | SizingError>();
function size(req: Parameters<typeof sizeTile>[0]): Sizing | SizingError {
  const key = sizingKey(req);
  if (!memo.has(key)) {
    try {
      memo.set(key, sizeTile(req));
    } catch (e) {
      if (!(e instanceof SizingError)) throw e;
      memo.set(key, e);
    }
  }
  return memo.get(key) as Sizing | SizingError;
}

interface Decision {
  create?: AttemptInput;
  deleteJobs: string[];
  status: OwnedStatus;
  events: ReturnType<typeof statusEvents>;
}
function decide(stj: StreamingTrainingJob, o: { jobs?: Job[]; pods?: Pod[]; n?: Node[] } = {}): Decision {
  return decidePolicyAt(stj, o, NOW);
}
function decidePolicyAt(
  stj: StreamingTrainingJob,
  o: { jobs?: Job[]; pods?: Pod[]; n?: Node[] },
  now: number,
): Decision {
  const input: Omit<PolicyInput, 'sizings'> = {
    stj,
    now,
    jobs: o.jobs ?? [],
    pods: o.pods ?? [],
    inventory: inventory(o.n),
    usage: gpuUsage(o.pods ?? []),
    tileLimits: tileLimitsOf(stj.spec),
  };
  const prev = ownedStatus(stj.status);
  for (let pass = 0; pass < 3; pass++) {
    const r = decidePolicy({ ...input, sizings: memo }, false, undefined);
    if (r.kind === 'needs-sizings') {
      for (const req of r.requests) size(req);
      continue;
    }
    const status = statusFor(stj, r.verdict, prev, now);
    const d: Decision = { deleteJobs: [], status, events: statusEvents(prev, status) };
    for (const a of r.actions) {
      if (a.kind === 'create-attempt') d.create = a.attempt;
      else if (a.kind === 'delete-job') d.deleteJobs.push(a.job);
    }
    return d;
  }
  throw new Error('the policy still needs sizings');
}
const condition = (d: Decision, type: string) => d.status.conditions?.find((c) => c.type === type);

/** A rank pod of Job `job` (replica `index`) that ended with `exitCode` at second `at`, or runs. */
function rankPod(
  job: string,
  index: number,
  o: { exitCode?: number; at?: number; message?: string } = {},
): Pod {
  const pod = makePod(job, 'team', {
    name: `${job}-${index}-x`,
    node: 'a100-0',
    phase: o.exitCode === undefined ? 'Running' : 'Failed',
    ...(o.exitCode !== undefined && { exitCode: o.exitCode, message: o.message ?? '' }),
  });
  pod.metadata.annotations = { 'batch.kubernetes.io/job-completion-index': String(index) };
  const t = pod.status?.containerStatuses?.[0]?.state?.terminated;
  if (t && o.at !== undefined) t.finishedAt = new Date(NOW + o.at * 1000).toISOString();
  return pod;
}
const failedJob = (stj: StreamingTrainingJob, d: Decision): Job =>
  withJobStatus(buildTrainerJob({ stj, ...(d.create as AttemptInput), settings }) as unknown as Job, {
    failed: 2,
    conditions: [{ type: 'Failed', status: 'True', reason: 'PodFailurePolicy', message: 'pod failed' }],
  });

describe('the trainer Job of a data-parallel job', () => {
  it('is an Indexed Job of `replicas` pods in the Service subdomain, told the layout of the contract', () => {
    const stj = ranked(2, 4).obj();
    const d = decide(stj);
    assert.ok(d.create);
    const job = buildTrainerJob({ stj, ...d.create, settings: { ...settings, peerTimeoutSeconds: 90 } });
    const spec = job.spec;
    assert.deepEqual(
      [spec?.completionMode, spec?.completions, spec?.parallelism, spec?.backoffLimit],
      ['Indexed', 2, 2, 0],
    );
    const pod = spec?.template.spec;
    assert.equal(pod?.subdomain, 'demo-ranks');
    const c = pod?.containers[0];
    assert.deepEqual(c?.resources?.limits, { 'nvidia.com/gpu': '4' }, 'gpus per pod');
    const env = Object.fromEntries(
      (c?.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]),
    );
    assert.deepEqual(
      {
        replicas: env.TILESTREAM_REPLICAS,
        perReplica: env.TILESTREAM_RANKS_PER_REPLICA,
        hosts: env.TILESTREAM_REPLICA_HOSTS,
        port: env.TILESTREAM_COLLECTIVE_PORT,
        timeout: env.TILESTREAM_PEER_TIMEOUT_SECONDS,
        pod: env.TILESTREAM_POD_NAME,
      },
      {
        replicas: '2',
        perReplica: '4',
        hosts: 'demo-0-0.demo-ranks,demo-0-1.demo-ranks',
        port: '29500',
        timeout: '90',
        pod: 'metadata.name',
      },
    );
    // The replica index is Kubernetes' JOB_COMPLETION_INDEX: the operator must not fix one for all pods.
    assert.equal(env.TILESTREAM_REPLICA_INDEX, undefined);
    // Any non-zero exit of a rank fails the attempt at once (after the single-rank rules, which keep their causes).
    const rules = spec?.podFailurePolicy?.rules ?? [];
    assert.deepEqual(rules.at(-1), {
      action: 'FailJob',
      onExitCodes: { containerName: 'trainer', operator: 'NotIn', values: [0] },
    });
    assert.deepEqual(rules[0], {
      action: 'Ignore',
      onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }],
    });
  });

  it('one pod of one GPU stays a plain Job with its own backoffLimit, no rank environment', () => {
    const stj = makeStj().image(2048).obj();
    const d = decide(stj);
    const job = buildTrainerJob({ stj, ...(d.create as AttemptInput), settings });
    assert.equal(job.spec?.completionMode, undefined);
    assert.equal(job.spec?.completions, 1);
    assert.equal(job.spec?.backoffLimit, 3);
    assert.equal(job.spec?.template.spec?.subdomain, undefined);
    assert.ok(
      !(job.spec?.template.spec?.containers[0]?.env ?? []).some((e) => e.name.startsWith('TILESTREAM_REPL')),
    );
    assert.equal(d.status.distributed, undefined);
  });

  it('one pod of two GPUs is two ranks: the Indexed Job of one pod, both ranks local', () => {
    const stj = ranked(1, 2).obj();
    const env = rankEnv(stj, 'demo-0');
    assert.equal(env.find((e) => e.name === 'TILESTREAM_REPLICA_HOSTS')?.value, 'demo-0-0.demo-ranks');
    assert.equal(env.find((e) => e.name === 'TILESTREAM_RANKS_PER_REPLICA')?.value, '2');
  });

  it('has a headless Service owned by the job that publishes pods before they are ready', () => {
    const svc = buildRanksService(ranked(2).obj());
    assert.equal(svc.metadata?.name, 'demo-ranks');
    assert.equal(svc.spec?.clusterIP, 'None');
    assert.equal(svc.spec?.publishNotReadyAddresses, true);
    assert.deepEqual(svc.spec?.selector, {
      'tilestream.io/job-name': 'demo',
      'app.kubernetes.io/managed-by': 'tilestream-operator',
    });
    assert.equal(svc.metadata?.ownerReferences?.[0]?.kind, 'StreamingTrainingJob');
  });
});

describe('placement of all ranks on one GPU class', () => {
  it('counts pods, not GPUs: a node holds floor(GPUs / gpus per pod) pods', () => {
    const cls = inventory().classes.find((c) => c.product === 'A100-SXM4-40GB');
    assert.ok(cls);
    assert.equal(podSlots(cls.offers, 3), 2);
    assert.equal(podSlots(cls.offers, 3, new Map([['a100-0', new Map([['nvidia.com/gpu', 3]])]])), 1);
    assert.equal(podSlots(cls.offers, 0), 8, 'a CPU rank per pod still takes a slot of one');
  });

  it('skips a class without room for every pod, and says so when no class has room', () => {
    // 2 pods of 4 GPUs: the 8-GPU A100 node holds both, the 4-GPU V100 node one.
    const p = planPlacement({
      spec: ranked(2, 4).obj().spec,
      inventory: inventory(),
      usage: new Map(),
      size: (r) => size(r) as Sizing,
    });
    assert.equal(p.kind === 'gpu' && p.cls.product, 'A100-SXM4-40GB');
    const only = [makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj()];
    const d = decide(ranked(2, 4).obj(), { n: only });
    assert.equal(d.create, undefined);
    assert.equal(condition(d, 'Planned')?.reason, 'NoGPUNodes');
    assert.match(
      condition(d, 'Planned')?.message ?? '',
      /needs 2 trainer pod\(s\) of 4 GPU\(s\) each on one GPU class .*tesla-v100-sxm2-16gb-16384mib holds 1 on 1 node\(s\)/,
    );
  });

  it('says in Planned when the chosen class has free GPUs for only some of the pods now', () => {
    const busy = [makePod('other-0', 'team', { node: 'a100-0', gpus: 7, stj: 'other' })];
    const only = [makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj()];
    const d = decide(ranked(2).obj(), { pods: busy, n: only });
    assert.ok(d.create, 'planned: the pods wait for GPUs of the class');
    assert.match(
      condition(d, 'Planned')?.message ?? '',
      /has free GPUs for 1 of the job's 2 trainer pods now: the others wait for GPUs/,
    );
  });
});

describe('a failed rank restarts all ranks', () => {
  it('exit 6: the next attempt, from the checkpoint, reason PeersUnavailable, one restart however many pods', () => {
    const b = ranked(2);
    const first = decide(b.obj());
    const job = failedJob(b.obj(), first);
    const pods = [
      rankPod('demo-0', 0, { exitCode: 6, at: 1, message: 'rank 1 did not arrive' }),
      rankPod('demo-0', 1, { exitCode: 143, at: 2 }),
    ];
    const d = decide(b.status(first.status).obj(), { jobs: [job], pods });
    assert.equal(d.create?.attempt, 1);
    assert.equal(d.create?.restartsBefore, 1);
    assert.deepEqual(d.deleteJobs, ['demo-0']);
    const planned = condition(d, 'Planned');
    assert.equal(planned?.reason, 'PeersUnavailable');
    assert.match(
      planned?.message ?? '',
      /^a rank in pod demo-0-0-x \(replica 0\) exited with code 6: a peer did not arrive .*trainer: rank 1 did not arrive; all ranks restart from the last checkpoint \(restart 1 of at most spec\.runPolicy\.backoffLimit 3\)/,
    );
    assert.equal(condition(d, 'Running')?.reason, 'TrainerRestarted');
    assert.equal(d.status.restarts, 1);
    assert.ok(d.events.some((e) => e.type === 'Warning' && e.reason === 'PeersUnavailable'));
  });

  it('waits for the ranks still stopping (a rank 0 saving its checkpoint) before the next attempt, not past their grace', () => {
    const b = ranked(2);
    const first = decide(b.obj());
    const job = failedJob(b.obj(), first);
    job.status = {
      ...job.status,
      conditions: [
        {
          type: 'Failed',
          status: 'True',
          reason: 'PodFailurePolicy',
          lastTransitionTime: new Date(NOW - 10_000).toISOString(),
        },
      ],
    };
    const stopping = rankPod('demo-0', 0);
    stopping.spec = { ...stopping.spec, terminationGracePeriodSeconds: 120 };
    const pods = [stopping, rankPod('demo-0', 1, { exitCode: 6, at: -11 })];
    const waiting = decide(b.status(first.status).obj(), { jobs: [job], pods });
    assert.equal(waiting.create, undefined, 'no second rank 0 beside the one still running');
    assert.deepEqual(waiting.deleteJobs, []);
    // 150 s after the failure (grace 120 + 30) the pod is taken as gone (e.g. its node was lost).
    const later = decidePolicyAt(b.status(first.status).obj(), { jobs: [job], pods }, NOW + 141_000);
    assert.equal(later.create?.attempt, 1);
  });

  it('another exit: RankFailed, blaming the first rank that failed, not the ones stopped after it', () => {
    const b = ranked(2);
    const first = decide(b.obj());
    const pods = [
      rankPod('demo-0', 0, { exitCode: 143, at: 5 }),
      rankPod('demo-0', 1, { exitCode: 1, at: 3 }),
    ];
    const obs = observeAttempt(failedJob(b.obj(), first), pods);
    assert.equal(obs.outcome.state === 'failed' && obs.outcome.cause, 'rankFailed');
    assert.match(
      obs.outcome.state === 'failed' ? obs.outcome.message : '',
      /pod demo-0-1-x \(replica 1\) exited with code 1/,
    );
    assert.equal(obs.failedPods, 1);
  });

  it("a rank's out-of-memory exit shrinks the tile of all ranks", () => {
    const b = ranked(2);
    const first = decide(b.obj());
    const pods = [rankPod('demo-0', 0, { exitCode: 6, at: 2 }), rankPod('demo-0', 1, { exitCode: 3, at: 4 })];
    const d = decide(b.status(first.status).obj(), { jobs: [failedJob(b.obj(), first)], pods });
    assert.equal(condition(d, 'Planned')?.reason, 'TileSizeReduced');
    assert.ok((d.create?.plan.tileSize ?? Infinity) < (first.create?.plan.tileSize ?? 0));
  });

  it('after backoffLimit restarts the job fails, exit 6 with reason PeersUnavailable and what to do', () => {
    const b = ranked(2).runPolicy({ backoffLimit: 1 });
    const first = decide(b.obj());
    // Attempt 1 already follows one restart.
    const second = { ...first, create: { ...(first.create as AttemptInput), attempt: 1, restartsBefore: 1 } };
    const job = failedJob(b.obj(), second);
    const d = decide(b.status(first.status).obj(), {
      jobs: [job],
      pods: [rankPod('demo-1', 1, { exitCode: 6, at: 1 })],
    });
    assert.equal(d.create, undefined);
    assert.equal(d.status.phase, 'Failed');
    const failed = condition(d, 'Failed');
    assert.equal(failed?.reason, 'PeersUnavailable');
    assert.match(
      failed?.message ?? '',
      /restarted 1 time\(s\), the most spec\.runPolicy\.backoffLimit \(1\) allows\. .*spec\.runPolicy\.queueName/,
    );
  });
});

describe('status.distributed from the ranks', () => {
  const attemptStart = new Date(NOW).toISOString();
  const at = (s: number) => new Date(NOW + s * 1000).toISOString();

  it('sums the throughput of the ranks reporting in this attempt and names the slowest', () => {
    const stj = ranked(2, 2)
      .status({
        ranks: [
          { rank: 0, imagesPerSecond: 4.5, lastReportTime: at(10), pod: 'demo-0-0-x' },
          { rank: 1, imagesPerSecond: 2.25, lastReportTime: at(10), pod: 'demo-0-0-x' },
          { rank: 2, imagesPerSecond: 4, lastReportTime: at(11), pod: 'demo-0-1-y' },
          { rank: 3, imagesPerSecond: 9, lastReportTime: at(-60), pod: 'old' }, // an earlier attempt
          { rank: 7, imagesPerSecond: 9, lastReportTime: at(10) }, // beyond the world size
        ],
      })
      .obj();
    const s = ranksSummary(stj, attemptStart, 2);
    assert.deepEqual(s?.status, {
      worldSize: 4,
      replicas: 2,
      ranksReporting: 3,
      ranks: '4/4',
      imagesPerSecond: 10.75,
      slowestRank: 1,
      slowestRankImagesPerSecond: 2.25,
      slowestRankPod: 'demo-0-0-x',
    });
    assert.equal(ranksSummary(makeStj().obj(), attemptStart, 1), undefined, 'one rank: no summary');
  });
});

describe("a rank's status report (trainer/train/report-k8s.ts)", () => {
  const now = new Date(NOW);
  const where = { pod: 'demo-0-1-x', node: 'a100-0' };
  it('rank 1 applies only its own status.ranks entry', () => {
    const body = statusBody(
      { progress: { step: 3 }, rank: { phase: 'Running', imagesPerSecond: 2 } },
      { rank: 1, replicaIndex: 1, localRank: 0 },
      where,
      now,
    );
    assert.deepEqual(body, {
      ranks: [
        {
          rank: 1,
          replicaIndex: 1,
          localRank: 0,
          pod: 'demo-0-1-x',
          node: 'a100-0',
          phase: 'Running',
          imagesPerSecond: 2,
          lastReportTime: now.toISOString(),
        },
      ],
    });
  });
  it("rank 0 applies the job's progress and its own entry; a single-rank trainer no entry", () => {
    const rank0 = statusBody(
      { progress: { step: 3 } },
      { rank: 0, replicaIndex: 0, localRank: 0 },
      where,
      now,
    );
    assert.deepEqual(Object.keys(rank0).sort(), ['progress', 'ranks']);
    assert.deepEqual(statusBody({ progress: { step: 3 } }, undefined, where, now), { progress: { step: 3 } });
  });
});
