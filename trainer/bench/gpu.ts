// `tilestream bench gpu`: the acceptance check an admin runs once per GPU class. It reports the GPUs
// (nvidia-smi) and what TensorFlow makes of them, runs the equivalence check on the GPU, and times a
// streamed and a conventional ResNet-34 step at 4096² and 8192², each in a fresh process so that the
// device memory TensorFlow's allocator reached (allow-growth: it only grows) belongs to that step
// alone, next to the planner's prediction. Pure parsing and planning here; bench/gpu-child.ts runs
// the GPU work, bench/gpu-cli.ts the command.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { locateBuild } from '../backend/native/builds.ts';
import { optimizerFromSpec } from '../plan/memory.ts';
import { checkTile, planAutoTile } from '../plan/planner.ts';
import { builtinNetwork } from '../streaming/bodies.ts';
import type { Network } from '../streaming/network.ts';

export interface GpuDevice {
  index: number;
  name: string;
  memoryMiB: number;
  driver: string;
}

/** `nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits` */
export function parseGpuList(csv: string): GpuDevice[] {
  return csv
    .split('\n')
    .map((l) => l.split(',').map((c) => c.trim()))
    .filter((c) => c.length >= 4 && /^\d+$/.test(c[0] as string))
    .map(([index, name, memory, driver]) => ({
      index: Number(index),
      name: name as string,
      memoryMiB: Number(memory),
      driver: driver as string,
    }));
}

/** `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`: MiB per process. */
export function parseComputeApps(csv: string): Map<number, number> {
  const used = new Map<number, number>();
  for (const line of csv.split('\n')) {
    const [pid, mib] = line.split(',').map((c) => c.trim());
    if (pid && mib && /^\d+$/.test(pid) && /^\d+$/.test(mib)) used.set(Number(pid), Number(mib));
  }
  return used;
}

export const QUERY_GPUS = [
  '--query-gpu=index,name,memory.total,driver_version',
  '--format=csv,noheader,nounits',
];
export const QUERY_APPS = ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'];

/** The GPUs nvidia-smi lists, or why there are none to use. */
export function listGpus(
  smi = 'nvidia-smi',
): { ok: true; devices: GpuDevice[] } | { ok: false; reason: string } {
  const r = spawnSync(smi, QUERY_GPUS, { encoding: 'utf8' });
  if (r.error !== undefined) return { ok: false, reason: `no NVIDIA GPU here: ${smi} is not installed` };
  if (r.status !== 0) return { ok: false, reason: `no usable NVIDIA GPU: ${smi} failed: ${r.stderr.trim()}` };
  const devices = parseGpuList(r.stdout);
  return devices.length > 0 ? { ok: true, devices } : { ok: false, reason: `${smi} lists no GPU` };
}

/** The sizes the acceptance check times (ResNet-34, the paper's headline body). */
export const GPU_BENCH_SIZES = [4096, 8192] as const;

/** ResNet-34 as the benchmark streams it: body to layer3, a layer4 trunk, max pooling, 2 classes. */
export function benchNetwork(small?: { width: number; bodyEnd: string }): Network {
  return { ...builtinNetwork('resnet34', small ?? {}), pooling: 'max', outputs: 2 };
}

export interface StepPlan {
  image: number;
  tile: number;
  predictedStreamedBytes: number;
  predictedConventionalBytes: number;
}

/** The planner's tile for a GPU of `budgetBytes`, and its predictions for both ways of training. */
export function planBenchStep(image: number, budgetBytes: number): StepPlan {
  const req = {
    net: benchNetwork(),
    image,
    budgetBytes,
    backend: 'tensorflow' as const,
    // The bench computes gradients without an optimizer step, as the prediction assumes.
    optimizer: optimizerFromSpec(undefined),
  };
  const auto = planAutoTile(req);
  // Where no tile fits, the smallest legal one still runs (and the measured peak shows by how much).
  const tile = auto.fits ? auto.tile : auto.smallestTile;
  // Predictions at that tile without a budget, so both are figures even where one would not fit.
  const p = checkTile({ ...req, budgetBytes: 2 ** 60, tile });
  if (!p.fits) throw new Error(`unreachable: tile ${tile} does not fit an unlimited budget: ${p.reason}`);
  return {
    image,
    tile,
    predictedStreamedBytes: p.streamed.requiredBytes,
    predictedConventionalBytes: p.conventional.requiredBytes,
  };
}

export type ChildRequest =
  | { task: 'devices' }
  | { task: 'equivalence'; cases: number }
  | {
      task: 'step';
      mode: 'streamed' | 'conventional';
      image: number;
      tile: number;
      repeats: number;
      /** A narrower, shallower ResNet-34 body, only to test the child cheaply. */
      small?: { width: number; bodyEnd: string };
    };

