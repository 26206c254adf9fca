// The rank topology read from the environment: the launcher's per-process variables and the
// operator's per-pod variables, with errors that name the variable at fault.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  batchSplitProblem,
  isRankPosition,
  localPeers,
  podLayoutFromEnv,
  podPeers,
  podRanks,
  rankFromEnv,
  rankProcessEnv,
  TopologyError,
  worldSizeOfSpec,
} from '../../trainer/distributed/topology.ts';

const throwsNaming = (f: () => unknown, variable: string): void =>
  assert.throws(f, (e: Error) => e instanceof TopologyError && e.message.includes(variable), variable);

describe('rank process environment', () => {
  it('is absent without TILESTREAM_RANK', () => {
    assert.equal(rankFromEnv({ TILESTREAM_WORLD_SIZE: '2' }), undefined);
  });

  it('round-trips what the launcher sets', () => {
    const peers = localPeers(3, 29600);
    assert.deepEqual(peers, ['127.0.0.1:29600', '127.0.0.1:29601', '127.0.0.1:29602']);
    const env = rankProcessEnv(2, 1, peers, 30);
    assert.deepEqual(rankFromEnv(env), {
      rank: 2,
      worldSize: 3,
      peers,
      peerTimeoutSeconds: 30,
      localRank: 1,
    });
  });

  it('defaults the peer timeout to 600 s', () => {
    const t = rankFromEnv({ TILESTREAM_RANK: '0', TILESTREAM_WORLD_SIZE: '1', TILESTREAM_PEERS: 'a:1' });
    assert.equal(t?.peerTimeoutSeconds, 600);
  });

  it('refuses missing or inconsistent variables, naming them', () => {
    const ok = { TILESTREAM_RANK: '1', TILESTREAM_WORLD_SIZE: '2', TILESTREAM_PEERS: 'a:1,b:2' };
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_WORLD_SIZE: undefined }), 'TILESTREAM_WORLD_SIZE');
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_RANK: '2' }), 'TILESTREAM_RANK');
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_RANK: 'x' }), 'TILESTREAM_RANK');
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_PEERS: 'a:1' }), 'TILESTREAM_PEERS');
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_PEERS: 'a:1,b' }), 'TILESTREAM_PEERS');
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_PEERS: 'a:1,a:1' }), 'TILESTREAM_PEERS');
    throwsNaming(() => rankFromEnv({ ...ok, TILESTREAM_PEERS: undefined }), 'TILESTREAM_PEERS');
    throwsNaming(
      () => rankFromEnv({ ...ok, TILESTREAM_PEER_TIMEOUT_SECONDS: '0' }),
      'TILESTREAM_PEER_TIMEOUT_SECONDS',
    );
    assert.deepEqual(rankFromEnv({ ...ok, TILESTREAM_PEERS: '[::1]:5,b:2' })?.peers, ['[::1]:5', 'b:2']);
  });
});

describe('pod environment', () => {
  const pod = {
    TILESTREAM_REPLICAS: '2',
    TILESTREAM_RANKS_PER_REPLICA: '4',
    TILESTREAM_REPLICA_INDEX: '1',
    TILESTREAM_REPLICA_HOSTS: 'job-0.svc,job-1.svc',
  };

  it('is absent without TILESTREAM_REPLICAS', () => {
    assert.equal(podLayoutFromEnv({ TILESTREAM_REPLICA_INDEX: '0' }), undefined);
  });

  it('gives the pod its ranks and every peer at base + rank', () => {
    const layout = podLayoutFromEnv(pod);
    assert.ok(layout);
    assert.equal(layout.basePort, 29500);
    assert.deepEqual(podRanks(layout), [4, 5, 6, 7]);
    const peers = podPeers(layout, ['10.0.0.1', 'fd00::2']);
    assert.equal(peers.length, 8);
    assert.equal(peers[3], '10.0.0.1:29503');
    assert.equal(peers[4], '[fd00::2]:29504');
  });

  it("falls back to Kubernetes' JOB_COMPLETION_INDEX and reads the port", () => {
    const layout = podLayoutFromEnv({
      ...pod,
      TILESTREAM_REPLICA_INDEX: undefined,
      JOB_COMPLETION_INDEX: '0',
      TILESTREAM_COLLECTIVE_PORT: '31000',
    });
    assert.equal(layout?.replicaIndex, 0);
    assert.equal(layout?.basePort, 31000);
  });

  it('refuses missing or inconsistent variables, naming them', () => {
    throwsNaming(
      () => podLayoutFromEnv({ ...pod, TILESTREAM_REPLICA_INDEX: undefined }),
      'TILESTREAM_REPLICA_INDEX',
    );
    throwsNaming(
      () => podLayoutFromEnv({ ...pod, TILESTREAM_REPLICA_INDEX: '2' }),
      'TILESTREAM_REPLICA_INDEX',
    );
    throwsNaming(
      () => podLayoutFromEnv({ ...pod, TILESTREAM_RANKS_PER_REPLICA: '0' }),
      'TILESTREAM_RANKS_PER_REPLICA',
    );
    throwsNaming(
      () => podLayoutFromEnv({ ...pod, TILESTREAM_REPLICA_HOSTS: 'a' }),
      'TILESTREAM_REPLICA_HOSTS',
    );
    throwsNaming(
      () => podLayoutFromEnv({ ...pod, TILESTREAM_REPLICA_HOSTS: 'a:1,b:2' }),
      'TILESTREAM_REPLICA_HOSTS',
    );
    throwsNaming(
      () => podLayoutFromEnv({ ...pod, TILESTREAM_COLLECTIVE_PORT: '65530' }),
      'TILESTREAM_COLLECTIVE_PORT',
    );
  });
});

describe('world size and batch split', () => {
  it('is replicas × max(gpus, 1)', () => {
    assert.deepEqual(worldSizeOfSpec({ gpus: 0, replicas: 3 }), {
      replicas: 3,
      ranksPerReplica: 1,
      worldSize: 3,
    });
    assert.deepEqual(worldSizeOfSpec({ gpus: 4, replicas: 2 }), {
      replicas: 2,
      ranksPerReplica: 4,
      worldSize: 8,
    });
    assert.equal(worldSizeOfSpec({ gpus: 1 }).worldSize, 1);
  });

  it('gives rank r positions r, r + N, … of every batch, a short last batch included', () => {
    const take = (rank: number): number[] =>
      Array.from({ length: 10 }, (_, i) => i).filter((i) => isRankPosition(i, 4, rank, 2));
    assert.deepEqual(take(0), [0, 2, 4, 6, 8]);
    assert.deepEqual(take(1), [1, 3, 5, 7, 9]);
  });

  it('refuses a batch size that is not a multiple of the world size, naming both', () => {
    assert.equal(batchSplitProblem(4, 2), undefined);
    assert.equal(batchSplitProblem(3, 1), undefined);
    const p = batchSplitProblem(6, 4);
    assert.match(p ?? '', /spec\.training\.batchSize 6 .* world size 4 .*replicas.*gpus/);
  });
});
