// The ranks of a data-parallel StreamingTrainingJob (world size replicas × max(gpus, 1) > 1; contract
// of issue 18): its trainer is an Indexed Job of `replicas` pods, found by their peers through a
// headless Service owned by the job (pods get hostname `<trainer Job>-<index>` from the Indexed Job
// and subdomain = the Service, so `<trainer Job>-<index>.<service>` resolves to each pod), and each
// pod is told the layout in the environment that trainer/distributed/topology.ts reads. Pure builders.

import type { V1EnvVar, V1Service } from '@kubernetes/client-node';
import { type StreamingTrainingJob, type StreamingTrainingJobSpec, worldSize } from '../../crds/index.ts';
import { childLabels, childMeta, LABEL } from './names.ts';

/** The collective's base port (rank r listens on base + r): trainer/distributed/topology.ts's default. */
export const COLLECTIVE_PORT = 29500;
/** How long a rank waits for its peers before it exits 6 (the trainer's default too). */
export const DEFAULT_PEER_TIMEOUT_SECONDS = 600;

export interface RankLayout {
  replicas: number;
  ranksPerReplica: number;
  worldSize: number;
}

export function rankLayout(spec: StreamingTrainingJobSpec): RankLayout {
  const r = spec.resources;
  const replicas = r.replicas ?? 1;
  return { replicas, ranksPerReplica: Math.max(r.gpus, 1), worldSize: worldSize({ replicas, gpus: r.gpus }) };
}

/** A job of more than one rank: an Indexed Job, a headless Service, the ranks' environment. */
export const isDistributed = (spec: StreamingTrainingJobSpec): boolean => rankLayout(spec).worldSize > 1;

/** The headless Service of a job's ranks: `<stj>-ranks` (STJ names are at most 52, so at most 58). */
export const ranksServiceName = (stjName: string): string => `${stjName}-ranks`;

/**
 * Host names of the replicas of attempt Job `jobName`, index = replica index: the Indexed Job names
 * pod i's host `<jobName>-<i>`, and the Service is its subdomain (resolved with the pod's search path).
 */
export function replicaHosts(stjName: string, jobName: string, replicas: number): string[] {
  return Array.from({ length: replicas }, (_, i) => `${jobName}-${i}.${ranksServiceName(stjName)}`);
}

/**
 * The headless Service: no cluster IP, no ports (the ranks dial each other's pod addresses), and
 * records for pods that are not ready yet (publishNotReadyAddresses), since a rank is only ready
 * once its peers have found it. It selects the job's trainer pods of every attempt; their host
 * names differ by attempt, so a terminating pod of an older attempt never answers for a new one.
 */
export function buildRanksService(stj: StreamingTrainingJob): V1Service {
  const labels = childLabels(stj);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMeta(stj, ranksServiceName(stj.metadata.name)),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: {
        [LABEL.job]: labels[LABEL.job] as string,
        [LABEL.managedBy]: labels[LABEL.managedBy] as string,
      },
    },
  };
}

/** The environment of a trainer pod of attempt Job `jobName` (replica index: JOB_COMPLETION_INDEX). */
export function rankEnv(
  stj: StreamingTrainingJob,
  jobName: string,
  peerTimeoutSeconds: number = DEFAULT_PEER_TIMEOUT_SECONDS,
): V1EnvVar[] {
  const l = rankLayout(stj.spec);
  return [
    { name: 'TILESTREAM_REPLICAS', value: String(l.replicas) },
    { name: 'TILESTREAM_RANKS_PER_REPLICA', value: String(l.ranksPerReplica) },
    {
      name: 'TILESTREAM_REPLICA_HOSTS',
      value: replicaHosts(stj.metadata.name, jobName, l.replicas).join(','),
    },
    { name: 'TILESTREAM_COLLECTIVE_PORT', value: String(COLLECTIVE_PORT) },
    { name: 'TILESTREAM_PEER_TIMEOUT_SECONDS', value: String(peerTimeoutSeconds) },
    // Where a rank runs, for its status.ranks entry (trainer/train/report-k8s.ts).
    { name: 'TILESTREAM_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'TILESTREAM_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
  ];
}
