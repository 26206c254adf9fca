// Where the ranks of a data-parallel job are, from the environment (contract of issue 18):
// - a rank PROCESS reads TILESTREAM_RANK, TILESTREAM_WORLD_SIZE, TILESTREAM_PEERS and
//   TILESTREAM_PEER_TIMEOUT_SECONDS (set by the launcher);
// - a trainer POD reads TILESTREAM_REPLICAS, TILESTREAM_RANKS_PER_REPLICA, TILESTREAM_REPLICA_INDEX
//   (or Kubernetes' JOB_COMPLETION_INDEX), TILESTREAM_REPLICA_HOSTS and TILESTREAM_COLLECTIVE_PORT
//   (set by the operator), which the in-pod launcher expands into per-process environments.
// Pure: every function takes the environment it reads, so tests pass plain objects.

import type { RankTopology } from './collective.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export const RANK_ENV = 'TILESTREAM_RANK';
export const WORLD_SIZE_ENV = 'TILESTREAM_WORLD_SIZE';
export const PEERS_ENV = 'TILESTREAM_PEERS';
export const PEER_TIMEOUT_ENV = 'TILESTREAM_PEER_TIMEOUT_SECONDS';
/** Set by the launcher beside the contract's variables: which rank of its pod (or machine) a process is. */
export const LOCAL_RANK_ENV = 'TILESTREAM_LOCAL_RANK';
export const REPLICAS_ENV = 'TILESTREAM_REPLICAS';
export const RANKS_PER_REPLICA_ENV = 'TILESTREAM_RANKS_PER_REPLICA';
export const REPLICA_INDEX_ENV = 'TILESTREAM_REPLICA_INDEX';
export const JOB_COMPLETION_INDEX_ENV = 'JOB_COMPLETION_INDEX';
export const REPLICA_HOSTS_ENV = 'TILESTREAM_REPLICA_HOSTS';
export const COLLECTIVE_PORT_ENV = 'TILESTREAM_COLLECTIVE_PORT';

export const DEFAULT_PEER_TIMEOUT_SECONDS = 600;
export const DEFAULT_COLLECTIVE_PORT = 29500;

/** An environment variable is missing or malformed; the message names it and what it must hold. */
export class TopologyError extends Error {
  override readonly name = 'TopologyError';
}

/** A rank process's place in the job, with how long it waits for its peers. */
export interface RankEnvironment extends RankTopology {
  readonly peerTimeoutSeconds: number;
  /** The rank's index among the ranks of its pod or machine (0 when the launcher did not say). */
  readonly localRank: number;
}

/** What the operator tells a trainer pod about the job's replicas. */
export interface PodLayout {
  readonly replicas: number;
  readonly ranksPerReplica: number;
  readonly replicaIndex: number;
  /** Host name of each replica's pod, index = replica index. */
  readonly replicaHosts: readonly string[];
  readonly basePort: number;
  readonly peerTimeoutSeconds: number;
}

function integer(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = env[name];
  if (text === undefined || text.trim() === '') throw new TopologyError(`${name} is not set`);
  const n = Number(text.trim());
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new TopologyError(
      `${name}=${JSON.stringify(text)} must be an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}`,
    );
  }
  return n;
}

function optionalInteger(env: Env, name: string, fallback: number, min: number, max?: number): number {
  return env[name] === undefined || env[name] === '' ? fallback : integer(env, name, min, max);
}

/** `host:port` with a non-empty host (a name, IPv4, or a bracketed IPv6 address) and a TCP port. */
function checkPeer(peer: string, index: number): void {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(peer);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new TopologyError(
      `${PEERS_ENV} entry ${index} ${JSON.stringify(peer)} is not host:port (a host name or address and a port 1–65535)`,
    );
  }
}

/**
 * The rank of this process from its environment, or undefined when TILESTREAM_RANK is not set
 * (a single-rank run, or a launcher that still has to start its ranks). Throws TopologyError
 * naming the variable when one is missing or inconsistent.
 */
export function rankFromEnv(env: Env): RankEnvironment | undefined {
  if (env[RANK_ENV] === undefined) return undefined;
  const worldSize = integer(env, WORLD_SIZE_ENV, 1);
  const rank = integer(env, RANK_ENV, 0, worldSize - 1);
  const peersText = env[PEERS_ENV];
  if (peersText === undefined || peersText.trim() === '') {
    throw new TopologyError(`${PEERS_ENV} is not set: it must list ${worldSize} host:port, one per rank`);
  }
  const peers = peersText.split(',').map((p) => p.trim());
  if (peers.length !== worldSize) {
    throw new TopologyError(
      `${PEERS_ENV} lists ${peers.length} peers but ${WORLD_SIZE_ENV} is ${worldSize}: it must name one host:port per rank`,
    );
  }
  peers.forEach(checkPeer);
  const duplicate = peers.find((p, i) => peers.indexOf(p) !== i);
  if (duplicate !== undefined)
    throw new TopologyError(`${PEERS_ENV} names ${duplicate} twice: every rank needs its own port`);
  return {
    rank,
    worldSize,
    peers,
    peerTimeoutSeconds: optionalInteger(env, PEER_TIMEOUT_ENV, DEFAULT_PEER_TIMEOUT_SECONDS, 1),
    localRank: optionalInteger(env, LOCAL_RANK_ENV, 0, 0, worldSize - 1),
  };
}

/**
 * The pod's replica layout from the operator's environment, or undefined when TILESTREAM_REPLICAS is
 * not set (not a multi-replica pod). The replica index comes from TILESTREAM_REPLICA_INDEX or,
 * when unset, JOB_COMPLETION_INDEX (an Indexed Job's pods carry it).
 */
