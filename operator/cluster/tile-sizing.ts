// Tile sizing for one memory budget: the one place the operator calls the planner
// (trainer/plan, pure: no TensorFlow). Built-in networks are planned from the spec; a TensorFlow.js
// model lives on the data volume, which the operator does not mount, so it runs with the spec's
// numeric tileSize and no memory prediction.

import type { StreamingTrainingJobSpec } from '../../crds/index.ts';
import { completeInputs, inputsFromSpec, type PlanInputs } from '../../trainer/plan/inputs.ts';
import type { BackendName } from '../../trainer/plan/memory.ts';
import { PlanError, tileConstraints } from '../../trainer/plan/planner.ts';
import { networkOf, runPlan } from '../../trainer/plan/run.ts';
import { GeometryError } from '../../trainer/streaming/geometry.ts';
import { BodyError } from '../../trainer/streaming/graph.ts';

export interface Prediction {
  streamedBytes: number;
  conventionalBytes: number;
  /** 1 − streamed/conventional, clamped to [0, 1] (a tile as large as the image saves nothing). */
  savingsRatio: number;
  savedBytes: number;
  /** Predicted compute of streamed training relative to conventional. */
  overheadFactor: number;
}

export type Sizing =
  | { fits: true; tile: number; prediction?: Prediction }
  | { fits: false; smallestTile: number; needsBytes: number; reason: string };

/** The spec cannot be planned as written (becomes condition reason InvalidSpec, not a crash). */
export class SizingError extends Error {
  override name = 'SizingError';
}

export interface SizingRequest {
  spec: StreamingTrainingJobSpec;
  budgetBytes: number;
  backend: BackendName;
  /** After an out-of-memory exit: the tile may not exceed this. */
  maxTile?: number;
}

/** Assumed stride of an imported model when shrinking its tile (the operator cannot read the model). */
const TFJS_TILE_STEP = 32;
/** Each out-of-memory retry shrinks the tile side to about this fraction (area to about 56%). */
export const SHRINK_FACTOR = 0.75;

function planInputs(spec: StreamingTrainingJobSpec, backend: BackendName, budgetBytes: number): PlanInputs {
  return completeInputs({
    ...inputsFromSpec(spec, 'spec'),
    // The planner asks for outputs; softmax has one per class, other losses a single one.
    ...(spec.training.loss !== 'softmax-cross-entropy' && { classes: 1 }),
    backend,
    budgetBytes,
  });
}

function explain(e: unknown): never {
  if (e instanceof PlanError || e instanceof GeometryError || e instanceof BodyError)
    throw new SizingError(e.message);
  throw e;
}

/**
 * The planner's auto tile for the budget (the fewest tiles, with the least overlap: planAutoTile), or
 * the spec's fixed tile if it fits, with its predictions; never above `maxTile`.
 */
export function sizeTile(req: SizingRequest): Sizing {
  const { spec } = req;
  const fixed = typeof spec.streaming.tileSize === 'number' ? spec.streaming.tileSize : undefined;
  if (spec.model.architecture === 'tfjs') {
    if (fixed === undefined) {
      throw new SizingError(
        "spec.streaming.tileSize is 'auto', but the operator can plan only the built-in architectures " +
          '(it does not read TensorFlow.js models from the data volume); set spec.streaming.tileSize to a number of pixels',
      );
    }
    return { fits: true, tile: req.maxTile !== undefined ? Math.min(fixed, req.maxTile) : fixed };
  }
  let inputs = planInputs(spec, req.backend, req.budgetBytes);
  if (fixed !== undefined) checkFixedTile(spec, inputs, fixed);
  const cap = req.maxTile;
  if (cap !== undefined) {
    // Auto: the planner's choice below the cap; a fixed tile above the cap is cut to it.
    inputs =
      inputs.tile === undefined
        ? { ...inputs, maxTile: cap }
        : inputs.tile > cap
          ? { ...inputs, tile: cap, roundTile: true }
          : inputs;
  }
  return sizeWith(inputs);
}

/**
 * A fixed tile the body cannot stream, said in the custom resource's terms (the planner's own message
 * names the CLI's --tile). The CRD refuses most of these at admission; this covers objects stored
 * before that rule, and minTileSize.
 */
