// The collective engine across real processes: 2 and 4 ranks on 127.0.0.1 sum and broadcast known
// data exactly through TensorFlow's collective ops; a peer that never starts and a peer SIGKILLed
// mid-run end the others with PeersUnavailableError (exit 6) instead of a hang.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  IdentityCollective,
  openCollective,
  splitHostPort,
} from '../../trainer/distributed/open-collective.ts';
import { encodeServerDef } from '../../trainer/distributed/server-def.ts';
import { mappedTensorflowDir } from '../../trainer/distributed/tf-eager.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';
import { knownBuffer, LENGTHS } from './collective-data.ts';

const CHILD = join(import.meta.dirname, 'collective-child.ts');

interface Line {
  rank: number;
  at: number;
  event: string;
  [k: string]: unknown;
}

interface Rank {
  child: ChildProcess;
  lines: Line[];
  stderr: string;
  exit: Promise<number>;
  /** Resolves at the first line with this event. */
  waitFor(event: string): Promise<Line>;
}

/** Free TCP ports on 127.0.0.1, asked of the kernel (released just before the ranks bind them). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function startRank(args: { rank: number; [k: string]: unknown }): Rank {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
  });
  const lines: Line[] = [];
  const waiters: { event: string; resolve: (l: Line) => void }[] = [];
  let buffered = '';
  const rank: Rank = {
    child,
    lines,
    stderr: '',
    exit: new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)))),
    waitFor(event) {
      const seen = lines.find((l) => l.event === event);
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ event, resolve }));
    },
  };
  child.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString();
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = JSON.parse(buffered.slice(0, nl)) as Line;
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      for (const w of waiters.filter((w) => w.event === line.event)) w.resolve(line);
    }
  });
  child.stderr?.on('data', (d: Buffer) => {
    rank.stderr += d.toString();
  });
  return rank;
}

async function world(
  n: number,
  extra: object,
  perRank: (rank: number) => object = () => ({}),
): Promise<{ peers: string[]; ranks: Rank[] }> {
  const peers = (await freePorts(n)).map((p) => `127.0.0.1:${p}`);
  return {
    peers,
    ranks: Array.from({ length: n }, (_, rank) => startRank({ rank, peers, ...extra, ...perRank(rank) })),
  };
}

function describeExit(r: Rank): string {
  return `lines ${JSON.stringify(r.lines)}\nstderr (tail): ${r.stderr.slice(-2000)}`;
}

async function checkSums(n: number, perRank?: (rank: number) => object): Promise<void> {
  const { ranks } = await world(n, { mode: 'sums', timeoutMs: 60_000 }, perRank);
  const codes = await Promise.all(ranks.map((r) => r.exit));
  for (const [i, r] of ranks.entries()) assert.equal(codes[i], 0, describeExit(r));
  const expected = LENGTHS.map((len, i) => {
    const sum = new Float32Array(len);
    for (let r = 0; r < n; r++) {
      for (const [k, v] of knownBuffer(r, i, len).entries()) sum[k] = (sum[k] ?? 0) + v;
    }
    return Array.from(sum);
  });
  const rank0 = LENGTHS.map((len, i) => Array.from(knownBuffer(0, i, len)));
  for (const r of ranks) {
    const got = r.lines.find((l) => l.event === 'sums');
    assert.ok(got, describeExit(r));
    assert.deepEqual(got.sums, expected, `rank ${got.rank}: the sum of every rank's buffers`);
    assert.deepEqual(got.broadcast, rank0, `rank ${got.rank}: rank 0's buffers`);
    assert.deepEqual(got.again, [(n * (n - 1)) / 2], `rank ${got.rank}: a second all-reduce`);
    assert.equal(got.unchanged, true, 'the inputs are not modified');
    const wanted = (perRank?.(got.rank) as { backend?: string } | undefined)?.backend;
    if (wanted !== undefined) assert.equal(r.lines.find((l) => l.event === 'backend')?.name, wanted);
  }
}

describe('collective engine (TensorFlow collective ops)', { skip: tensorflowSkip() }, () => {
  // Rank 0 trains on the tensorflow backend (the addon has mapped the same libtensorflow first), rank 1
  // on wasm (the engine brings TensorFlow itself).
  it('sums and broadcasts exactly between 2 ranks (tensorflow and wasm backends)', { timeout: 120_000 }, () =>
    checkSums(2, (rank) => ({ backend: rank === 0 ? 'tensorflow' : 'wasm' })),
  );

  it('sums and broadcasts exactly between 4 ranks', { timeout: 180_000 }, () => checkSums(4));

  it('rejects with PeersUnavailableError when a peer never starts', { timeout: 120_000 }, async () => {
    const peers = (await freePorts(2)).map((p) => `127.0.0.1:${p}`);
    const timeoutMs = 4000;
    const started = Date.now();
    const lonely = startRank({ rank: 0, peers, mode: 'sums', timeoutMs });
    const code = await lonely.exit;
    const elapsed = Date.now() - started;
    assert.equal(code, 6, describeExit(lonely));
    const error = lonely.lines.find((l) => l.event === 'error');
    assert.equal(error?.name, 'PeersUnavailableError');
    assert.match(String(error?.message), /rank 1/);
    // The timeout plus TensorFlow's start-up (a few seconds on a loaded machine), not a hang.
    assert.ok(elapsed < timeoutMs + 30_000, `exited after ${elapsed} ms`);
  });

  it('ends the other ranks when a peer is SIGKILLed mid-run', { timeout: 180_000 }, async () => {
    // Three ranks, so one survivor is not the killed rank's ring neighbour on both sides.
    const { ranks } = await world(3, { mode: 'loop', timeoutMs: 120_000, healthIntervalMs: 1000 });
    await Promise.all(ranks.map((r) => r.waitFor('step')));
    const victim = ranks[1] as Rank;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    const survivors = [ranks[0] as Rank, ranks[2] as Rank];
    const codes = await Promise.all(survivors.map((r) => r.exit));
    for (const [i, r] of survivors.entries()) {
      assert.equal(codes[i], 6, describeExit(r));
      const error = r.lines.find((l) => l.event === 'error');
      assert.equal(error?.name, 'PeersUnavailableError', describeExit(r));
      assert.ok(
        r.lines.some((l) => l.event === 'closed'),
        `closed after the failure: ${describeExit(r)}`,
      );
      const detectedMs = (error?.at as number) - killedAt;
      // Well under the 120 s op timeout: the broken connection or the health check ends it.
      assert.ok(detectedMs < 30_000, `rank ${error?.rank} noticed after ${detectedMs} ms`);
      process.stdout.write(`# rank ${error?.rank} rejected ${detectedMs} ms after the SIGKILL\n`);
    }
    assert.equal(await victim.exit, 128);
  });
});

describe('collective without TensorFlow', () => {
  it('is the identity for one rank', async () => {
    const c = await openCollective({ rank: 0, worldSize: 1, peers: ['127.0.0.1:1'] }, { timeoutMs: 10 });
    assert.ok(c instanceof IdentityCollective);
    const input = [Float32Array.of(1, 2), Float32Array.of()];
    const out = await c.allReduceSum(input);
    assert.deepEqual(out, input);
    assert.notEqual(out[0], input[0], 'a new array');
    assert.deepEqual(await c.broadcast(input), input);
    await c.close();
    await assert.rejects(c.allReduceSum(input), /closed/);
  });

  it('refuses a topology whose peers do not match the world', async () => {
    await assert.rejects(
      openCollective({ rank: 0, worldSize: 2, peers: ['a:1'] }, { timeoutMs: 10 }),
      /2 peers|1 peers/,
    );
    await assert.rejects(
      openCollective({ rank: 2, worldSize: 2, peers: ['a:1', 'b:2'] }, { timeoutMs: 10 }),
      /rank 2/,
    );
  });

  it('finds the libtensorflow the process already mapped', () => {
    const maps =
      '7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/libc.so.6\n' +
      '7f10-7f11 r-xp 00000000 08:01 43 /cache/cpu-x/site/tensorflow/libtensorflow_cc.so.2\n';
    assert.equal(mappedTensorflowDir(maps), '/cache/cpu-x/site/tensorflow');
    assert.equal(mappedTensorflowDir('7f00-7f01 r-xp 0 08:01 42 /usr/lib/libc.so.6\n'), undefined);
  });

  it('splits host:port, IPv6 in brackets', () => {
    assert.deepEqual(splitHostPort('job-0.svc:29500'), { host: 'job-0.svc', port: 29500 });
    assert.deepEqual(splitHostPort('[::1]:7'), { host: '::1', port: 7 });
    assert.throws(() => splitHostPort('nohost'), /host:port/);
    assert.throws(() => splitHostPort('h:70000'), /host:port/);
  });

  it('encodes the ServerDef TensorFlow parses (field by field)', () => {
    const bytes = encodeServerDef({ tasks: ['a:1', 'b:2'], taskIndex: 1, port: 2 });
    // Hand-decoded: cluster{job{name "worker", tasks{0:"a:1"}, tasks{1:"b:2"}}}, job_name, task_index 1,
    // default_session_config{experimental{collective_group_leader}}, protocol "grpc", port 2.
    const text = Buffer.from(bytes).toString('latin1');
    const leader = '/job:worker/replica:0/task:0';
    const expected = [
      [0x0a, 0x1a, 0x0a, 0x18, 0x0a, 0x06, ...Buffer.from('worker')],
      [0x12, 0x05, 0x12, 0x03, ...Buffer.from('a:1')], // map entry: key 0 is proto3's default, left out
      [0x12, 0x07, 0x08, 0x01, 0x12, 0x03, ...Buffer.from('b:2')],
      [0x12, 0x06, ...Buffer.from('worker'), 0x18, 0x01],
      [0x22, leader.length + 5, 0x82, 0x01, leader.length + 2, 0x0a, leader.length, ...Buffer.from(leader)],
      [0x2a, 0x04, ...Buffer.from('grpc'), 0x30, 0x02],
    ].flat();
    assert.deepEqual(Array.from(bytes), expected, text);
  });
});
