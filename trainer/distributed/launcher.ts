// `tilestream train job.yaml` for a job of several ranks: starts the rank processes and watches them.
// Locally every rank of the job runs on this machine (127.0.0.1, ports base + rank); in a trainer pod
// (the operator's TILESTREAM_REPLICAS … variables) the pod's ranksPerReplica ranks, each on its own
// GPU. Rank output is labelled with the rank (rank 0's progress bar and JSON summary stay the user's
// output), SIGTERM/SIGINT are passed on, and when a rank fails the others are stopped: locally all
// ranks restart from the last checkpoint, up to spec.runPolicy.backoffLimit times; in a pod the
// launcher exits with the failing rank's code and the operator starts the next attempt.

import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { StreamingTrainingJob } from '../../crds/index.ts';
import { cpuAllowance } from '../backend/cpu-allowance.ts';
import { EXIT } from '../train/exit-codes.ts';
import { pipeLabelled } from './rank-output.ts';
import {
  batchSplitProblem,
  COLLECTIVE_PORT_ENV,
  DEFAULT_COLLECTIVE_PORT,
  DEFAULT_PEER_TIMEOUT_SECONDS,
  type Env,
  localPeers,
  PEER_TIMEOUT_ENV,
  type PodLayout,
  podPeers,
  podRanks,
  rankProcessEnv,
  worldSizeOfSpec,
} from './topology.ts';

/** Who runs what: one process (no launcher), all ranks here, or this pod's ranks of a multi-pod job. */
export type LaunchPlan =
  | { kind: 'single' }
  | { kind: 'local'; worldSize: number; gpus: number; backoffLimit: number }
  | { kind: 'pod'; layout: PodLayout; gpus: number };

/** A rank is stopped this long after SIGTERM before SIGKILL (it may be waiting in a collective for a dead peer). */
export const STOP_GRACE_MS = 10_000;

/**
 * What `tilestream train` does with this job here. Throws an Error whose message says what to change
 * when the batch does not split over the ranks.
 */
export function planLaunch(job: StreamingTrainingJob, pod: PodLayout | undefined): LaunchPlan {
  const resources = job.spec.resources as { gpus?: number; replicas?: number } | undefined;
  const gpus = resources?.gpus ?? 1;
  const { worldSize } = pod ? { worldSize: pod.replicas * pod.ranksPerReplica } : worldSizeOfSpec(resources);
  if (worldSize <= 1) return { kind: 'single' };
  const problem = batchSplitProblem(job.spec.training.batchSize, worldSize);
  if (problem) throw new Error(problem);
  if (pod) return { kind: 'pod', layout: pod, gpus };
  return { kind: 'local', worldSize, gpus, backoffLimit: job.spec.runPolicy?.backoffLimit ?? 3 };
}

/** Exit codes after which restarting the ranks cannot help (exit-codes.ts): passed on at once. */
const FINAL_CODES = new Set<number>([
  EXIT.invalidInput,
  EXIT.outOfMemory,
  EXIT.checkpointVolumeFull,
  EXIT.dataNotFound,
  EXIT.stopped,
]);

/** True when a local run restarts its ranks after this failing rank's exit code. */
export function restartable(code: number): boolean {
  return code !== EXIT.ok && !FINAL_CODES.has(code);
}

/** An exit status as one code: 128 + the signal number for a process killed by a signal. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

/** TF_NUM_INTRAOP_THREADS per rank: this machine's (or pod's) CPUs shared by its ranks, at least 1. */
export function threadsPerRank(cpus: number, localRanks: number): number {
  return Math.max(1, Math.floor(cpus / localRanks));
}

