// The operator as a separate `tilestream operator` process, so that a test can SIGKILL it as a
// crash would (runOperator in-process can only be stopped gracefully). It listens on port 0 and the
// chosen ports are read from its startup log line, so there is no race for a free port. Its pids go
// to a `tilestream-cp-*` run dir with an owner.pid, so the next control plane start reaps operators
// that a SIGKILLed test run left behind (test/controlplane/processes.ts reapStaleRuns).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUN_DIR_PREFIX } from '../controlplane/harness.ts';
import { logTail, type ManagedProcess, spawnManaged } from '../controlplane/processes.ts';
import { waitFor } from '../controlplane/wait.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));

export interface OperatorProcessOptions {
  /** Leader election identity (also names the log file). */
  identity: string;
  /** The operator's service-account kubeconfig (test/controlplane/operator-account.ts). */
  kubeconfigPath: string;
  leaseNamespace: string;
  leaseName: string;
  /** Namespaces it watches, so operators of different scenarios on one plane stay apart. */
  namespaces: readonly string[];
  trainerImage: string;
}

export interface OperatorProcess {
  identity: string;
  process: ManagedProcess;
  metricsPort: number;
  healthPort: number;
  /** Its `leader_election_master_status` for the lease; undefined when /metrics does not answer. */
  leaderGauge(): Promise<number | undefined>;
  /** SIGKILL, as a crash or an OOM kill would: no drain, no lease release. Resolves with the exit code. */
  crash(): Promise<number>;
  /** SIGTERM (drain, release the lease), SIGKILL after the grace period. */
  stop(graceMs?: number): Promise<number>;
  logTail(lines?: number): string;
}

/**
 * An operator process that is started again whenever it exits, as kubelet restarts the operator's
 * container (restartPolicy Always): the operator exits 1 when it loses its Lease and comes back as a
 * candidate. `exits` lists the exit codes of the runs that ended, in order.
 */
export interface SupervisedOperator {
  readonly runs: readonly OperatorProcess[];
  readonly exits: readonly number[];
  /** The run now going (or the last one, once stopped). */
  current(): OperatorProcess;
  /** The logs of every run, newest last. */
  logs(linesPerRun?: number): string;
  /** Stops restarting and stops the current run (SIGTERM, drain, release the lease). */
  stop(): Promise<void>;
}

/** Starts and stops operator processes; stopAll() in after() kills whatever is still running. */
export class OperatorProcesses {
  readonly #all: OperatorProcess[] = [];
  #dir: string | undefined;
  #started = 0;

