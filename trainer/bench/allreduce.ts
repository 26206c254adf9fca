// `tilestream bench allreduce`: how long the collective engine takes to sum ResNet-34's parameter
// gradients between 2 and 4 local rank processes (TensorFlow's ring all-reduce over gRPC on CPU),
// next to one streamed ResNet-34 training step on the tensorflow backend measured in the same run,
// and their ratio. Every rank is its own process, as in training; the time of a repeat is the
// slowest rank's, and each figure is the median over the repeats after a warm-up.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { cpuAllowance } from '../backend/cpu-allowance.ts';
import { parseIntOption } from '../cli-util.ts';
import { DEFAULT_RING_SUBDIVISIONS } from '../distributed/tensorflow-collective.ts';
import { networkParameterShapes } from '../streaming/network-shape.ts';
import { formatTable } from '../text-table.ts';
import { benchNetwork, runChild } from './gpu.ts';

export interface AllreduceRankRequest {
  rank: number;
  peers: string[];
  sizes: number[];
  repeats: number;
  timeoutMs: number;
  /** The engine's ringSubdivisions (0: TensorFlow's choice). */
  subdivs: number;
}

export type AllreduceRankResult =
  | {
      ok: true;
      rank: number;
      openSeconds: number;
      seconds: number[];
      /** Of each repeat, the time in TensorFlow's op (the rest copies buffers in and out). */
      executeSeconds: number[];
      perBufferSeconds: number;
    }
  | { ok: false; rank: number; error: string };

export interface AllreduceRanksReport {
  ranks: number;
  /** Chunks of the ring in flight at once (0: TensorFlow's choice). */
  subdivs: number;
  /** Median over the repeats of the slowest rank's time for one all-reduce of every gradient. */
  seconds: number;
  /** Each repeat's time (slowest rank). */
  repeats: number[];
  /** Share of a call spent in TensorFlow's collective op, median over ranks and repeats. */
  executeShare: number;
  /** One collective per gradient tensor instead of one for all (once; what concatenating saves). */
  perBufferSeconds: number;
  /** Bytes each rank sends and receives in a ring all-reduce, 2(n−1)/n × the gradients, per second. */
  busGigabytesPerSecond: number;
  /** Slowest rank's time from start to the group being ready (TensorFlow's start-up included). */
  openSeconds: number;
  /** seconds / the streamed step's seconds. */
  ratioToStreamedStep: number | null;
}

export interface AllreduceReport {
  network: string;
  tensors: number;
  floats: number;
  bytes: number;
  engine: string;
  streamedStep:
    | { image: number; tile: number; tiles: number; seconds: number; backend: 'tensorflow'; gpu: boolean }
    | { skipped: string };
  results: AllreduceRanksReport[];
  cpus: string;
  /** The machine's 1-minute load average at the start and the end (other work shares the cores). */
  loadAverage: { start: number; end: number };
}

/** The parameter sizes of the ResNet-34 the benchmarks stream (body to layer3, layer4 trunk, 2 classes). */
export function gradientSizes(): number[] {
  return [...networkParameterShapes(benchNetwork()).values()].map((shape) =>
    shape.reduce((a, b) => a * b, 1),
  );
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : ((s[(s.length - 1) >> 1] as number) + (s[s.length >> 1] as number)) / 2;
}

/** Free TCP ports on 127.0.0.1 (released just before the ranks bind them). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function runRank(req: AllreduceRankRequest): Promise<AllreduceRankResult> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, 'allreduce-child.ts'), JSON.stringify(req)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2' },
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.on('close', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as AllreduceRankResult);
      } catch {
        resolve({
          ok: false,
          rank: req.rank,
          error: `rank exited with ${code} and no result; stderr: ${err}`,
        });
      }
    });
  });
}

/** All-reduces of `sizes` between `n` local rank processes. */
export async function benchRanks(
  n: number,
  sizes: number[],
  repeats: number,
  timeoutMs: number,
  subdivs: number = DEFAULT_RING_SUBDIVISIONS,
): Promise<Omit<AllreduceRanksReport, 'ratioToStreamedStep'>> {
  const peers = (await freePorts(n)).map((p) => `127.0.0.1:${p}`);
  const results = await Promise.all(
    Array.from({ length: n }, (_, rank) => runRank({ rank, peers, sizes, repeats, timeoutMs, subdivs })),
  );
  const failed = results.find((r) => !r.ok);
  if (failed !== undefined && !failed.ok)
    throw new Error(`rank ${failed.rank} of ${n} failed: ${failed.error}`);
  const ok = results.filter((r) => r.ok);
  const slowest = Array.from({ length: repeats }, (_, i) => Math.max(...ok.map((r) => r.seconds[i] ?? 0)));
  const seconds = median(slowest);
  const bytes = 4 * sizes.reduce((a, b) => a + b, 0);
  return {
    ranks: n,
    subdivs,
    seconds,
    repeats: slowest,
    executeShare: median(ok.flatMap((r) => r.executeSeconds.map((e, i) => e / (r.seconds[i] ?? Number.NaN)))),
    perBufferSeconds: Math.max(...ok.map((r) => r.perBufferSeconds)),
    busGigabytesPerSecond: ((2 * (n - 1)) / n) * (bytes / seconds / 1e9),
    openSeconds: Math.max(...ok.map((r) => r.openSeconds)),
  };
}