export function podLayoutFromEnv(env: Env): PodLayout | undefined {
  if (env[REPLICAS_ENV] === undefined) return undefined;
  const replicas = integer(env, REPLICAS_ENV, 1);
  const ranksPerReplica = integer(env, RANKS_PER_REPLICA_ENV, 1);
  const indexVar =
    env[REPLICA_INDEX_ENV] !== undefined && env[REPLICA_INDEX_ENV] !== ''
      ? REPLICA_INDEX_ENV
      : env[JOB_COMPLETION_INDEX_ENV] !== undefined
        ? JOB_COMPLETION_INDEX_ENV
        : undefined;
  if (indexVar === undefined) {
    throw new TopologyError(
      `${REPLICA_INDEX_ENV} is not set (nor ${JOB_COMPLETION_INDEX_ENV}): a pod of a ${replicas}-replica job must know its index`,
    );
  }
  const replicaIndex = integer(env, indexVar, 0, replicas - 1);
  const hostsText = env[REPLICA_HOSTS_ENV];
  if (hostsText === undefined || hostsText.trim() === '') {
    throw new TopologyError(
      `${REPLICA_HOSTS_ENV} is not set: it must list ${replicas} host names, one per replica`,
    );
  }
  const replicaHosts = hostsText.split(',').map((h) => h.trim());
  if (replicaHosts.length !== replicas || replicaHosts.some((h) => h === '' || /[\s:]/.test(h))) {
    throw new TopologyError(
      `${REPLICA_HOSTS_ENV}=${JSON.stringify(hostsText)} must list ${replicas} host names (${REPLICAS_ENV}), comma-separated, without ports`,
    );
  }
  const worldSize = replicas * ranksPerReplica;
  const basePort = optionalInteger(
    env,
    COLLECTIVE_PORT_ENV,
    DEFAULT_COLLECTIVE_PORT,
    1,
    65535 - (worldSize - 1),
  );
  return {
    replicas,
    ranksPerReplica,
    replicaIndex,
    replicaHosts,
    basePort,
    peerTimeoutSeconds: optionalInteger(env, PEER_TIMEOUT_ENV, DEFAULT_PEER_TIMEOUT_SECONDS, 1),
  };
}

/** The job's world size from its spec: replicas (pods, default 1) × max(gpus, 1). */
export function worldSizeOfSpec(resources: { gpus?: number; replicas?: number } | undefined): {
  replicas: number;
  ranksPerReplica: number;
  worldSize: number;
} {
  const replicas = resources?.replicas ?? 1;
  const ranksPerReplica = Math.max(resources?.gpus ?? 1, 1);
  return { replicas, ranksPerReplica, worldSize: replicas * ranksPerReplica };
}

/** The global ranks a pod runs: replicaIndex × ranksPerReplica + localRank. */
export function podRanks(layout: Pick<PodLayout, 'replicaIndex' | 'ranksPerReplica'>): number[] {
  return Array.from(
    { length: layout.ranksPerReplica },
    (_, l) => layout.replicaIndex * layout.ranksPerReplica + l,
  );
}

/**
 * Every rank's `host:port`: rank r on the address of its replica (r / ranksPerReplica) at
 * basePort + r (ports unique across the job, so pods sharing a host do not collide).
 */
export function podPeers(
  layout: Pick<PodLayout, 'replicas' | 'ranksPerReplica' | 'basePort'>,
  replicaAddresses: readonly string[],
): string[] {
  const peers: string[] = [];
  for (let r = 0; r < layout.replicas * layout.ranksPerReplica; r++) {
    const address = replicaAddresses[Math.floor(r / layout.ranksPerReplica)] as string;
    peers.push(`${address.includes(':') ? `[${address}]` : address}:${layout.basePort + r}`);
  }
  return peers;
}

/** All ranks on this machine: 127.0.0.1 at basePort + rank. */
export function localPeers(worldSize: number, basePort: number): string[] {
  return Array.from({ length: worldSize }, (_, r) => `127.0.0.1:${basePort + r}`);
}

/** The environment a rank process is started with (added to the launcher's own). */
export function rankProcessEnv(
  rank: number,
  localRank: number,
  peers: readonly string[],
  peerTimeoutSeconds: number,
): Record<string, string> {
  return {
    [RANK_ENV]: String(rank),
    [WORLD_SIZE_ENV]: String(peers.length),
    [PEERS_ENV]: peers.join(','),
    [PEER_TIMEOUT_ENV]: String(peerTimeoutSeconds),
    [LOCAL_RANK_ENV]: String(localRank),
  };
}

/**
 * The positions of a batch this rank streams: r, r + N, r + 2N, … of the batch. `indexInEpoch` is
 * the image's position in the epoch's order; batches are `batchSize` consecutive positions.
 */
export function isRankPosition(
  indexInEpoch: number,
  batchSize: number,
  rank: number,
  worldSize: number,
): boolean {
  return (indexInEpoch % batchSize) % worldSize === rank;
}

/**
 * Why a batch size does not split over the ranks, or undefined when it does (each rank streams
 * batchSize / worldSize images of every batch).
 */
export function batchSplitProblem(batchSize: number, worldSize: number): string | undefined {
  if (worldSize <= 1 || batchSize % worldSize === 0) return undefined;
  return (
    `spec.training.batchSize ${batchSize} is not a multiple of the world size ${worldSize} ` +
    '(spec.resources.replicas × max(spec.resources.gpus, 1)): every rank must stream the same share of a batch. ' +
    `Use a batchSize such as ${Math.max(1, Math.round(batchSize / worldSize)) * worldSize}, or change the replicas or gpus`
  );
}