  /** The run dir with the logs; made on the first start (a skipped suite leaves nothing behind). */
  get dir(): string {
    if (!this.#dir) {
      this.#dir = mkdtempSync(join(tmpdir(), `${RUN_DIR_PREFIX}operators-`));
      writeFileSync(join(this.#dir, 'owner.pid'), `${process.pid}\n`);
    }
    return this.#dir;
  }

  async start(o: OperatorProcessOptions): Promise<OperatorProcess> {
    const logPath = join(this.dir, `operator-${o.identity}-${++this.#started}.log`);
    const args = [
      BIN,
      'operator',
      `--identity=${o.identity}`,
      `--lease-namespace=${o.leaseNamespace}`,
      `--lease-name=${o.leaseName}`,
      `--namespace=${o.namespaces.join(',')}`,
      `--trainer-image=${o.trainerImage}`,
      '--metrics-port=0',
      '--health-port=0',
      '--bind-address=127.0.0.1',
    ];
    // Only the service account's credentials: no admin kubeconfig, no in-cluster fallback.
    const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: o.kubeconfigPath };
    for (const k of Object.keys(env)) if (k.startsWith('TILESTREAM_')) delete env[k];
    const proc = spawnManaged(`operator ${o.identity}`, process.execPath, args, {
      logPath,
      env,
      pidFile: join(this.dir, 'pids'),
    });
    const handle = (ports: { metricsPort: number; healthPort: number }): OperatorProcess => ({
      identity: o.identity,
      process: proc,
      ...ports,
      leaderGauge: () => leaderGauge(ports.metricsPort, o.leaseName),
      async crash() {
        if (proc.exitCode !== undefined) return proc.exitCode;
        try {
          process.kill(-proc.pid, 'SIGKILL');
        } catch {
          // Exited between the check and the kill.
        }
        return proc.exited;
      },
      stop: (graceMs = 10_000) => proc.stop(graceMs),
      logTail: (lines = 40) => logTail(logPath, lines),
    });
    try {
      const ports = await waitFor(
        `operator ${o.identity} to listen`,
        async () => {
          if (proc.exitCode !== undefined) throw new Error(`exited ${proc.exitCode}`);
          return startupPorts(readFileSync(logPath, 'utf8'));
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      const started = handle(ports);
      this.#all.push(started);
      return started;
    } catch (e) {
      await proc.stop(1000);
      throw new Error(`${(e as Error).message}\n${logTail(logPath)}`);
    }
  }

  /**
   * Starts an operator and starts it again `restartDelayMs` after each exit until stop(). A run
   * that fails to start (it exits before it listens) is retried the same way.
   */
  async supervise(o: OperatorProcessOptions, restartDelayMs = 500): Promise<SupervisedOperator> {
    const runs: OperatorProcess[] = [];
    const exits: number[] = [];
    let stopping = false;
    const startOne = async (): Promise<void> => {
      for (;;) {
        try {
          const run = await this.start(o);
          runs.push(run);
          void run.process.exited.then(async (code) => {
            exits.push(code);
            if (stopping) return;
            await new Promise((r) => setTimeout(r, restartDelayMs));
            if (!stopping) await startOne();
          });
          return;
        } catch {
          if (stopping) return;
          await new Promise((r) => setTimeout(r, restartDelayMs));
        }
      }
    };
    await startOne();
    return {
      runs,
      exits,
      current: () => runs[runs.length - 1] as OperatorProcess,
      logs: (lines = 40) =>
        runs.map((r, i) => `--- operator ${r.identity} run ${i + 1}:\n${r.logTail(lines)}`).join('\n'),
      async stop() {
        stopping = true;
        await runs[runs.length - 1]?.stop();
      },
    };
  }

  /** Kills every operator still running (after() even when a test failed). */
  async stopAll(): Promise<void> {
    await Promise.all(this.#all.map((p) => p.crash()));
  }

  /** Removes the logs (keep them with TILESTREAM_KEEP_CP=1, as the control plane's). */
  cleanUp(): void {
    if (this.#dir && !process.env.TILESTREAM_KEEP_CP) rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** The ports from the operator's 'tilestream operator starting' JSON log line. */
export function startupPorts(log: string): { metricsPort: number; healthPort: number } | undefined {
  for (const line of log.split('\n')) {
    if (!line.includes('tilestream operator starting')) continue;
    try {
      const entry = JSON.parse(line) as { metricsPort?: unknown; healthPort?: unknown };
      if (typeof entry.metricsPort === 'number' && typeof entry.healthPort === 'number')
        return { metricsPort: entry.metricsPort, healthPort: entry.healthPort };
    } catch {
      // A partly written line: read again on the next poll.
    }
  }
  return undefined;
}

/** The value of `leader_election_master_status{name="<lease>"}` in a Prometheus text exposition. */
export function leaderGaugeValue(exposition: string, leaseName: string): number | undefined {
  const re = /^leader_election_master_status\{([^}]*)\}\s+(\S+)$/;
  for (const line of exposition.split('\n')) {
    const m = re.exec(line.trim());
    if (m?.[1]?.includes(`name="${leaseName}"`)) return Number(m[2]);
  }
  return undefined;
}

async function leaderGauge(port: number, leaseName: string): Promise<number | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) return undefined;
    return leaderGaugeValue(await res.text(), leaseName);
  } catch {
    return undefined;
  }
}
