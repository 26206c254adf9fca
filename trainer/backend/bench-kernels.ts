// A backend benchmark: one small CNN training step (forward + backward through tf.grads) timed on
// several backends in one process, in alternating rounds. The model is the one of tfjs-notes §2 (four 3×3 convs of
// 16 channels with ReLU, two 2×2 max pools, global average pool, dense 16→10, softmax cross-
// entropy), built from the streaming ops so that the project's kernels are what gets measured.
// Returns plain JSON; `tilestream bench` prints it.
import * as tf from '@tensorflow/tfjs-core';
import { activation, conv2d, maxPool2d } from '../streaming/ops.ts';
import { type BackendName, initBackend } from './select.ts';

export interface BenchKernelsOptions {
  /** Square input size in pixels (default 128). */
  size?: number;
  /** Timed repetitions after one warm-up step; medians are reported (default 5). */
  repeats?: number;
  /** Backends to time, in order; the first is the numerator of the speed-ups (default wasm, cpu). */
  backends?: BackendName[];
  /** Adds the five most expensive kernels of one profiled step per backend (default true). */
  profile?: boolean;
}

export interface BackendTiming {
  backend: BackendName;
  /** Median forward-only time (no tape). */
  forwardMs: number;
  /** Median time of a training step: forward, loss and gradients of all parameters. */
  trainMs: number;
  /** Process CPU time per training step (user + system): steadier than wall time on a shared machine. */
  trainCpuMs: number;
  /** Convolution GFLOP/s of the training step, counting it as 3× the forward FLOPs. */
  trainGflops: number;
  /** Most expensive kernels of one step; times include nested kernels of composed ones. */
  topKernels?: Array<{ name: string; ms: number }>;
}

export interface BenchKernelsResult {
  model: string;
  size: number;
  repeats: number;
  forwardGflop: number;
  timings: BackendTiming[];
  /** time(backend) / time(first backend) for every other backend: how many times faster the first is. */
  speedups: Record<string, { train: number; trainCpu: number; forward: number }>;
  node: string;
}

const CONVS = [
  [3, 16],
  [16, 16],
  [16, 16],
  [16, 16],
] as const;

const conv = { stride: [1, 1], dilation: [1, 1], padding: [1, 1, 1, 1], groups: 1 } as const;
const pool = { kernel: [2, 2], stride: [2, 2], padding: [0, 0, 0, 0] } as const;

function makeParams(seed: number): tf.Tensor[] {
  const ps: tf.Tensor[] = [];
  CONVS.forEach(([cin, cout], i) => {
    ps.push(tf.mul(tf.randomNormal([3, 3, cin, cout], 0, 1, 'float32', seed + i), Math.sqrt(2 / (9 * cin))));
    ps.push(tf.zeros([cout]));
  });
  ps.push(tf.mul(tf.randomNormal([16, 10], 0, 1, 'float32', seed + 99), 0.25));
  ps.push(tf.zeros([10]));
  return ps;
}

function logits(x: tf.Tensor4D, p: tf.Tensor[]): tf.Tensor2D {
  let h = x;
  for (let i = 0; i < CONVS.length; i++) {
    h = activation(conv2d(h, p[2 * i] as tf.Tensor4D, p[2 * i + 1] as tf.Tensor, conv), 'relu');
    if (i === 1 || i === 2) h = maxPool2d(h, pool);
  }
  const pooled = tf.mean(h, [1, 2]) as tf.Tensor2D;
  return tf.add(tf.matMul(pooled, p[8] as tf.Tensor2D), p[9] as tf.Tensor) as tf.Tensor2D;
}

function forwardGflop(size: number): number {
  // 2·MAC per output element; the convs run at full, full, half and quarter resolution.
  const res = [size, size, size / 2, size / 4];
  return CONVS.reduce((s, [cin, cout], i) => s + (2 * (res[i] as number) ** 2 * 9 * cin * cout) / 1e9, 0);
}

interface BackendRun {
  name: BackendName;
  forward: () => void;
  step: () => void;
  dispose: () => void;
  walls: { forward: number[]; train: number[] };
  cpus: number[];
}

