// One rank of `tilestream bench allreduce` (allreduce.ts): opens the collective, sums buffers of
// the given sizes `repeats` times after a warm-up, then once more one call per buffer, and prints
// one JSON line (AllreduceRankResult).
import { openCollective } from '../distributed/open-collective.ts';
import type { AllreduceRankRequest, AllreduceRankResult } from './allreduce.ts';

const req = JSON.parse(process.argv[2] ?? '{}') as AllreduceRankRequest;
const print = (r: AllreduceRankResult): void => {
  process.stdout.write(`${JSON.stringify(r)}\n`);
};

try {
  const t0 = performance.now();
  const c = await openCollective(
    { rank: req.rank, worldSize: req.peers.length, peers: req.peers },
    {
      timeoutMs: req.timeoutMs,
      ringSubdivisions: req.subdivs,
      log: (line) => process.stderr.write(`${line}\n`),
    },
  );
  const openSeconds = (performance.now() - t0) / 1000;
  // Rank r sends r + 1 everywhere: every element of the sum is n(n+1)/2, checked below.
  const buffers = req.sizes.map((n) => new Float32Array(n).fill(req.rank + 1));
  const n = req.peers.length;
  const expected = (n * (n + 1)) / 2;
  const check = (out: Float32Array[]): void => {
    for (const b of out) {
      if (b.length > 0 && (b[0] !== expected || b[b.length - 1] !== expected)) {
        throw new Error(`all-reduce gave ${b[0]}…${b[b.length - 1]}, expected ${expected}`);
      }
    }
  };
  const seconds: number[] = [];
  const executeSeconds: number[] = [];
  for (let i = 0; i <= req.repeats; i++) {
    const t = performance.now();
    const out = await c.allReduceSum(buffers);
    if (i > 0) {
      // The first call forms the group.
      seconds.push((performance.now() - t) / 1000);
      const timings = (c as { lastTimings?: { executeMs: number } }).lastTimings;
      if (timings !== undefined) executeSeconds.push(timings.executeMs / 1000);
    }
    check(out);
  }
  const t = performance.now();
  for (const b of buffers) check(await c.allReduceSum([b]));
  const perBufferSeconds = (performance.now() - t) / 1000;
  await c.close();
  print({ ok: true, rank: req.rank, openSeconds, seconds, executeSeconds, perBufferSeconds });
  process.exit(0);
} catch (e) {
  print({ ok: false, rank: req.rank, error: `${(e as Error).name}: ${(e as Error).message}` });
  process.exit(1);
}
