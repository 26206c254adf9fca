import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { reapStaleRuns, spawnManaged } from './processes.ts';

// A killed process whose parent died may stay a zombie here (this sandbox's pid 1 reaps slowly),
// and kill(pid, 0) succeeds on zombies: read the state instead.
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'tilestream-proc-test-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('managed processes', () => {
  it('stop() ends the whole process group, grandchildren included', async () => {
    const dir = tempDir();
    const p = spawnManaged('sh', 'sh', ['-c', 'sleep 60 & echo $! > child.pid; wait'], {
      cwd: dir,
      logPath: join(dir, 'log'),
    });
    const childPidFile = join(dir, 'child.pid');
    // The shell creates the file before it writes the pid: wait for a whole line (an empty read
    // made this fail once under load).
    const pidLine = (): string => (existsSync(childPidFile) ? readFileSync(childPidFile, 'utf8') : '');
    for (let i = 0; i < 250 && !/^\d+\n$/.test(pidLine()); i++) await sleep(20);
    const grandchild = Number(pidLine());
    assert.ok(alive(grandchild));
    const code = await p.stop(2000);
    assert.equal(code, 143, 'sh ends by SIGTERM');
    await sleep(50);
    assert.ok(!alive(grandchild), 'the background sleep died with its group');
  });

  it('reports exit codes and 128+signal', async () => {
    const dir = tempDir();
    assert.equal(await spawnManaged('x', 'sh', ['-c', 'exit 7'], { logPath: join(dir, 'a') }).exited, 7);
    assert.equal(
      await spawnManaged('x', 'sh', ['-c', 'kill -9 $$'], { logPath: join(dir, 'b') }).exited,
      137,
    );
    assert.equal(await spawnManaged('x', '/nonexistent/binary', [], { logPath: join(dir, 'c') }).exited, 127);
    assert.match(readFileSync(join(dir, 'c'), 'utf8'), /spawn error/);
  });

  it('reaps processes recorded by a run whose owner died, and only those', async () => {
    const prefix = `tilestream-reap-test-${process.pid}-`;
    const dir = join(tmpdir(), `${prefix}a`);
    mkdirSync(dir, { recursive: true });
    const victim = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    victim.unref();
    const bystander = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    bystander.unref();
    assert.ok(victim.pid && bystander.pid);
    // A dead owner: a pid that has exited.
    const dead = spawn('true');
    await new Promise((r) => dead.on('exit', r));
    writeFileSync(join(dir, 'owner.pid'), `${dead.pid}\n`);
    // The bystander is recorded under another command name, as a recycled pid would be.
    writeFileSync(join(dir, 'pids'), `${victim.pid} sleep\n${bystander.pid} /usr/bin/etcd\n`);
    assert.equal(reapStaleRuns(prefix), 1);
    await sleep(50);
    assert.ok(!alive(victim.pid), 'recorded process killed');
    assert.ok(alive(bystander.pid), 'pid whose command differs left alone');
    assert.ok(!existsSync(dir), 'run dir removed');
    process.kill(bystander.pid, 'SIGKILL');
  });
});
