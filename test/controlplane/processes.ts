// Child processes of the test control plane and the node agent: each runs in its own process group
// (so `sh -c` grandchildren die with it), logs to a file, and is killed when this Node process
// exits for any reason. Pids are also written to a file so that the next run can reap what a crashed
// (SIGKILLed) run left behind.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  /** -1 when the spawn itself failed (then `exited` resolves 127). */
  pid: number;
  logPath: string;
  /** Resolves with the exit code (or 128+signal number) once the process has exited. */
  exited: Promise<number>;
  exitCode: number | undefined;
  /** SIGTERM to the group, SIGKILL after graceMs; resolves once exited. */
  stop(graceMs?: number): Promise<number>;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Where stdout+stderr go (appended). */
  logPath: string;
  /** File the pid is recorded in (one line per process) for reaping after a crash. */
  pidFile?: string;
}

const live = new Set<ManagedProcess>();
let hooksInstalled = false;

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

function killGroup(pid: number, signal: NodeJS.Signals): void {
  // kill(-0) would signal our own process group: never without a real pid.
  if (!(pid > 1)) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Group already gone; fall back to the leader alone in case it changed its group.
    try {
      process.kill(pid, signal);
    } catch {
      // Already exited.
    }
  }
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL everything still registered.
  process.on('exit', () => {
    for (const p of live) killGroup(p.pid, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const p of live) killGroup(p.pid, 'SIGKILL');
      // Re-raise the default behaviour now that the children are gone.
      process.exit(128 + (SIGNAL_NUMBERS[sig] ?? 1));
    });
  }
}

export function spawnManaged(
  name: string,
  command: string,
  args: readonly string[],
  opts: SpawnOptions,
): ManagedProcess {
  installExitHooks();
  const fd = openSync(opts.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true, // own process group: kill(-pid) reaches its children too
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  // detached children would keep the event loop alive otherwise; the plane's stop() is explicit.
  child.unref();
  // Without a pid the spawn failed (e.g. ENOENT); the 'error' event below reports exit 127.
  const pid = child.pid ?? -1;
  if (opts.pidFile && pid > 0) writeFileSync(opts.pidFile, `${pid} ${command}\n`, { flag: 'a' });

  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((r) => {
    resolveExit = r;
  });
  const managed: ManagedProcess = {
    name,
    child,
    pid,
    logPath: opts.logPath,
    exited,
    exitCode: undefined,
    async stop(graceMs = 10_000) {
      if (managed.exitCode !== undefined) return managed.exitCode;
      killGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
        // Anything the leader left in its group goes too.
        killGroup(pid, 'SIGKILL');
      }
    },
  };
  const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
    if (managed.exitCode !== undefined) return;
    managed.exitCode = code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0);
    live.delete(managed);
    resolveExit(managed.exitCode);
  };
  child.on('exit', onExit);
  child.on('error', (err) => {
    writeFileSync(opts.logPath, `\n[spawn error] ${err.message}\n`, { flag: 'a' });
    onExit(127, null);
  });
  if (pid > 0) live.add(managed);
  return managed;
}

/** Last lines of a log file, for error messages. */
export function logTail(path: string, lines = 25): string {
  try {
    const text = readFileSync(path, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Kills the processes recorded by earlier runs whose owning Node process is gone (a run that was
 * SIGKILLed cannot clean up). Each run dir holds `owner.pid` and `pids` (pid + command). A pid is
 * only killed when its /proc cmdline still names the recorded command, so a recycled pid is safe.
 */
export function reapStaleRuns(prefix: string): number {
  let reaped = 0;
  let entries: string[];
  try {
    entries = readdirSync(tmpdir()).filter((e) => e.startsWith(prefix));
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const dir = join(tmpdir(), entry);
    const ownerFile = join(dir, 'owner.pid');
    if (!existsSync(ownerFile)) continue;
    const owner = Number(readFileSync(ownerFile, 'utf8').trim());
    if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) continue;
    const pidsFile = join(dir, 'pids');
    if (existsSync(pidsFile)) {
      for (const line of readFileSync(pidsFile, 'utf8').split('\n')) {
        const [pidText, command] = line.split(' ', 2);
        const pid = Number(pidText);
        if (!Number.isInteger(pid) || pid <= 0 || !command) continue;
        let cmdline = '';
        try {
          cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          continue;
        }
        if (!cmdline.startsWith(command)) continue;
        killGroup(pid, 'SIGKILL');
        reaped++;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  return reaped;
}
