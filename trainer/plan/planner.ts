// The tile planner: the largest aligned tile whose predicted streamed peak fits a memory budget,
// or, when none does, an explanation with the numbers. Pure: no TensorFlow import, so the
// operator can size tiles for GPU node classes.

import { axisProfile, GeometryError, minimumTile, tileGrid } from '../streaming/geometry.ts';
import {
  type BackendName,
  type Breakdown,
  type Dtype,
  dominantTerm,
  type ImageStorage,
  type MemoryOptions,
  type MemoryPrediction,
  type OptimizerName,
  type PlanNetwork,
  predictConventional,
  predictStreamed,
  type StreamedPrediction,
  TERM_LABELS,
  type Term,
} from './memory.ts';

/** Thrown for requests that cannot be planned as given (bad numbers, tiles the body cannot use). */
export class PlanError extends Error {
  override name = 'PlanError';
}

export interface PlanRequest {
  readonly net: PlanNetwork;
  /** Image size [height, width] (or one side of a square). */
  readonly image: readonly [number, number] | number;
  /** Memory of the device (GPU memory, or the wasm heap limit), in bytes. */
  readonly budgetBytes: number;
  /** Fraction of the budget kept free for the runtime and the allocator; default 0.1. */
  readonly headroom?: number;
  /** Smallest tile side acceptable to the caller (raised to the body's own minimum, rounded up to the stride). */
  readonly minTile?: number;
  /** Largest tile side the caller accepts (after an out-of-memory exit); rounded down to the stride. */
  readonly maxTile?: number;
  readonly optimizer?: OptimizerName;
  readonly dtype?: Dtype;
  readonly backend?: BackendName;
  readonly imageStorage?: ImageStorage;
  readonly inputGrad?: boolean;
}

export interface TileFits {
  readonly fits: true;
  /** Tile side in pixels (a multiple of the stride; the image side where the image is smaller). */
  readonly tile: number;
  readonly stride: number;
  /** The smallest tile side that was allowed (body minimum, caller's minimum, stride). */
  readonly minimumTile: number;
  readonly budgetBytes: number;
  /** budget · (1 − headroom). */
  readonly usableBytes: number;
  readonly streamed: StreamedPrediction;
  readonly conventional: MemoryPrediction;
  /** 1 − streamed / conventional required bytes. */
  readonly savingsRatio: number;
  readonly savedBytes: number;
  /** Whether conventional training would also fit the budget. */
  readonly conventionalFits: boolean;
  /**
   * The smallest aligned tile that still needs as few tiles: same count, less overlap, so less
   * compute and memory (largest tiles sometimes only add overlap). Equal to `tile` when none is smaller.
   */
  readonly leanTile: { readonly tile: number; readonly tiles: number; readonly areaFactor: number };
  /** Set by planAutoTile when it chose a smaller tile than the largest that fits (this one). */
  readonly largestTile?: number;
}

export interface NothingFits {
  readonly fits: false;
  /** One or two sentences with the numbers. */
  readonly reason: string;
  readonly smallestTile: number;
  readonly stride: number;
  /** Required bytes at the smallest tile. */
  readonly smallestTileNeeds: number;
  readonly budgetBytes: number;
  readonly usableBytes: number;
  /** The largest term at the peak of the smallest tile. */
  readonly dominantTerm: Term;
  readonly dominantBytes: number;
  /** Terms that grow with the image, not the tile (image buffer, F, dL/dF, head) at that peak. */
  readonly imageBoundBytes: number;
  readonly breakdown: Breakdown;
  readonly streamed: StreamedPrediction;
}

export type TilePlan = TileFits | NothingFits;

const IMAGE_BOUND: readonly Term[] = ['image', 'featureMap', 'featureMapGradient', 'head'];

function imageSize(image: PlanRequest['image']): [number, number] {
  const [h, w] = typeof image === 'number' ? [image, image] : image;
  for (const [v, what] of [
    [h, 'height'],
    [w, 'width'],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new PlanError(`image ${what} must be a positive integer, got ${v}`);
  }
  return [h, w];
}

function checkBudget(budgetBytes: number, headroom: number): void {
  if (!Number.isFinite(budgetBytes) || budgetBytes <= 0) {
    throw new PlanError(`the memory budget must be a positive number of bytes, got ${budgetBytes}`);
  }
  if (!Number.isFinite(headroom) || headroom < 0 || headroom >= 1) {
    throw new PlanError(`headroom must be a fraction in [0, 1), e.g. 0.1 for 10%, got ${headroom}`);
  }
}

/** Tile constraints of the body: stride S (both axes) and the smallest workable tile. */
export function tileConstraints(net: PlanNetwork, minTile = 0): { stride: number; minimum: number } {
  const s0 = axisProfile(net.body, 0).totalStride;
  const s1 = axisProfile(net.body, 1).totalStride;
  const stride = lcm(s0, s1);
  const bodyMin = Math.max(minimumTile(net.body, 0), minimumTile(net.body, 1));
  const minimum = stride * Math.ceil(Math.max(bodyMin, minTile, stride) / stride);
  return { stride, minimum };
}

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  return (a / gcd(a, b)) * b;
}

