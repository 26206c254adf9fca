// Reading ahead within an image: the streaming executor reads the tiles of a grid in a fixed order
// (every tile for the forward pass, then every tile again for the backward pass), so the next
// tile's pixels can be read — decoded by libvips or OpenSlide on their own threads — while the
// current tile computes. Bounded: at most `maxBytes` of float32 tiles wait, at most two tiles ahead.
// A read that is not the expected next one is served directly, so any other order stays correct.
import * as tf from '@tensorflow/tfjs-core';
import type { TileSource } from '../streaming/executor.ts';
import type { TileGrid } from '../streaming/geometry.ts';

/** What a source must offer for reading ahead: plain float32 regions (no tensors made early). */
export interface Float32Source extends TileSource {
  readFloat32(top: number, left: number, rows: number, cols: number): Promise<Float32Array>;
}

export interface ReadAheadOptions {
  /** Bytes of tiles read ahead at most (planReadAhead's tileBytes); below one tile, nothing is read ahead. */
  maxBytes: number;
  /** Passes over the grid the consumer makes (default 2: forward, then backward). */
  passes?: number;
}

/** Overrides the budget in MiB (0 turns reading ahead off); for measuring both ways. */
export const READ_AHEAD_ENV = 'TILESTREAM_READ_AHEAD_MIB';

/** Reading ahead needs spare cores: below this many, the decode threads only compete with the compute. */
export const MIN_CPUS_FOR_READ_AHEAD = 4;

/** The share of the memory left after the predicted step that reading ahead may take. */
export const READ_AHEAD_SHARE = 0.25;

/** At most this much, however much is left: two 4096² RGB float32 tiles ahead (384 MiB) fit. */
export const MAX_READ_AHEAD_BYTES = 512 * 2 ** 20;

/** What the read-ahead budget is taken from (bytes). */
export interface ReadAheadMemory {
  /** What this process may use: the pod's memory limit, else the machine's RAM (memoryAllowance). */
  allowanceBytes: number;
  /** Resident now, before the first step: the runtime, the backend, the model, the manifests. */
  residentBytes: number;
  /** The planner's predicted peak of a training step in this process's memory; 0 when it lives on a GPU. */
  stepBytes: number;
  /** The most one image opened ahead can hold before it is read (its decoded pixels; a slide's thumbnail). */
  openedImageBytes: number;
}

export interface ReadAheadPlan {
  /** Bytes of tiles that may wait, read ahead within the current image (ReadAheadOptions.maxBytes). */
  tileBytes: number;
  /** Whether the next image is opened while one trains (it takes openedImageBytes of the budget). */
  openAhead: boolean;
  /** One sentence with the numbers, for the log. */
  reason: string;
}

const mib = (b: number): string => `${Math.round(b / 2 ** 20)} MiB`;

/**
 * How much to read ahead in a training process: READ_AHEAD_SHARE of the memory left once the
 * predicted step is in (allowance − resident − step), at most MAX_READ_AHEAD_BYTES, and nothing
 * with fewer than MIN_CPUS_FOR_READ_AHEAD CPUs — on 2 busy cores reading ahead made steps 11–29%
 * slower (`tilestream bench slides --train`, README), as the decode ran on the cores the
 * convolutions needed. Opening the next image comes first when the budget holds it (it overlaps a
 * whole image's open: decode, or a slide's thumbnail and tissue); the rest goes to tiles.
 * TILESTREAM_READ_AHEAD_MIB replaces the budget (not the split).
 */
