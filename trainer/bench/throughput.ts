// `tilestream bench throughput`: time per training step, in one run:
// - streamed vs conventional on the same network, image and backend, as a ratio next to the two
//   predictions: 4·A/3 from the tile geometry (one extra forward pass, every pass over A times the
//   image area) and the tile-calibrated one from measured per-tile costs;
// - a conventional step of the same networks on several backends (tensorflow vs wasm, wasm vs cpu).
// The runs of one comparison are interleaved round by round, so that a change in the shared
// machine's load hits every side alike; each time is the median over the rounds after a warm-up.
// Both CPU time of this process and wall time are kept: wasm and cpu compute on one thread, where
// CPU time is the steadier measure; TensorFlow computes on its own threads (as many as the CPU
// allowance), where wall time is what a user waits and CPU time adds up every thread.

import { totalmem } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, initBackend } from '../backend/select.ts';
import { predictConventional } from '../plan/memory.ts';
import { tileConstraints } from '../plan/planner.ts';
import { builtinNetwork } from '../streaming/bodies.ts';
import { linearLoss } from '../streaming/compare.ts';
import { runBody, tensorSource } from '../streaming/executor.ts';
import { tileGrid } from '../streaming/geometry.ts';
import { conventionalStep, initParams, type Network, scoped, streamedStep } from '../streaming/network.ts';

export interface ThroughputCase {
  name: string;
  label: string;
  network: () => Network;
  /** Default image side and tile side (the tile is half the image at other sizes). */
  image: number;
  tile: number;
}

/**
 * The cases the issues name: the small CNN at 1024² with 512 tiles, a ResNet-18 body at 2048² with
 * 1024 tiles (width 16), and the full-width ResNet-18 body at 1024² (the tensorflow vs wasm target).
 */
export const THROUGHPUT_CASES: Record<string, ThroughputCase> = {
  smallcnn: {
    name: 'smallcnn',
    label: 'small CNN',
    network: () => ({ ...builtinNetwork('smallcnn'), pooling: 'max', outputs: 1 }),
    image: 1024,
    tile: 512,
  },
  resnet18: {
    name: 'resnet18',
    label: 'ResNet-18 body to layer3 (width 16)',
    // The body alone (to layer3): a conventional trunk would add the same time to both sides.
    // Base width 16: the conventional step of the full-width body at 2048² does not fit the 4 GB
    // wasm heap (measured: it runs out of heap in a concat); the ratio is what is measured.
    network: () => ({
      body: builtinNetwork('resnet18', { bodyEnd: 'layer3', width: 16 }).body,
      pooling: 'max',
      outputs: 1,
    }),
    image: 2048,
    tile: 1024,
  },
  'resnet18-full': {
    name: 'resnet18-full',
    label: 'ResNet-18 body to layer3 (full width)',
    // The architecture's own width: its conventional step at 1024² fits the wasm heap (3.0 GiB
    // predicted), at 2048² it does not.
    network: () => ({
      body: builtinNetwork('resnet18', { bodyEnd: 'layer3' }).body,
      pooling: 'max',
      outputs: 1,
    }),
    image: 1024,
    tile: 512,
  },
};

export function throughputCase(name: string): ThroughputCase {
  const c = THROUGHPUT_CASES[name];
  if (!c) throw new Error(`unknown case '${name}'; choose from ${Object.keys(THROUGHPUT_CASES).join(', ')}`);
  return c;
}

/** The tile of a case at image side `image`: its own at its own size, else half the image on the body's stride. */
export function tileAt(c: ThroughputCase, image: number): number {
  if (image === c.image) return c.tile;
  const { stride, minimum } = tileConstraints(c.network());
  return Math.max(minimum, stride * Math.floor(image / 2 / stride));
}

/** Medians over the timed rounds, and the fastest round (other work on the machine only ever adds time). */
export interface Timing {
  /** CPU time of this process (every thread). */
  readonly cpuSeconds: number;
  readonly wallSeconds: number;
  readonly fastestCpuSeconds: number;
  readonly fastestWallSeconds: number;
}

/** A streamed/conventional ratio by one measure of time, with its tile-calibrated prediction. */
export interface RatioBy {
  measuredRatio: number;
  tileCalibratedRatio: number;
  /** measuredRatio / tileCalibratedRatio − 1. */
  tileCalibratedDeviation: number;
}