export async function benchAllreduce(o: {
  ranks: number[];
  /** Ring subdivisions to compare, a row each per rank count. */
  subdivs: number[];
  repeats: number;
  image: number;
  tile: number;
  stepRepeats: number;
  timeoutMs: number;
  log?: (line: string) => void;
}): Promise<AllreduceReport> {
  const log = o.log ?? (() => {});
  const loadStart = loadavg()[0] ?? 0;
  const sizes = gradientSizes();
  const floats = sizes.reduce((a, b) => a + b, 0);
  // The step first, alone on the machine: the ranks' processes would compete with it for the cores.
  log(`streamed ResNet-34 step at ${o.image}² (tile ${o.tile}) on the tensorflow backend…`);
  const step = await runChild(
    { task: 'step', mode: 'streamed', image: o.image, tile: o.tile, repeats: o.stepRepeats },
    30 * 60_000,
  );
  const streamedStep: AllreduceReport['streamedStep'] = step.ok
    ? {
        image: o.image,
        tile: o.tile,
        tiles: step.tiles as number,
        seconds: step.seconds as number,
        backend: 'tensorflow',
        gpu: step.gpu,
      }
    : { skipped: step.error };
  const stepSeconds = 'seconds' in streamedStep ? streamedStep.seconds : undefined;
  const results: AllreduceRanksReport[] = [];
  for (const n of o.ranks) {
    for (const subdivs of o.subdivs) {
      log(
        `all-reduce of ${sizes.length} gradients (${(floats / 1e6).toFixed(1)} M floats) between ${n} ranks, ` +
          `ring subdivisions ${subdivs === 0 ? "TensorFlow's choice" : subdivs}…`,
      );
      const r = await benchRanks(n, sizes, o.repeats, o.timeoutMs, subdivs);
      results.push({ ...r, ratioToStreamedStep: stepSeconds === undefined ? null : r.seconds / stepSeconds });
    }
  }
  return {
    network: 'ResNet-34 (body to layer3, layer4 trunk, 2 classes)',
    tensors: sizes.length,
    floats,
    bytes: 4 * floats,
    engine: 'TensorFlow collective ops (CollectiveReduceV2, ring over gRPC on CPU), one collective per call',
    streamedStep,
    results,
    cpus: `${cpuAllowance().cpus} (${cpuAllowance().source}); every rank and the step share them`,
    loadAverage: { start: loadStart, end: loadavg()[0] ?? 0 },
  };
}

export function formatAllreduce(r: AllreduceReport): string {
  const step =
    'seconds' in r.streamedStep
      ? `streamed step ${r.streamedStep.image}² tile ${r.streamedStep.tile} (${r.streamedStep.tiles} tiles) on tensorflow ${r.streamedStep.gpu ? 'GPU' : 'CPU'}: ${r.streamedStep.seconds.toFixed(2)} s`
      : `streamed step not measured: ${r.streamedStep.skipped}`;
  const f = (x: number): string => x.toFixed(3);
  const load = `${r.cpus}; load average ${r.loadAverage.start.toFixed(1)} → ${r.loadAverage.end.toFixed(1)}`;
  return `${load}\n${r.network}: ${r.tensors} gradient tensors, ${(r.floats / 1e6).toFixed(2)} M floats (${(r.bytes / 2 ** 20).toFixed(0)} MiB)\n${step}\n${formatTable(
    [
      'ranks',
      'subdivs',
      'all-reduce s',
      'in the op',
      'one call per tensor s',
      'bus GB/s',
      'all-reduce / step',
    ],
    r.results.map((x) => [
      String(x.ranks),
      x.subdivs === 0 ? 'TF' : String(x.subdivs),
      f(x.seconds),
      `${Math.round(100 * x.executeShare)}%`,
      f(x.perBufferSeconds),
      x.busGigabytesPerSecond.toFixed(2),
      x.ratioToStreamedStep === null ? '–' : x.ratioToStreamedStep.toFixed(3),
    ]),
  )}\n`;
}

const integers =
  (flag: string, min: number, max: number) =>
  (s: string): number[] =>
    s.split(',').map((x) => {
      const n = Number(x.trim());
      if (x.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
        throw new InvalidArgumentError(`${flag} takes integers from ${min} to ${max}, got '${x}'`);
      }
      return n;
    });

export function registerAllreduceBench(bench: Command): void {
  bench
    .command('allreduce')
    .description(
      "time the all-reduce of ResNet-34's gradients between local rank processes (TensorFlow's collective ops) against one streamed ResNet-34 step on the tensorflow backend",
    )
    .option('--ranks <list>', 'rank counts, comma-separated', integers('--ranks', 2, 16), [2, 4])
    .option(
      '--subdivs <list>',
      "ring subdivisions to compare, comma-separated (0: TensorFlow's choice)",
      integers('--subdivs', 0, 64),
      [DEFAULT_RING_SUBDIVISIONS],
    )
    .option('--repeats <n>', 'timed all-reduces per rank count (after one warm-up)', parseIntOption, 5)
    // 9 tiles of 768² (ResNet-34's smallest workable tile is 576): a real streamed step that takes
    // about a minute on 2 CPU cores, not the GPU's 8192².
    .option('--image <px>', 'image side of the streamed step', parseIntOption, 1024)
    .option('--tile <px>', 'tile side of the streamed step', parseIntOption, 768)
    .option('--step-repeats <n>', 'timed streamed steps (after one warm-up)', parseIntOption, 1)
    .option('--timeout <s>', 'peer timeout of the ranks', parseIntOption, 300)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        ranks: number[];
        subdivs: number[];
        repeats: number;
        image: number;
        tile: number;
        stepRepeats: number;
        timeout: number;
        json?: boolean;
      }) => {
        const r = await benchAllreduce({
          ...o,
          timeoutMs: o.timeout * 1000,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : formatAllreduce(r));
      },
    );
}