export function planReadAhead(
  m: ReadAheadMemory,
  cpus: number,
  env: Record<string, string | undefined>,
): ReadAheadPlan {
  const override = Number(env[READ_AHEAD_ENV]);
  let budget: number;
  let why: string;
  if (env[READ_AHEAD_ENV]?.trim() && Number.isFinite(override) && override >= 0) {
    budget = override * 2 ** 20;
    why = `${READ_AHEAD_ENV}=${override}`;
  } else if (cpus < MIN_CPUS_FOR_READ_AHEAD) {
    return {
      tileBytes: 0,
      openAhead: false,
      reason: `no read-ahead: ${cpus} CPUs (at least ${MIN_CPUS_FOR_READ_AHEAD} are needed for the decode not to slow the step)`,
    };
  } else {
    const left = Math.max(0, m.allowanceBytes - m.residentBytes - m.stepBytes);
    budget = Math.min(MAX_READ_AHEAD_BYTES, Math.floor(left * READ_AHEAD_SHARE));
    why =
      `${READ_AHEAD_SHARE * 100}% of the ${mib(left)} left of ${mib(m.allowanceBytes)} after ${mib(m.residentBytes)} ` +
      `resident and the predicted step's ${mib(m.stepBytes)}` +
      (budget === MAX_READ_AHEAD_BYTES ? `, capped at ${mib(MAX_READ_AHEAD_BYTES)}` : '');
  }
  const openAhead = budget > 0 && budget >= m.openedImageBytes;
  const tileBytes = budget - (openAhead ? m.openedImageBytes : 0);
  return {
    tileBytes,
    openAhead,
    reason:
      `read-ahead budget ${mib(budget)} (${why}): ` +
      `${openAhead ? `the next image opened ahead (${mib(m.openedImageBytes)}), ` : 'no image opened ahead, '}` +
      `${mib(tileBytes)} of tiles`,
  };
}

/** At most this many tiles ahead: one hides the read behind the compute; more only costs memory. */
const MAX_DEPTH = 2;

interface Rect {
  top: number;
  left: number;
  rows: number;
  cols: number;
}

/**
 * A TileSource that serves `grid`'s tiles from `source`, reading up to two tiles ahead of the one
 * requested. Reads still in flight when the consumer stops are awaited by `settle()` (call it
 * before closing the source) and their results dropped.
 */
export function readAhead(
  source: Float32Source,
  grid: TileGrid,
  o: ReadAheadOptions,
): TileSource & { settle(): Promise<void>; readonly hits: number } {
  const order: Rect[] = [];
  for (let p = 0; p < (o.passes ?? 2); p++) {
    for (const t of grid.tiles)
      order.push({ top: t.row.start, left: t.col.start, rows: t.row.length, cols: t.col.length });
  }
  const largest = Math.max(1, ...order.map((r) => r.rows * r.cols * source.channels * 4));
  const depth = Math.min(MAX_DEPTH, Math.floor(o.maxBytes / largest));
  const pending = new Map<number, Promise<Float32Array>>();
  let next = 0; // position in `order` of the read expected next
  let hits = 0;
  const start = (k: number): void => {
    const r = order[k];
    if (r === undefined || pending.has(k)) return;
    const p = source.readFloat32(r.top, r.left, r.rows, r.cols);
    p.catch(() => {}); // surfaced when consumed; a dropped read's failure is no one's concern
    pending.set(k, p);
  };
  const same = (r: Rect | undefined, top: number, left: number, rows: number, cols: number): boolean =>
    r !== undefined && r.top === top && r.left === left && r.rows === rows && r.cols === cols;
  return {
    height: source.height,
    width: source.width,
    channels: source.channels,
    get hits() {
      return hits;
    },
    async read(top, left, rows, cols) {
      let data: Float32Array;
      if (same(order[next], top, left, rows, cols)) {
        const k = next++;
        const early = pending.get(k);
        if (early !== undefined) hits++;
        start(k);
        for (let j = 1; j <= depth; j++) start(k + j);
        data = await (pending.get(k) as Promise<Float32Array>);
        pending.delete(k);
      } else {
        data = await source.readFloat32(top, left, rows, cols);
      }
      return tf.tensor4d(data, [1, rows, cols, source.channels], 'float32');
    },
    async settle() {
      await Promise.allSettled([...pending.values()]);
      pending.clear();
    },
  };
}