export type ChildResult =
  | { ok: true; gpu: boolean; tensorflowVersion: string; reason: string; [k: string]: unknown }
  | { ok: false; outOfMemory: boolean; error: string };

/** Runs one request in a fresh process on the GPU build; the child prints one JSON line. */
export function runChild(req: ChildRequest, timeoutMs: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'gpu-child.ts'), JSON.stringify(req)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TF_FORCE_GPU_ALLOW_GROWTH: 'true', TILESTREAM_BACKEND: 'tensorflow' },
      timeout: timeoutMs,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.on('close', (code, signal) => {
      const last = out.trim().split('\n').at(-1);
      try {
        resolve(JSON.parse(last ?? '') as ChildResult);
      } catch {
        resolve({
          ok: false,
          outOfMemory: false,
          error: `${req.task} child ${signal ? `killed by ${signal}` : `exited ${code}`}: ${err.trim().slice(-1500)}`,
        });
      }
    });
  });
}

export interface GpuBenchStep {
  image: number;
  tile: number;
  streamed: { seconds?: number; deviceMiB?: number; error?: string };
  conventional: { seconds?: number; deviceMiB?: number; outOfMemory?: boolean; error?: string };
  predictedStreamedMiB: number;
  predictedConventionalMiB: number;
  /** streamed seconds / conventional seconds, when both ran. */
  timeRatio?: number;
}

export type GpuBenchReport =
  | { gpu: false; reason: string }
  | {
      gpu: true;
      devices: GpuDevice[];
      tensorflow: ChildResult;
      equivalence: ChildResult;
      steps: GpuBenchStep[];
      seconds: number;
    };

const MiB = 2 ** 20;

/** The whole check; `log` gets progress lines. Resolves `{ gpu: false }` where there is no GPU to test. */
export async function benchGpu(o: {
  sizes: readonly number[];
  repeats: number;
  cases: number;
  log: (line: string) => void;
}): Promise<GpuBenchReport> {
  const t0 = Date.now();
  const gpus = listGpus();
  if (!gpus.ok) return { gpu: false, reason: gpus.reason };
  if (locateBuild('gpu') === undefined) {
    return {
      gpu: false,
      reason:
        "the GPU build of the tensorflow backend is not set up: run 'tilestream setup tensorflow --gpu'",
    };
  }
  const devices = gpus.devices;
  o.log(`bench gpu: ${devices.map((d) => `${d.name} (${d.memoryMiB} MiB)`).join(', ')}`);
  const tensorflow = await runChild({ task: 'devices' }, 120_000);
  if (!tensorflow.ok || !tensorflow.gpu) {
    const why = tensorflow.ok ? tensorflow.reason : tensorflow.error;
    throw new Error(`nvidia-smi sees a GPU but TensorFlow does not use it: ${why}`);
  }
  o.log('bench gpu: equivalence of streamed and conventional training on the GPU');
  const equivalence = await runChild({ task: 'equivalence', cases: o.cases }, 180_000);
  const budget = Math.min(...devices.map((d) => d.memoryMiB)) * MiB;
  const steps: GpuBenchStep[] = [];
  for (const image of o.sizes) {
    const plan = planBenchStep(image, budget);
    o.log(`bench gpu: ResNet-34 ${image}², streamed with tile ${plan.tile}`);
    const s = await runChild(
      { task: 'step', mode: 'streamed', image, tile: plan.tile, repeats: o.repeats },
      240_000,
    );
    o.log(`bench gpu: ResNet-34 ${image}², conventional`);
    const c = await runChild(
      { task: 'step', mode: 'conventional', image, tile: plan.tile, repeats: o.repeats },
      240_000,
    );
    const part = (r: ChildResult) =>
      r.ok
        ? { seconds: r.seconds as number, deviceMiB: r.deviceMiB as number }
        : { error: r.error, ...(r.outOfMemory && { outOfMemory: true }) };
    const streamed = part(s);
    const conventional = part(c);
    steps.push({
      image,
      tile: plan.tile,
      streamed,
      conventional,
      predictedStreamedMiB: Math.round(plan.predictedStreamedBytes / MiB),
      predictedConventionalMiB: Math.round(plan.predictedConventionalBytes / MiB),
      ...(streamed.seconds !== undefined &&
        conventional.seconds !== undefined && { timeRatio: streamed.seconds / conventional.seconds }),
    });
  }
  return { gpu: true, devices, tensorflow, equivalence, steps, seconds: (Date.now() - t0) / 1000 };
}
