// Which tile a run uses: a flag (the operator passes its plan this way), the job's numeric
// spec.streaming.tileSize, or 'auto': the planner's auto tile for the memory budget (planAutoTile:
// as few tiles as the largest fitting tile, with the least overlap).

import { freemem, totalmem } from 'node:os';
import type { StreamingTrainingJobSpec } from '../../crds/index.ts';
import { memoryAllowance } from '../backend/memory-allowance.ts';
import type { BackendName } from '../backend/select.ts';
import { optimizerFromSpec } from '../plan/memory.ts';
import { checkTile, formatBytes, type PlanRequest, planAutoTile, planTile } from '../plan/planner.ts';
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
  const fixed =
    o.tileSize ?? (typeof spec.streaming.tileSize === 'number' ? spec.streaming.tileSize : undefined);
  // A fixed tile is checked where tiles are made: the planner and the geometry refuse one the body
  // cannot use, naming the sizes that work (exit code 2).
  if (fixed !== undefined) {
    return {
      size: fixed,
      explanation: `tile ${fixed} px (${o.tileSize !== undefined ? '--tile-size' : 'spec.streaming.tileSize'})`,
    };
  }
  const budget = o.memoryBudget ?? defaultBudget(backend);
  const plan = planAutoTile({
    ...planRequest(spec, net, image, backend, budget, spec.streaming.memoryHeadroom),
    minTile: spec.streaming.minTileSize,
  });
  if (!plan.fits) {
    throw new Error(`no tile fits the memory budget of ${formatBytes(budget)}: ${plan.reason}`);
  }
  return {
    size: plan.tile,
    explanation:
      `tile ${plan.tile} px chosen by the planner for a budget of ${formatBytes(budget)} (${backend}): predicted peak ` +
      `${formatBytes(plan.streamed.requiredBytes)} streamed vs ${formatBytes(plan.conventional.requiredBytes)} conventional`,
    predicted: { streamed: plan.streamed.requiredBytes, conventional: plan.conventional.requiredBytes },
  };
}

/** The wasm backend's heap is 32-bit: no more than 4 GiB, whatever the machine has. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;

/** Thrown before training when the planner predicts the tile cannot fit; exits like an out-of-memory failure. */
export class PredictedOutOfMemoryError extends Error {
  override name = 'PredictedOutOfMemoryError';
}

/** Memory a backend cannot exceed without failing uncleanly, checked before the first step. */
export interface HardMemoryLimit {
  bytes: number;
  /** Completes "more than the N …", e.g. "the wasm backend can address". */
  what: string;
}

/**
 * Where a backend does not fail cleanly when memory runs out, the hard limit to check the
 * planner's prediction against. wasm: allocations past the 4 GiB heap wrap around and the module
 * traps or returns nothing. TensorFlow's CPU build: oneDNN convolutions crash (SIGSEGV) on a failed
 * allocation instead of raising "OOM when allocating", so the process's memory allowance (the pod's
 * limit, else RAM) is the limit. On a GPU TensorFlow's allocator reports OOM itself (exit 3).
 */
export function hardMemoryLimit(
  backend: BackendName,
  tensorflowOnGpu: boolean,
  allowance: () => { bytes: number; source: string } = memoryAllowance,
  memoryBudget?: number,
): HardMemoryLimit | undefined {
  if (backend === 'wasm') return { bytes: WASM_HEAP_BYTES, what: 'the wasm backend can address' };
  if (backend === 'tensorflow' && !tensorflowOnGpu) {
    // A user who knows better (e.g. swap, or a prediction too cautious for their model) says so.
    if (memoryBudget !== undefined) return { bytes: memoryBudget, what: 'the --memory-budget allows' };
    const a = allowance();
    return { bytes: a.bytes, what: `${a.source} allows (TensorFlow on the CPU)` };
  }
  return undefined;
}

/** Throws PredictedOutOfMemoryError (exit 3) when the planner predicts the tile exceeds `limit`. */
export function checkTileFitsBackend(
  spec: StreamingTrainingJobSpec,
  net: Network,
  image: readonly [number, number],
  backend: BackendName,
  tile: number,
  limit: HardMemoryLimit | undefined,
): void {
  if (limit === undefined) return;
  const req = planRequest(spec, net, image, backend, limit.bytes, 0);
  const plan = checkTile({ ...req, tile });
  if (plan.fits) return;
  const best = planTile(req);
  throw new PredictedOutOfMemoryError(
    `out of memory (predicted): tile ${tile} needs about ${formatBytes(plan.smallestTileNeeds)}, more than the ` +
      `${formatBytes(limit.bytes)} ${limit.what}; ` +
      (best.fits
        ? `tile ${best.tile} fits`
        : backend === 'wasm'
          ? 'no tile fits this image on wasm (use the tensorflow backend)'
          : 'no tile fits this image in this memory'),
  );
}

/**
 * The planner's predicted peak of one training step at `tile`, in this process's memory: the wasm
 * heap, the JS heap for cpu, host RAM for TensorFlow on the CPU; 0 for TensorFlow on a GPU, whose
 * step lives in device memory. For the read-ahead budget (planReadAhead).
 */
export function predictedHostStepBytes(
  spec: StreamingTrainingJobSpec,
  net: Network,
  image: readonly [number, number],
  backend: BackendName,
  tensorflowOnGpu: boolean,
  tile: number,
): number {
  if (backend === 'tensorflow' && tensorflowOnGpu) return 0;
  // Any budget will do: the prediction is the same whether or not it fits.
  const plan = checkTile({ ...planRequest(spec, net, image, backend, 2 ** 50, 0), tile });
  return plan.streamed.requiredBytes;
}

/** What the planner needs to know about a job's run. */
function planRequest(
  spec: StreamingTrainingJobSpec,
  net: Network,
  image: readonly [number, number],
  backend: BackendName,
  budgetBytes: number,
  headroom: number,
): PlanRequest {
  return {
    net,
    image,
    budgetBytes,
    headroom,
    optimizer: optimizerFromSpec(spec.training.optimizer),
    backend,
    inputGrad: spec.streaming.saliency,
  };
}
