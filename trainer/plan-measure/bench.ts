// The measurements of `tilestream bench memory` (the command is cli.ts): for the built-in networks
// at a range of image sizes, the predicted peak memory of conventional and streamed training next
// to the measured one wherever the run fits this machine (the wasm heap's 4 GiB, the time limit). Each measurement runs in a child
// process (child.ts), so the wasm heap it reports is that step's own high-water mark.

import { spawn } from 'node:child_process';
import { totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  type MemoryPrediction,
  type PlanNetwork,
  predictConventional,
  predictStreamed,
} from '../plan/memory.ts';
import { formatBytes, planAutoTile, planTile, tileConstraints } from '../plan/planner.ts';
import { type Architecture, builtinNetwork } from '../streaming/bodies.ts';
import { axisProfile, axisSizes } from '../streaming/geometry.ts';
import { type Body, inferChannels } from '../streaming/graph.ts';
import { formatTable } from '../text-table.ts';
import type { ChildResult, StepRequest } from './child.ts';

/** The networks of the bench: narrow enough for wasm to train them at 4096² in seconds. */
export const BENCH_NETWORKS: readonly { arch: Architecture; width?: number; label: string }[] = [
  { arch: 'smallcnn', label: 'smallcnn (width 16)' },
  { arch: 'resnet18', width: 16, label: 'resnet18 width 16, to layer3' },
  { arch: 'resnet34', width: 16, label: 'resnet34 width 16, to layer3' },
  { arch: 'midl2018', label: 'midl2018 (9 blocks, to conv3-4)' },
  { arch: 'convnext-atto', label: 'convnext-atto (width 40), to stages.2' },
];

// Effective training throughput (conv FLOP/s, narrow networks, shared 2-core machine), measured
// with this bench; only used to skip runs over --max-seconds.
const FLOPS_PER_SECOND = { wasm: 3e9, cpu: 1.5e8 } as const;
/** The wasm heap is 32-bit; leave room for the module itself. */
const WASM_HEAP_LIMIT = 3.8 * 2 ** 30;

/** The options of benchMemory (the flags of `tilestream bench memory`). */
export interface BenchMemoryFlags {
  backend: 'wasm' | 'cpu';
  sizes: number[];
  memory: number;
  tile: number;
  measure: boolean;
  maxSeconds: number;
  paper?: boolean;
  json?: boolean;
  /** Only these architectures. */
  networks?: Architecture[];
  /**
   * The streamed tile is the planner's auto tile for the budget (the trainer's tileSize: auto —
   * the fewest tiles, the least overlap), not capped by `tile` or half the image.
   */
  autoTile?: boolean;
  /** Fraction of `memory` kept free when planning the tile (the planner's default 0.1). */
  headroom?: number;
}

export interface Measured {
  readonly peakBytes: number;
  readonly bufferPeakBytes: number;
  readonly wasmHeapBytes?: number;
  readonly seconds: number;
}

export interface BenchCell {
  readonly predicted?: MemoryPrediction;
  readonly measured?: Measured;
  /** Why there is no measurement (or no prediction). */
  readonly note?: string;
}

export interface BenchRow {
  readonly network: string;
  readonly image: number;
  readonly tile?: number;
  readonly conventional: BenchCell;
  readonly streamed: BenchCell;
}

export interface BenchMemoryReport {
  readonly backend: 'wasm' | 'cpu';
  readonly budgetBytes: number;
  readonly headroom?: number;
  /** The streamed tiles are the planner's auto tiles (--auto-tile). */
  readonly autoTile?: boolean;
  readonly rows: readonly BenchRow[];
}

/** Multiply-adds ×2 of every convolution of a body on an input of size [h, w]. */
function convFlops(body: Body, h: number, w: number): number {
  const channels = inferChannels(body);
  const hs = axisSizes(body, 0, h);
  const ws = axisSizes(body, 1, w);
  let flops = 0;
  for (const n of body.nodes) {
    if (n.op.kind !== 'conv2d') continue;
    const cin = channels.get(n.inputs[0] as string) as number;
    const px = (hs.get(n.name) as number) * (ws.get(n.name) as number);
    flops += 2 * px * n.op.filters * n.op.kernel[0] * n.op.kernel[1] * (cin / n.op.groups);
  }
  return flops;
}