function checkFixedTile(spec: StreamingTrainingJobSpec, inputs: PlanInputs, tile: number): void {
  let c: { stride: number; minimum: number };
  try {
    c = tileConstraints(networkOf(inputs), spec.streaming.minTileSize);
  } catch (e) {
    explain(e);
  }
  const side = Math.max(spec.data.imageSize.height, spec.data.imageSize.width);
  if (tile < c.minimum && tile < side) {
    throw new SizingError(
      `spec.streaming.tileSize: ${tile} is below the minimum tile ${c.minimum} px of this body and ` +
        `spec.streaming.minTileSize (total stride ${c.stride}); set it to ${c.minimum} or more, or to 'auto'`,
    );
  }
}

function sizeWith(inputs: PlanInputs): Sizing {
  let plan: ReturnType<typeof runPlan>['plan'];
  try {
    plan = runPlan(inputs).plan;
  } catch (e) {
    explain(e);
  }
  if (!plan.fits) {
    return {
      fits: false,
      smallestTile: plan.smallestTile,
      needsBytes: plan.smallestTileNeeds,
      reason: plan.reason,
    };
  }
  return {
    fits: true,
    tile: plan.tile,
    prediction: {
      streamedBytes: plan.streamed.requiredBytes,
      conventionalBytes: plan.conventional.requiredBytes,
      savingsRatio: Math.min(1, Math.max(0, plan.savingsRatio)),
      savedBytes: Math.max(0, plan.savedBytes),
      overheadFactor: plan.streamed.timeRatio,
    },
  };
}

/** The body's tile stride and smallest tile (with spec.streaming.minTileSize), in pixels. */
export interface TileLimits {
  stride: number;
  minimum: number;
}

/**
 * The tile limits of a spec, from the planner's geometry (an imported model's are assumed: the operator
 * cannot read it). Throws SizingError for a body the planner cannot build.
 */
export function tileLimitsOf(spec: StreamingTrainingJobSpec): TileLimits {
  if (spec.model.architecture === 'tfjs')
    return { stride: TFJS_TILE_STEP, minimum: Math.max(spec.streaming.minTileSize, TFJS_TILE_STEP) };
  try {
    return tileConstraints(networkOf(planInputs(spec, 'tensorflow', 1)), spec.streaming.minTileSize);
  } catch (e) {
    explain(e);
  }
}

/** The tile to retry with after an out-of-memory exit at `tile`, or undefined at the minimum. Pure arithmetic. */
export function nextSmallerTile(tile: number, limits: TileLimits): number | undefined {
  if (tile <= limits.minimum) return undefined;
  return Math.max(limits.minimum, Math.floor((tile * SHRINK_FACTOR) / limits.stride) * limits.stride);
}

/** The tile to retry with after the trainer ran out of memory at `tile`, or undefined at the minimum. */
export function smallerTile(spec: StreamingTrainingJobSpec, tile: number): number | undefined {
  return nextSmallerTile(tile, tileLimitsOf(spec));
}

/**
 * The memo key of a request: everything of the spec that the planner reads, and the budget, backend
 * and cap. Two jobs with the same model, image and streaming settings share their sizings.
 */
export function sizingKey(req: SizingRequest): string {
  const s = req.spec;
  return JSON.stringify([
    s.model,
    s.data.imageSize,
    s.data.channels,
    s.streaming,
    s.training.optimizer,
    s.training.loss,
    req.budgetBytes,
    req.backend,
    req.maxTile,
  ]);
}

/**
 * sizeTile with a bounded memo, in the calling thread (tests and tools; the operator plans off its
 * event loop with async-sizer.ts).
 */
export function memoizedSizer(capacity = 256): (req: SizingRequest) => Sizing {
  const memo = new Map<string, Sizing | SizingError>();
  return (req) => {
    const key = sizingKey(req);
    let hit = memo.get(key);
    if (hit === undefined) {
      try {
        hit = sizeTile(req);
      } catch (e) {
        if (!(e instanceof SizingError)) throw e;
        hit = e;
      }
      if (memo.size >= capacity) memo.delete(memo.keys().next().value as string);
    } else memo.delete(key);
    memo.set(key, hit); // re-inserted: the Map's order makes this an LRU
    if (hit instanceof SizingError) throw hit;
    return hit;
  };
}