export interface ThroughputResult {
  case: string;
  backend: string;
  image: number;
  tile: number;
  tiles: number;
  areaFactor: number;
  /** 4·A/3. */
  predictedRatio: number;
  /** Streamed / conventional CPU time. */
  measuredRatio: number;
  /** measuredRatio / predictedRatio − 1. */
  deviation: number;
  /**
   * The ratio predicted from measured per-tile costs instead of per-pixel proportionality:
   * tiles·(forward(T) + step(T)) / step(N). Backends get slower per pixel on large tensors
   * (caches), which 4·A/3 ignores; this isolates the overhead of the streaming machinery itself.
   */
  tileCalibratedRatio: number;
  /** measuredRatio / tileCalibratedRatio − 1; the target is within ±0.15. */
  tileCalibratedDeviation: number;
  /** The same by median wall time, and by the fastest round's CPU and wall time. */
  wall: RatioBy;
  fastestCpu: RatioBy;
  fastestWall: RatioBy;
  conventionalSeconds: number;
  streamedSeconds: number;
  conventional: Timing;
  streamed: Timing;
  tileForward: Timing;
  tileStep: Timing;
  repeats: number;
}

export interface BackendComparison {
  case: string;
  image: number;
  /** Median time of a conventional training step on each backend. */
  seconds: Record<string, Timing>;
  /** The backend the others are compared with: wasm when it ran, else the first. */
  reference: string;
  /** Time on the reference / time on each backend (above 1: faster than the reference), by median and fastest round. */
  speedup: Record<string, { wall: number; cpu: number; fastestWall: number; fastestCpu: number }>;
  repeats: number;
}

