// The launcher's decisions without processes: who runs what, which failures restart the ranks, how
// exit statuses and threads are counted, how rank output is labelled.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { validateJob } from '../../crds/validate.ts';
import { exitCodeOf, planLaunch, restartable, threadsPerRank } from '../../trainer/distributed/launcher.ts';
import { labelLine } from '../../trainer/distributed/rank-output.ts';
import { podLayoutFromEnv } from '../../trainer/distributed/topology.ts';
import { EXIT } from '../../trainer/train/exit-codes.ts';

function job(resources: Record<string, unknown>, batchSize = 4, backoffLimit?: number): StreamingTrainingJob {
  const r = validateJob({
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name: 'j' },
    spec: {
      model: { architecture: 'smallcnn', head: { pooling: 'max', classes: 1 } },
      data: { root: '/d', train: 't.csv', imageSize: { height: 64, width: 64 }, channels: 1 },
      training: {
        epochs: 1,
        batchSize,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'sgd', learningRate: 0.1 },
        backend: 'auto',
      },
      resources,
      ...(backoffLimit !== undefined && { runPolicy: { backoffLimit } }),
    },
  });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.problems));
  return r.job;
}

describe('planLaunch', () => {
  it('runs one rank in this process', () => {
    assert.deepEqual(planLaunch(job({ gpus: 1 }), undefined), { kind: 'single' });
    assert.deepEqual(planLaunch(job({ gpus: 0, replicas: 1 }), undefined), { kind: 'single' });
  });

  it('starts every rank locally, with the backoffLimit of the manifest', () => {
    assert.deepEqual(planLaunch(job({ gpus: 0, replicas: 4 }, 8, 5), undefined), {
      kind: 'local',
      worldSize: 4,
      gpus: 0,
      backoffLimit: 5,
    });
    assert.equal(
      (planLaunch(job({ gpus: 2, replicas: 1 }), undefined) as { backoffLimit: number }).backoffLimit,
      3,
    );
  });

  it("starts a pod's own ranks from the operator's environment", () => {
    const layout = podLayoutFromEnv({
      TILESTREAM_REPLICAS: '2',
      TILESTREAM_RANKS_PER_REPLICA: '2',
      TILESTREAM_REPLICA_INDEX: '1',
      TILESTREAM_REPLICA_HOSTS: 'a,b',
    });
    const plan = planLaunch(job({ gpus: 2, replicas: 2 }), layout);
    assert.equal(plan.kind, 'pod');
    assert.equal(plan.kind === 'pod' && plan.gpus, 2);
  });

  it('refuses a batch that does not split over the ranks', () => {
    // The CRD refuses it too; a pod's environment can still disagree with an edited manifest.
    const layout = podLayoutFromEnv({
      TILESTREAM_REPLICAS: '3',
      TILESTREAM_RANKS_PER_REPLICA: '1',
      TILESTREAM_REPLICA_INDEX: '0',
      TILESTREAM_REPLICA_HOSTS: 'a,b,c',
    });
    assert.throws(() => planLaunch(job({ gpus: 0, replicas: 2 }), layout), /batchSize 4 .*world size 3/);
  });
});

describe('failures and exit codes', () => {
  it('restarts after a crash, a lost peer or a kill, not after what a restart cannot fix', () => {
    for (const code of [EXIT.failure, EXIT.peersUnavailable, 137, 139])
      assert.ok(restartable(code), String(code));
    for (const code of [
      EXIT.ok,
      EXIT.invalidInput,
      EXIT.outOfMemory,
      EXIT.checkpointVolumeFull,
      EXIT.dataNotFound,
      EXIT.stopped,
    ])
      assert.ok(!restartable(code), String(code));
  });

  it('counts a signal as 128 + its number', () => {
    assert.equal(exitCodeOf(null, 'SIGKILL'), 137);
    assert.equal(exitCodeOf(null, 'SIGTERM'), 143);
    assert.equal(exitCodeOf(6, null), 6);
  });

  it('shares the CPUs between the local ranks, at least one thread each', () => {
    assert.equal(threadsPerRank(8, 2), 4);
    assert.equal(threadsPerRank(2, 4), 1);
    assert.equal(threadsPerRank(3, 2), 1);
  });
});

describe('rank output', () => {
  it('adds the rank to a JSON line and prefixes any other line', () => {
    assert.equal(labelLine('{"level":"warn","message":"x"}', 3), '{"rank":3,"level":"warn","message":"x"}');
    assert.equal(labelLine('W0000 context.cc:649] note', 1), '[rank 1] W0000 context.cc:649] note');
    assert.equal(labelLine('{not json}', 2), '[rank 2] {not json}');
    assert.equal(labelLine('[1,2]', 2), '[rank 2] [1,2]');
  });
});