/** Seconds a step should take: forward + backward ≈ 3 forwards; streaming adds the recomputation. */
function estimateSeconds(
  net: PlanNetwork,
  image: number,
  tile: number | undefined,
  backend: 'wasm' | 'cpu',
): number {
  const S = axisProfile(net.body, 0).totalStride;
  const trunk = net.trunk ? 3 * convFlops(net.trunk, Math.floor(image / S), Math.floor(image / S)) : 0;
  const body = convFlops(net.body, image, image);
  const factor = tile === undefined ? 3 : 4 * (predictStreamedArea(net, image, tile) ?? 1);
  return (factor * body + trunk) / FLOPS_PER_SECOND[backend];
}

function predictStreamedArea(net: PlanNetwork, image: number, tile: number): number | undefined {
  try {
    return predictStreamed(net, [image, image], [tile, tile], { backend: 'cpu' }).areaFactor;
  } catch {
    return undefined;
  }
}

function runChild(req: StepRequest): Promise<ChildResult> {
  const script = fileURLToPath(new URL('./child.ts', import.meta.url));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, JSON.stringify(req)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('close', (code, signal) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as ChildResult);
      } catch {
        const why = signal ? `killed by ${signal}` : `exit code ${code}`;
        const last = err.trim().split('\n').slice(-3).join(' ').slice(0, 300);
        resolve({ ok: false, error: `the measuring process died (${why}): ${last}` });
      }
    });
  });
}

/** The tile of a row: the planner's choice for the budget, at most `cap` and half the image. */
function benchTile(net: PlanNetwork, image: number, flags: BenchMemoryFlags): number | undefined {
  const { stride, minimum } = tileConstraints(net);
  const request = {
    net,
    image,
    budgetBytes: flags.memory,
    ...(flags.headroom !== undefined && { headroom: flags.headroom }),
    backend: flags.backend,
    imageStorage: 'float32',
    optimizer: 'none',
  } as const;
  if (flags.autoTile) {
    const auto = planAutoTile(request);
    return auto.fits ? auto.tile : minimum < image ? minimum : undefined;
  }
  const cap = Math.floor(Math.min(flags.tile, image / 2) / stride) * stride;
  if (cap < minimum) return minimum < image ? minimum : undefined;
  const plan = planTile(request);
  return plan.fits ? Math.min(plan.tile, cap) : minimum;
}

export async function benchMemory(
  flags: BenchMemoryFlags,
  log: (line: string) => void,
): Promise<BenchMemoryReport> {
  const limit = flags.backend === 'wasm' ? WASM_HEAP_LIMIT : totalmem() / 2;
  const opts = { backend: flags.backend, imageStorage: 'float32' as const, optimizer: 'none' as const };
  const rows: BenchRow[] = [];
  for (const n of BENCH_NETWORKS) {
    if (flags.networks !== undefined && !flags.networks.includes(n.arch)) continue;
    const net: PlanNetwork = {
      ...builtinNetwork(n.arch, n.width !== undefined ? { width: n.width } : {}),
      pooling: 'max',
      outputs: 2,
    };
    for (const image of flags.sizes) {
      const cell = async (tile: number | undefined): Promise<BenchCell> => {
        let predicted: MemoryPrediction;
        try {
          predicted =
            tile === undefined
              ? predictConventional(net, [image, image], opts)
              : predictStreamed(net, [image, image], [tile, tile], opts);
        } catch (e) {
          return { note: (e as Error).message };
        }
        if (!flags.measure) return { predicted };
        if (predicted.requiredBytes > limit) {
          return {
            predicted,
            note: `not run: needs ${formatBytes(predicted.requiredBytes)}, over this machine's ${formatBytes(limit)}${
              flags.backend === 'wasm' ? ' (wasm heap)' : ''
            }`,
          };
        }
        const eta = estimateSeconds(net, image, tile, flags.backend);
        if (eta > flags.maxSeconds) {
          return {
            predicted,
            note: `not run: about ${Math.round(eta)} s, over --max-seconds ${flags.maxSeconds}`,
          };
        }
        const what = `${n.label} ${image}² ${tile === undefined ? 'conventional' : `streamed, tile ${tile}`}`;
        log(`measuring ${what} (about ${Math.max(1, Math.round(eta))} s)`);
        const r = await runChild({
          backend: flags.backend,
          arch: n.arch,
          ...(n.width !== undefined && { width: n.width }),
          image: [image, image],
          ...(tile !== undefined && { tile: [tile, tile] }),
        });
        if (!r.ok) return { predicted, note: `measurement failed: ${r.error}` };
        const measured: Measured = {
          peakBytes: r.peakBytes,
          bufferPeakBytes: r.bufferPeakBytes,
          ...(r.wasmHeapBytes !== undefined && { wasmHeapBytes: r.wasmHeapBytes }),
          seconds: r.seconds,
        };
        log(
          `  tf.profile ${formatBytes(measured.peakBytes)} (predicted ${formatBytes(predicted.peakBytes)}), ` +
            `buffers ${formatBytes(measured.bufferPeakBytes)} (predicted ${formatBytes(predicted.bufferPeakBytes)})` +
            (measured.wasmHeapBytes !== undefined
              ? `, wasm heap ${formatBytes(measured.wasmHeapBytes)}`
              : '') +
            `, ${measured.seconds.toFixed(1)} s`,
        );
        return { predicted, measured };
      };
      let tile: number | undefined;
      try {
        tile = benchTile(net, image, flags);
      } catch (e) {
        rows.push({ network: n.label, image, conventional: { note: (e as Error).message }, streamed: {} });
        continue;
      }
      const conventional = await cell(undefined);
      const streamed =
        tile === undefined ? { note: 'the image is smaller than the minimum tile' } : await cell(tile);
      rows.push({ network: n.label, image, ...(tile !== undefined && { tile }), conventional, streamed });
    }
  }
  return {
    backend: flags.backend,
    budgetBytes: flags.memory,
    ...(flags.headroom !== undefined && { headroom: flags.headroom }),
    ...(flags.autoTile && { autoTile: true }),
    rows,
  };
}

