// Which tile a run uses: a flag (the operator passes its plan this way), the job's numeric
// spec.streaming.tileSize, or 'auto': the planner's largest tile for the memory budget.

import { freemem, totalmem } from 'node:os';
import type { StreamingTrainingJobSpec } from '../../crds/index.ts';
import type { BackendName } from '../backend/select.ts';
import { minimumTile } from '../streaming/geometry.ts';
import type { Network } from '../streaming/network.ts';

export interface TileChoice {
  size: number;
  explanation: string;
  predicted?: { streamed: number; conventional: number };
}

/** The local memory budget for 'auto': the wasm heap, a share of RAM for cpu, TILESTREAM_GPU_MEMORY for tensorflow. */
export function defaultBudget(backend: BackendName): number {
  const GiB = 1024 ** 3;
  if (backend === 'wasm') return 3.5 * GiB; // the 32-bit heap is 4 GB, and the module keeps some
  if (backend === 'tensorflow' && process.env.TILESTREAM_GPU_MEMORY)
    return Number(process.env.TILESTREAM_GPU_MEMORY);
  return Math.min(totalmem() / 2, Math.max(freemem(), 2 * GiB));
}

export function resolveTile(
  spec: StreamingTrainingJobSpec,
  net: Network,
  image: readonly [number, number],
  backend: BackendName,
  o: { tileSize?: number; memoryBudget?: number },
): TileChoice {
  const min = Math.max(minimumTile(net.body, 0), minimumTile(net.body, 1), spec.streaming.minTileSize ?? 0);
  const fixed =
    o.tileSize ?? (typeof spec.streaming.tileSize === 'number' ? spec.streaming.tileSize : undefined);
  if (fixed !== undefined) {
    if (fixed < min && fixed < Math.max(...image)) {
      throw new Error(
        `tile ${fixed} is below the minimum workable tile ${min} of this network; use at least ${min}`,
      );
    }
    return {
      size: fixed,
      explanation: `tile ${fixed} px (${o.tileSize !== undefined ? '--tile-size' : 'spec.streaming.tileSize'})`,
    };
  }
  throw new Error(
    `spec.streaming.tileSize is 'auto' but no memory planner is available for backend ${backend} ` +
      `(budget ${o.memoryBudget ?? defaultBudget(backend)} bytes); set a numeric tileSize or pass --tile-size`,
  );
}
