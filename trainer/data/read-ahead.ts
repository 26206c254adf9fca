// Reading ahead within an image: the streaming executor reads the tiles of a grid in a fixed order
// (every tile for the forward pass, then every tile again for the backward pass), so the next
// tile's pixels can be read — decoded by libvips or OpenSlide on their own threads — while the
// current tile computes. Bounded: at most `maxBytes` of float32 tiles wait, at most two tiles ahead.
// A read that is not the expected next one is served directly, so any other order stays correct.
import * as tf from '@tensorflow/tfjs-core';
import { cpuAllowance } from '../backend/cpu-allowance.ts';
import type { TileSource } from '../streaming/executor.ts';
import type { TileGrid } from '../streaming/geometry.ts';

/** What a source must offer for reading ahead: plain float32 regions (no tensors made early). */
export interface Float32Source extends TileSource {
  readFloat32(top: number, left: number, rows: number, cols: number): Promise<Float32Array>;
}

export interface ReadAheadOptions {
  /** Bytes of tiles read ahead at most (default readAheadBytes()); below one tile, nothing is read ahead. */
  maxBytes?: number;
  /** Passes over the grid the consumer makes (default 2: forward, then backward). */
  passes?: number;
}

/** Overrides the budget in MiB (0 turns reading ahead off); for measuring both ways. */
export const READ_AHEAD_ENV = 'TILESTREAM_READ_AHEAD_MIB';

/** Reading ahead needs spare cores: below this many, the decode threads only compete with the compute. */
export const MIN_CPUS_FOR_READ_AHEAD = 4;

/**
 * The bytes to read ahead in this process: 64 MiB with at least MIN_CPUS_FOR_READ_AHEAD CPUs (the
 * allowance: affinity capped by the cgroup quota), else 0. On 2 busy cores reading ahead made steps
 * 11–29% slower (`tilestream bench slides --train`, README), as the decode ran on the cores the
 * convolutions needed; with spare cores (a GPU node's) it overlaps the reads with the step.
 */
export function readAheadBytes(
  cpus: number = cpuAllowance().cpus,
  env: Record<string, string | undefined> = process.env,
): number {
  const mib = Number(env[READ_AHEAD_ENV]);
  if (env[READ_AHEAD_ENV]?.trim() && Number.isFinite(mib) && mib >= 0) return mib * 2 ** 20;
  return cpus >= MIN_CPUS_FOR_READ_AHEAD ? 64 * 2 ** 20 : 0;
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
  o: ReadAheadOptions = {},
): TileSource & { settle(): Promise<void>; readonly hits: number } {
  const order: Rect[] = [];
  for (let p = 0; p < (o.passes ?? 2); p++) {
    for (const t of grid.tiles)
      order.push({ top: t.row.start, left: t.col.start, rows: t.row.length, cols: t.col.length });
  }
  const largest = Math.max(1, ...order.map((r) => r.rows * r.cols * source.channels * 4));
  const depth = Math.min(MAX_DEPTH, Math.floor((o.maxBytes ?? readAheadBytes()) / largest));
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