function options(req: PlanRequest): MemoryOptions {
  return {
    ...(req.backend !== undefined && { backend: req.backend }),
    ...(req.dtype !== undefined && { dtype: req.dtype }),
    ...(req.optimizer !== undefined && { optimizer: req.optimizer }),
    ...(req.imageStorage !== undefined && { imageStorage: req.imageStorage }),
    ...(req.inputGrad !== undefined && { inputGrad: req.inputGrad }),
  };
}

/** Streamed prediction for a square tile side, clipped to the image per axis. */
function predictAt(req: PlanRequest, image: [number, number], tile: number): StreamedPrediction {
  return predictStreamed(req.net, image, [Math.min(tile, image[0]), Math.min(tile, image[1])], options(req));
}

/**
 * The largest tile (a multiple of the body's total stride, at least the minimum tile, at most
 * the image and maxTile) whose predicted streamed peak fits budget·(1 − headroom); or why none does.
 * Required memory grows with the tile, so the search is a bisection over multiples of the stride.
 */
export function planTile(req: PlanRequest): TilePlan {
  const image = imageSize(req.image);
  const headroom = req.headroom ?? 0.1;
  checkBudget(req.budgetBytes, headroom);
  const usable = req.budgetBytes * (1 - headroom);
  const { stride, minimum } = tileConstraints(req.net, req.minTile ?? 0);
  const largestSide = Math.max(...image);
  if (minimum > largestSide) {
    // The whole image is smaller than any tile: one tile of the image's size.
    return evaluate(req, image, largestSide, stride, minimum, usable, headroom);
  }
  let lo = Math.ceil(minimum / stride);
  let hi = Math.ceil(largestSide / stride);
  if (req.maxTile !== undefined && req.maxTile < largestSide) {
    // A cap below the minimum tile leaves the minimum (the operator stops reducing there).
    hi = Math.max(lo, Math.min(hi, Math.floor(req.maxTile / stride)));
  }
  const fitsAt = (k: number): StreamedPrediction | undefined => {
    const p = predictAt(req, image, k * stride);
    return p.requiredBytes <= usable ? p : undefined;
  };
  let smallest: StreamedPrediction;
  try {
    smallest = predictAt(req, image, lo * stride);
  } catch (e) {
    throw asPlanError(e, image, stride);
  }
  if (smallest.requiredBytes > usable) return nothingFits(req, lo * stride, stride, smallest, usable);
  if (fitsAt(hi) !== undefined) lo = hi;
  else {
    // Invariant: lo fits, hi does not.
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (fitsAt(mid) !== undefined) lo = mid;
      else hi = mid;
    }
  }
  return evaluate(req, image, Math.min(lo * stride, largestSide), stride, minimum, usable, headroom);
}

/**
 * The tile for `tileSize: auto`: as few tiles as the largest fitting tile needs, made by the smallest
 * tile that gives that count (its lean tile) — the same tiles with less overlap, so less compute and
 * memory. E.g. ResNet-18 at 8192² on 80 GiB: 6288 and 4208 both give 2×2 tiles; 4208 computes 55% less.
 */
export function planAutoTile(req: PlanRequest): TilePlan {
  const largest = planTile(req);
  if (!largest.fits || largest.leanTile.tile >= largest.tile) return largest;
  // Memory grows with the tile, so the smaller lean tile fits whenever the largest does.
  const lean = checkTile({ ...req, tile: largest.leanTile.tile });
  return lean.fits ? { ...lean, largestTile: largest.tile } : largest;
}

/** The predictions for a tile the caller chose; refuses tiles the body cannot stream. */
export function checkTile(req: PlanRequest & { readonly tile: number }): TilePlan {
  const image = imageSize(req.image);
  const headroom = req.headroom ?? 0.1;
  checkBudget(req.budgetBytes, headroom);
  const { stride, minimum } = tileConstraints(req.net, req.minTile ?? 0);
  const t = req.tile;
  if (!Number.isInteger(t) || t < 1) throw new PlanError(`tile must be a positive integer, got ${t}`);
  const clipped = Math.min(t, Math.max(...image));
  if (clipped < minimum && clipped < Math.max(...image)) {
    throw new PlanError(
      `tile ${t} is below the minimum tile ${minimum} for this body and settings ` +
        `(total stride ${stride}); use --tile ${minimum} or larger, or omit --tile to let the planner choose`,
    );
  }
  if (t < Math.max(...image) && t % stride !== 0) {
    const below = Math.floor(t / stride) * stride;
    throw new PlanError(
      `tile ${t} is not a multiple of the body's total stride ${stride}; use ${below >= minimum ? `${below} or ` : ''}${below + stride}`,
    );
  }
  const usable = req.budgetBytes * (1 - headroom);
  let p: StreamedPrediction;
  try {
    p = predictAt(req, image, clipped);
  } catch (e) {
    throw asPlanError(e, image, stride);
  }
  if (p.requiredBytes > usable) return nothingFits(req, clipped, stride, p, usable, true);
  return evaluate(req, image, clipped, stride, minimum, usable, headroom, p);
}