function error(predicted: number, measured: number): string {
  const e = (predicted - measured) / measured;
  return `${e >= 0 ? '+' : ''}${(100 * e).toFixed(1)}%`;
}

function cellText(c: BenchCell, field: 'predicted' | 'measured'): string {
  if (field === 'predicted') return c.predicted ? formatBytes(c.predicted.requiredBytes) : '–';
  if (!c.measured || !c.predicted) return c.note ? '–' : '';
  const m = c.measured;
  const heap =
    m.wasmHeapBytes !== undefined
      ? `; heap ${formatBytes(m.wasmHeapBytes)} (${error(c.predicted.requiredBytes, m.wasmHeapBytes)})`
      : '';
  return (
    `${formatBytes(m.bufferPeakBytes)} (${error(c.predicted.bufferPeakBytes, m.bufferPeakBytes)}); ` +
    `profile ${formatBytes(m.peakBytes)} (${error(c.predicted.peakBytes, m.peakBytes)})${heap}`
  );
}

export function formatBenchMemory(r: BenchMemoryReport): string {
  const rows = r.rows.map((row) => [
    row.network,
    `${row.image}²`,
    row.tile !== undefined ? String(row.tile) : '–',
    cellText(row.conventional, 'predicted'),
    cellText(row.conventional, 'measured'),
    cellText(row.streamed, 'predicted'),
    cellText(row.streamed, 'measured'),
  ]);
  const notes = r.rows.flatMap((row) =>
    [
      ['conventional', row.conventional.note],
      [`streamed (tile ${row.tile ?? '–'})`, row.streamed.note],
    ]
      .filter(([, note]) => note !== undefined)
      .map(([what, note]) => `- ${row.network} ${row.image}² ${what}: ${note}`),
  );
  return (
    `Predicted peak (${r.backend}${r.backend === 'wasm' ? ': the heap the step needs' : ': distinct buffers'}) and measured ` +
    'peaks, each with the error of its prediction: distinct buffers; tf.profile peakBytes; the wasm heap high-water mark.\n' +
    (r.autoTile
      ? `Streamed tiles: the planner's auto tile for ${formatBytes(r.budgetBytes)} (the trainer's tileSize: auto).\n\n`
      : `Streamed tiles: the planner's choice for ${formatBytes(r.budgetBytes)}, at most half the image.\n\n`) +
    formatTable(['network', 'image', 'tile', 'conventional', 'measured', 'streamed', 'measured'], rows) +
    (notes.length > 0 ? `\n${notes.join('\n')}\n` : '')
  );
}