/** A measurement left out, and why. */
export interface Skipped {
  case: string;
  image: number;
  backend: string;
  why: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** One kind of step with its own parameters and image, made on the backend active when created. */
interface Runner {
  run(): Promise<void>;
  dispose(): void;
}

function stepRunner(net: Network, size: number, tile: number | null, forwardOnly = false): Runner {
  const params = initParams(net, 1);
  const x = tf.randomNormal([1, size, size, net.body.inputChannels], 0, 1, 'float32', 2) as tf.Tensor4D;
  const loss = linearLoss(net.outputs, 1);
  const grid = tile === null ? null : tileGrid(net.body, [size, size], [tile, tile]);
  return {
    async run() {
      if (forwardOnly) {
        const y = runBody(net.body, scoped(params, 'body'), x);
        y.dataSync();
        y.dispose();
        return;
      }
      const r = grid
        ? await streamedStep(net, params, tensorSource(x), grid, loss)
        : conventionalStep(net, params, x, loss);
      for (const g of r.grads.values()) g.dispose();
    },
    dispose() {
      x.dispose();
      for (const p of params.values()) p.dispose();
    },
  };
}

interface Lane {
  /** Switches to the lane's backend before each run (backend comparisons). */
  readonly before?: () => Promise<unknown>;
  readonly runner: Runner;
}

/** One warm-up run per lane, then `repeats` rounds running every lane once; medians per lane. */
async function interleaved(lanes: readonly Lane[], repeats: number): Promise<Timing[]> {
  const cpu: number[][] = lanes.map(() => []);
  const wall: number[][] = lanes.map(() => []);
  for (let round = 0; round <= repeats; round++) {
    for (const [i, lane] of lanes.entries()) {
      await lane.before?.();
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      await lane.runner.run();
      const w = (performance.now() - w0) / 1000;
      const c = process.cpuUsage(c0);
      if (round > 0) {
        // the first round warms up kernels (and TensorFlow's per-shape op caches)
        cpu[i]?.push((c.user + c.system) / 1e6);
        wall[i]?.push(w);
      }
    }
  }
  return lanes.map((_, i) => ({
    cpuSeconds: median(cpu[i] ?? []),
    wallSeconds: median(wall[i] ?? []),
    fastestCpuSeconds: Math.min(...(cpu[i] ?? [])),
    fastestWallSeconds: Math.min(...(wall[i] ?? [])),
  }));
}

/** The wasm heap is 32-bit; leave room for the module itself. */
const WASM_HEAP_LIMIT = 3.8 * 2 ** 30;

/**
 * Why a conventional step of `net` at `image`² would not fit this machine on `backend` (the
 * planner's prediction against the wasm heap, or half the machine's memory), or undefined.
 */
export function wontFit(net: Network, image: number, backend: BackendName): string | undefined {
  const need = predictConventional(net, [image, image], { backend, imageStorage: 'float32' }).requiredBytes;
  const limit = backend === 'wasm' ? WASM_HEAP_LIMIT : totalmem() / 2;
  if (need <= limit) return undefined;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  return `the conventional step needs ${gib(need)} (planner), over ${gib(limit)}${backend === 'wasm' ? ' of wasm heap' : ' (half this machine)'}`;
}

/** Streamed vs conventional at `image`² with `tile`² tiles, on the active backend. */
export async function measureRatio(
  c: ThroughputCase,
  backend: string,
  repeats: number,
  log?: (line: string) => void,
  image: number = c.image,
  tile: number = tileAt(c, image),
): Promise<ThroughputResult> {
  const net = c.network();
  const grid = tileGrid(net.body, [image, image], [tile, tile]);
  log?.(
    `throughput: ${c.name} ${image}² on ${backend}: conventional, streamed with ${grid.tiles.length} tiles of ${tile}², ` +
      `and one tile's forward and step, interleaved, ${repeats} rounds after a warm-up`,
  );
  const runners = [
    stepRunner(net, image, null),
    stepRunner(net, image, tile),
    stepRunner(net, tile, null, true),
    stepRunner(net, tile, null),
  ];
  let times: Timing[];
  try {
    times = await interleaved(
      runners.map((runner) => ({ runner })),
      repeats,
    );
  } finally {
    for (const r of runners) r.dispose();
  }
  const [conventional, streamed, tileForward, tileStep] = times as [Timing, Timing, Timing, Timing];
  const n = grid.tiles.length;
  const predictedRatio = (4 * grid.areaFactor) / 3;
  const by = (seconds: (t: Timing) => number): RatioBy => {
    const measuredRatio = seconds(streamed) / seconds(conventional);
    const tileCalibratedRatio = (n * (seconds(tileForward) + seconds(tileStep))) / seconds(conventional);
    return {
      measuredRatio,
      tileCalibratedRatio,
      tileCalibratedDeviation: measuredRatio / tileCalibratedRatio - 1,
    };
  };
  const cpu = by((t) => t.cpuSeconds);
  return {
    case: c.name,
    backend,
    image,
    tile,
    tiles: n,
    areaFactor: grid.areaFactor,
    predictedRatio,
    measuredRatio: cpu.measuredRatio,
    deviation: cpu.measuredRatio / predictedRatio - 1,
    tileCalibratedRatio: cpu.tileCalibratedRatio,
    tileCalibratedDeviation: cpu.tileCalibratedDeviation,
    wall: by((t) => t.wallSeconds),
    fastestCpu: by((t) => t.fastestCpuSeconds),
    fastestWall: by((t) => t.fastestWallSeconds),
    conventionalSeconds: conventional.cpuSeconds,
    streamedSeconds: streamed.cpuSeconds,
    conventional,
    streamed,
    tileForward,
    tileStep,
    repeats,
  };
}

/**
 * A conventional training step of case `c` at `image`² on every backend, interleaved (the
 * backend is switched before each run). Leaves the last backend active.
 */
export async function compareBackends(
  backends: readonly BackendName[],
  c: ThroughputCase,
  image: number,
  repeats: number,
  log?: (line: string) => void,
): Promise<BackendComparison> {
  const net = c.network();
  const lanes: Lane[] = [];
  try {
    for (const b of backends) {
      await initBackend(b);
      lanes.push({ before: () => tf.setBackend(b), runner: stepRunner(net, image, null) });
    }
    log?.(
      `throughput: ${c.name} ${image}² conventional step on ${backends.join(', ')}, interleaved, ${repeats} rounds after a warm-up`,
    );
    const times = await interleaved(lanes, repeats);
    const seconds: Record<string, Timing> = {};
    backends.forEach((b, i) => {
      seconds[b] = times[i] as Timing;
    });
    const reference = backends.includes('wasm') ? 'wasm' : (backends[0] as string);
    const ref = seconds[reference] as Timing;
    const speedup: BackendComparison['speedup'] = {};
    for (const [b, t] of Object.entries(seconds)) {
      speedup[b] = {
        wall: ref.wallSeconds / t.wallSeconds,
        cpu: ref.cpuSeconds / t.cpuSeconds,
        fastestWall: ref.fastestWallSeconds / t.fastestWallSeconds,
        fastestCpu: ref.fastestCpuSeconds / t.fastestCpuSeconds,
      };
    }
    return { case: c.name, image, seconds, reference, speedup, repeats };
  } finally {
    // Each runner's tensors live on its own backend; disposing them needs no switch.
    for (const lane of lanes) lane.runner.dispose();
  }
}