/** Whether `count` consecutive ports from `base` can all be bound on 127.0.0.1 now. */
async function portsFree(base: number, count: number): Promise<boolean> {
  for (let p = base; p < base + count; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(p, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (!ok) return false;
  }
  return true;
}

/** The first base port from `base` (in steps of `count`) whose `count` ports are free, for a local job. */
export async function findFreePorts(base: number, count: number): Promise<number> {
  for (let b = base; b + count - 1 <= 65535; b += count) if (await portsFree(b, count)) return b;
  throw new Error(`no ${count} free consecutive ports from ${base} on 127.0.0.1; set ${COLLECTIVE_PORT_ENV}`);
}

interface RankProcess {
  rank: number;
  child: ChildProcess;
  exited: Promise<number>;
  messagePath: string;
}

export interface LaunchOptions {
  /** The command line that starts one rank (node, its flags, the tilestream script, the train arguments). */
  command: readonly string[];
  env: Env;
  /** The launcher's own messages, labelled as the launcher's. */
  say: (level: 'info' | 'warn' | 'error', message: string) => void;
}

/** Runs the plan's ranks to the end; resolves the exit code of `tilestream train`. */
export async function launchRanks(
  plan: Exclude<LaunchPlan, { kind: 'single' }>,
  o: LaunchOptions,
): Promise<number> {
  const messageDir = mkdtempSync(join(tmpdir(), 'tilestream-ranks-'));
  let stopping: NodeJS.Signals | undefined;
  let running: RankProcess[] = [];
  const onSignal = (signal: NodeJS.Signals): void => {
    o.say('warn', `${signal} received: passing it on to ${running.length} ranks`);
    stopping = signal;
    for (const r of running) r.child.kill(signal);
  };
  const onTerm = (): void => onSignal('SIGTERM');
  const onInt = (): void => onSignal('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  try {
    for (let restarts = 0; ; restarts++) {
      const ranks = await rankEnvironments(plan, o);
      running = ranks.map(({ rank, env }) => startRank(rank, env, o, messageDir));
      const outcome = await watch(running, () => stopping !== undefined, o);
      // The pod's first rank speaks for it: rank 0 locally, but replica 1 of a job runs rank 1 (or
      // ranks 2–3 with two GPUs a pod), and its success is rank 1's exit code, not a missing rank 0's.
      const lead = running[0]?.rank ?? 0;
      const final = outcome.failed ?? { rank: lead, code: outcome.codes.get(lead) ?? EXIT.failure };
      keepTerminationMessage(o.env, running.find((r) => r.rank === final.rank)?.messagePath);
      if (!outcome.failed || stopping)
        return stopping ? (outcome.codes.get(lead) ?? EXIT.stopped) : final.code;
      const { rank, code } = outcome.failed;
      if (plan.kind === 'pod') {
        o.say(
          'error',
          `rank ${rank} exited with code ${code}: stopped this pod's ranks; exiting with its code`,
        );
        return code;
      }
      if (!restartable(code) || restarts >= plan.backoffLimit) {
        o.say(
          'error',
          `rank ${rank} exited with code ${code}` +
            (restartable(code)
              ? `; ${restarts} restarts used of spec.runPolicy.backoffLimit ${plan.backoffLimit}: giving up`
              : ' (a restart cannot help)'),
        );
        return code;
      }
      o.say(
        'warn',
        `rank ${rank} exited with code ${code}: restarting all ${plan.worldSize} ranks from the last checkpoint ` +
          `(restart ${restarts + 1} of spec.runPolicy.backoffLimit ${plan.backoffLimit})`,
      );
    }
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    rmSync(messageDir, { recursive: true, force: true });
  }
}

/** Each rank's environment for this start (local ports are looked for again on every restart). */
async function rankEnvironments(
  plan: Exclude<LaunchPlan, { kind: 'single' }>,
  o: LaunchOptions,
): Promise<{ rank: number; env: Record<string, string> }[]> {
  const timeout = Number(o.env[PEER_TIMEOUT_ENV] ?? DEFAULT_PEER_TIMEOUT_SECONDS);
  let peers: string[];
  let ranks: number[];
  if (plan.kind === 'local') {
    const requested = o.env[COLLECTIVE_PORT_ENV];
    const base = requested ? Number(requested) : await findFreePorts(DEFAULT_COLLECTIVE_PORT, plan.worldSize);
    peers = localPeers(plan.worldSize, base);
    ranks = peers.map((_, r) => r);
  } else {
    // Host names: the engine resolves them, asking again until the peer timeout (openCollective).
    peers = podPeers(plan.layout, plan.layout.replicaHosts);
    ranks = podRanks(plan.layout);
  }
  const cpus = cpuAllowance().cpus;
  const threads = String(threadsPerRank(cpus, ranks.length));
  const visible = o.env.CUDA_VISIBLE_DEVICES?.split(',').filter(Boolean);
  return ranks.map((rank, localRank) => ({
    rank,
    env: {
      ...rankProcessEnv(
        rank,
        localRank,
        peers,
        plan.kind === 'pod' ? plan.layout.peerTimeoutSeconds : timeout,
      ),
      // The ranks share the CPUs: each gets its share of compute threads (unless the user chose).
      ...(o.env.TF_NUM_INTRAOP_THREADS === undefined && { TF_NUM_INTRAOP_THREADS: threads }),
      ...(o.env.TF_NUM_INTEROP_THREADS === undefined && { TF_NUM_INTEROP_THREADS: '1' }),
      // TensorFlow's INFO lines (CPU features, oneDNN) from every rank's engine would bury the log.
      ...(o.env.TF_CPP_MIN_LOG_LEVEL === undefined && { TF_CPP_MIN_LOG_LEVEL: '1' }),
      // Rank 0 speaks for the job; the others say only what goes wrong.
      ...(rank !== 0 && o.env.TILESTREAM_LOG_LEVEL === undefined && { TILESTREAM_LOG_LEVEL: 'warn' }),
      // One GPU per rank: the local rank's device (of those the launcher may use, if it was told).
      ...(plan.gpus > 0 && { CUDA_VISIBLE_DEVICES: visible?.[localRank] ?? String(localRank) }),
      TILESTREAM_LAUNCHER_PID: String(process.pid),
    },
  }));
}

function startRank(
  rank: number,
  env: Record<string, string>,
  o: LaunchOptions,
  messageDir: string,
): RankProcess {
  const [cmd, ...args] = o.command as [string, ...string[]];
  const messagePath = join(messageDir, `rank-${rank}`);
  const rank0Terminal = rank === 0 && process.stderr.isTTY === true;
  // A process group of its own: a terminal's Ctrl-C reaches the launcher only, which passes it on once.
  const child = spawn(cmd, args, {
    env: {
      ...o.env,
      ...env,
      ...(o.env.TILESTREAM_TERMINATION_MESSAGE_PATH !== undefined && {
        TILESTREAM_TERMINATION_MESSAGE_PATH: messagePath,
      }),
    },
    stdio: ['ignore', 'pipe', rank0Terminal ? 'inherit' : 'pipe'],
    detached: true,
  });
  // Rank 0's stdout is the job's summary (JSON), passed on untouched; every other line is labelled.
  if (rank === 0) child.stdout?.pipe(process.stdout, { end: false });
  else if (child.stdout) void pipeLabelled(child.stdout, process.stderr, rank);
  if (child.stderr) void pipeLabelled(child.stderr, process.stderr, rank);
  o.say('info', `started rank ${rank} (pid ${child.pid})`);
  const exited = new Promise<number>((resolve) => {
    child.once('error', (e) => {
      o.say('error', `rank ${rank} could not start: ${e.message}`);
      resolve(EXIT.failure);
    });
    child.once('exit', (code, signal) => resolve(exitCodeOf(code, signal)));
  });
  return { rank, child, exited, messagePath };
}

/**
 * Waits for every rank. The first rank to fail (unless the launcher is stopping) has the others
 * stopped: SIGTERM, then SIGKILL after STOP_GRACE_MS.
 */
async function watch(
  ranks: readonly RankProcess[],
  stopping: () => boolean,
  o: LaunchOptions,
): Promise<{ codes: Map<number, number>; failed?: { rank: number; code: number } }> {
  const codes = new Map<number, number>();
  let failed: { rank: number; code: number } | undefined;
  await Promise.all(
    ranks.map(async (r) => {
      const code = await r.exited;
      codes.set(r.rank, code);
      if (code === EXIT.ok || failed || stopping()) return;
      failed = { rank: r.rank, code };
      const others = ranks.filter((x) => !codes.has(x.rank));
      if (others.length > 0) {
        o.say(
          'warn',
          `rank ${r.rank} exited with code ${code}: stopping ranks ${others.map((x) => x.rank).join(', ')}`,
        );
      }
      for (const x of others) x.child.kill('SIGTERM');
      const kill = setTimeout(() => {
        for (const x of others) if (!codes.has(x.rank)) x.child.kill('SIGKILL');
      }, STOP_GRACE_MS);
      await Promise.all(others.map((x) => x.exited));
      clearTimeout(kill);
    }),
  );
  return { codes, ...(failed && { failed }) };
}

/** The deciding rank's termination message becomes the launcher's (Kubernetes shows it in the pod status). */
function keepTerminationMessage(env: Env, from: string | undefined): void {
  const to = env.TILESTREAM_TERMINATION_MESSAGE_PATH;
  if (!to || !from || !existsSync(from)) return;
  try {
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(from, to);
  } catch {
    // Best effort, as the trainer's own termination message.
  }
}