/** The smallest tile (a multiple of the stride, at least the minimum) with no more tiles than `tile`. */
export function leanTile(
  net: PlanNetwork,
  image: readonly [number, number],
  tile: number,
  stride: number,
  minimum: number,
): { tile: number; tiles: number; areaFactor: number } {
  const grid = (t: number) => tileGrid(net.body, image, [Math.min(t, image[0]), Math.min(t, image[1])]);
  const target = grid(tile);
  // The tile count never grows with the tile: bisect for the first multiple of the stride that reaches it.
  let lo = Math.ceil(minimum / stride);
  let hi = Math.floor(tile / stride);
  if (hi * stride !== tile || lo > hi)
    return { tile, tiles: target.tiles.length, areaFactor: target.areaFactor };
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (grid(mid * stride).tiles.length <= target.tiles.length) hi = mid;
    else lo = mid + 1;
  }
  const g = grid(lo * stride);
  return { tile: lo * stride, tiles: g.tiles.length, areaFactor: g.areaFactor };
}

function asPlanError(e: unknown, image: readonly [number, number], stride: number): Error {
  if (e instanceof GeometryError) {
    return new PlanError(
      `cannot tile a ${image[0]}×${image[1]} image for this body (stride ${stride}): ${e.message}`,
    );
  }
  return e as Error;
}

function evaluate(
  req: PlanRequest,
  image: [number, number],
  tile: number,
  stride: number,
  minimum: number,
  usable: number,
  _headroom: number,
  known?: StreamedPrediction,
): TileFits | NothingFits {
  const streamed = known ?? predictAt(req, image, tile);
  if (streamed.requiredBytes > usable) return nothingFits(req, tile, stride, streamed, usable);
  const conventional = predictConventional(req.net, image, options(req));
  const saved = conventional.requiredBytes - streamed.requiredBytes;
  return {
    fits: true,
    tile,
    stride,
    minimumTile: minimum,
    budgetBytes: req.budgetBytes,
    usableBytes: usable,
    streamed,
    conventional,
    savingsRatio: saved / conventional.requiredBytes,
    savedBytes: saved,
    conventionalFits: conventional.requiredBytes <= usable,
    leanTile: leanTile(req.net, image, tile, stride, minimum),
  };
}

function nothingFits(
  req: PlanRequest,
  tile: number,
  stride: number,
  streamed: StreamedPrediction,
  usable: number,
  chosen = false,
): NothingFits {
  const dominant = dominantTerm(streamed.breakdown);
  const imageBound = IMAGE_BOUND.reduce((a, t) => a + streamed.breakdown[t], 0);
  const gib = (b: number): string => formatBytes(b);
  const what = chosen ? `tile ${tile}` : `even the smallest tile (${tile})`;
  let reason =
    `${what} needs ${gib(streamed.requiredBytes)} but only ${gib(usable)} of the ${gib(req.budgetBytes)} budget ` +
    `is usable after headroom; the largest term is ${TERM_LABELS[dominant]} (${gib(streamed.breakdown[dominant])})`;
  if (imageBound > streamed.requiredBytes / 2) {
    reason +=
      `. ${gib(imageBound)} of it grows with the image, not the tile (feature map, its gradient, the head, the image): ` +
      'a smaller image, a later body end (smaller feature map), or a larger GPU is needed';
  } else if (!chosen) {
    reason += '; a larger GPU, half precision, or a smaller minimum tile is needed';
  } else {
    reason += '; choose a smaller tile or omit it to let the planner choose';
  }
  return {
    fits: false,
    reason,
    smallestTile: tile,
    stride,
    smallestTileNeeds: streamed.requiredBytes,
    budgetBytes: req.budgetBytes,
    usableBytes: usable,
    dominantTerm: dominant,
    dominantBytes: streamed.breakdown[dominant],
    imageBoundBytes: imageBound,
    breakdown: streamed.breakdown,
    streamed,
  };
}

/** Bytes as a short binary quantity: 512 B, 3.2 MiB, 14.9 GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}