async function prepare(name: BackendName, size: number): Promise<BackendRun> {
  await initBackend(name);
  // Tensors are made while their backend is active and only used under it, so switching
  // backends between rounds moves no data.
  const x = tf.randomUniform([1, size, size, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  const labels = tf.oneHot(tf.tensor1d([3], 'int32'), 10);
  const params = makeParams(1);
  const step = () => {
    const grads = tf.grads((...p: tf.Tensor[]) => tf.losses.softmaxCrossEntropy(labels, logits(x, p)))(
      params,
    );
    // dataSync forces the (lazy on some backends) work to finish inside the timed region.
    for (const g of grads) g.dataSync();
    tf.dispose(grads);
  };
  const forward = () => {
    tf.tidy(() => logits(x, params).dataSync());
  };
  // Warm-up: kernel setup, XNNPACK operator creation, JIT, wasm heap growth.
  forward();
  step();
  return {
    name,
    forward,
    step,
    dispose: () => tf.dispose([x, labels, ...params]),
    walls: { forward: [], train: [] },
    cpus: [],
  };
}

function timed(f: () => void): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  f();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 };
}

function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

async function topKernels(run: BackendRun): Promise<Array<{ name: string; ms: number }>> {
  const info = await tf.profile(() => {
    run.step();
    return [];
  });
  // tf.profile returns one shared object that the next call overwrites: copy what we need now.
  const kernels = await Promise.all(
    info.kernels.map(async (k) => ({ name: k.name, ms: Number(await k.kernelTimeMs) || 0 })),
  );
  const byName = new Map<string, number>();
  for (const k of kernels) byName.set(k.name, (byName.get(k.name) ?? 0) + k.ms);
  return [...byName]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([n, ms]) => ({ name: n, ms: round(ms) }));
}

const round = (v: number) => Math.round(v * 100) / 100;

/** Times the training step on each backend and returns the speed-up of the first over the others. */
export async function benchKernels(options: BenchKernelsOptions = {}): Promise<BenchKernelsResult> {
  const size = options.size ?? 128;
  const repeats = options.repeats ?? 5;
  const backends = options.backends ?? ['wasm', 'cpu'];
  if (!Number.isInteger(size) || size < 8 || size % 4 !== 0) {
    throw new Error(`bench: size must be a multiple of 4 and at least 8 (two 2x2 pools), got ${size}`);
  }
  if (!Number.isInteger(repeats) || repeats < 1)
    throw new Error(`bench: repeats must be >= 1, got ${repeats}`);
  if (backends.length === 0) throw new Error('bench: name at least one backend');
  const previous = tf.getBackend() as string | undefined;
  const runs: BackendRun[] = [];
  for (const b of backends) runs.push(await prepare(b, size));
  // Rounds alternate the backends, so a busy spell on a shared machine hits all of them alike;
  // medians keep one slow repeat (another process, a GC) from moving the result.
  for (let r = 0; r < repeats; r++) {
    for (const run of runs) {
      await tf.setBackend(run.name);
      run.walls.forward.push(timed(run.forward).wall);
      const t = timed(run.step);
      run.walls.train.push(t.wall);
      run.cpus.push(t.cpu);
    }
  }
  const timings: BackendTiming[] = [];
  for (const run of runs) {
    await tf.setBackend(run.name);
    const trainMs = median(run.walls.train);
    const timing: BackendTiming = {
      backend: run.name,
      forwardMs: round(median(run.walls.forward)),
      trainMs: round(trainMs),
      trainCpuMs: round(median(run.cpus)),
      trainGflops: round((3 * forwardGflop(size)) / (trainMs / 1000)),
    };
    if (options.profile ?? true) timing.topKernels = await topKernels(run);
    run.dispose();
    timings.push(timing);
  }
  if (previous !== undefined && previous !== tf.getBackend()) await tf.setBackend(previous);
  const [first, ...rest] = timings as [BackendTiming, ...BackendTiming[]];
  const speedups: BenchKernelsResult['speedups'] = {};
  for (const t of rest) {
    speedups[`${first.backend}/${t.backend}`] = {
      train: round(t.trainMs / first.trainMs),
      trainCpu: round(t.trainCpuMs / first.trainCpuMs),
      forward: round(t.forwardMs / first.forwardMs),
    };
  }
  return {
    model:
      'conv3x3(3→16)+relu, conv3x3(16)+relu, maxpool2, conv3x3(16)+relu, maxpool2, conv3x3(16)+relu, gap, dense10, softmax-CE',
    size,
    repeats,
    forwardGflop: round(forwardGflop(size) * 1000) / 1000,
    timings,
    speedups,
    node: process.version,
  };
}
