// Tile geometry of a streamed body: pure integer arithmetic, no TensorFlow. Each spatial axis is
// handled on its own (streaming-algorithm.md §1). Every tile is padded like the full image on all
// sides; outputs that touch padding on a side inside the image are cropped away, while on a side at
// the image border the tile's padding is the image's padding, so nothing is lost there.

import {
  type Axis,
  type Body,
  BodyError,
  type BodyNode,
  consumers,
  footprint,
  INPUT,
  inferChannels,
} from './graph.ts';

/** Per-axis facts of the body that do not depend on the image or tile. */
export interface AxisProfile {
  /** Cumulative stride of every node's output (INPUT has 1). */
  readonly stride: ReadonlyMap<string, number>;
  /** Total stride S of the body output. */
  readonly totalStride: number;
  /** Receptive field R of one output pixel, in input pixels. */
  readonly receptiveField: number;
  /** Input pixels before output index 0's window starts (the cumulative top padding P). */
  readonly offset: number;
}

export function axisProfile(body: Body, axis: Axis): AxisProfile {
  inferChannels(body); // structural checks first, so errors below are geometric
  const stride = new Map<string, number>([[INPUT, 1]]);
  // Output index i of a node reads input pixels [i·S − A, i·S + E − 1].
  const a = new Map<string, number>([[INPUT, 0]]);
  const e = new Map<string, number>([[INPUT, 1]]);
  for (const node of body.nodes) {
    const f = footprint(node.op, axis);
    const inS = node.inputs.map((i) => stride.get(i) as number);
    if (inS.some((s) => s !== inS[0])) {
      throw new BodyError(
        `body '${body.name}', node '${node.name}': merges inputs of different strides (${inS.join(', ')}) along ${axisName(axis)}`,
      );
    }
    const sIn = inS[0] as number;
    stride.set(node.name, sIn * f.s);
    a.set(node.name, Math.max(...node.inputs.map((i) => f.pLo * sIn + (a.get(i) as number))));
    e.set(node.name, Math.max(...node.inputs.map((i) => (f.k - 1 - f.pLo) * sIn + (e.get(i) as number))));
  }
  const A = a.get(body.output) as number;
  const E = e.get(body.output) as number;
  return { stride, totalStride: stride.get(body.output) as number, receptiveField: A + E, offset: A };
}

export function axisName(axis: Axis): string {
  return axis === 0 ? 'height' : 'width';
}

/** Length of every node's output for an input of length n (floor semantics). Throws when it vanishes or merges disagree. */
export function axisSizes(body: Body, axis: Axis, n: number): Map<string, number> {
  const sizes = new Map<string, number>([[INPUT, n]]);
  for (const node of body.nodes) {
    const f = footprint(node.op, axis);
    const inN = node.inputs.map((i) => sizes.get(i) as number);
    if (inN.some((m) => m !== inN[0])) {
      throw new GeometryError(
        `node '${node.name}' merges inputs of ${axisName(axis)} ${inN.join(', ')} for an input of ${n}; the branches disagree in size`,
      );
    }
    const out = Math.floor(((inN[0] as number) + f.pLo + f.pHi - f.k) / f.s) + 1;
    if (out < 1) {
      throw new GeometryError(
        `an input ${axisName(axis)} of ${n} is too small: node '${node.name}' would have no output`,
      );
    }
    sizes.set(node.name, out);
  }
  return sizes;
}

/** Thrown for image or tile sizes the body cannot stream; the message says what would work. */
export class GeometryError extends Error {
  override name = 'GeometryError';
}

/** Inclusive interval of local indices; empty when hi < lo. */
export interface Interval {
  readonly lo: number;
  readonly hi: number;
}

/**
 * Forward-valid interval of every node for an interior tile of length m: the local outputs that
 * equal the full-image outputs whatever lies beyond the tile (§1.2; merges intersect, §1.10).
 */
export function forwardValid(body: Body, axis: Axis, m: number): Map<string, Interval> {
  const valid = new Map<string, Interval>([[INPUT, { lo: 0, hi: m - 1 }]]);
  for (const node of body.nodes) {
    const f = footprint(node.op, axis);
    let lo = Number.NEGATIVE_INFINITY;
    let hi = Number.POSITIVE_INFINITY;
    for (const i of node.inputs) {
      const v = valid.get(i) as Interval;
      lo = Math.max(lo, Math.ceil((v.lo + f.pLo) / f.s));
      hi = Math.min(hi, Math.floor((v.hi + f.pLo - f.k + 1) / f.s));
    }
    valid.set(node.name, { lo, hi });
  }
  return valid;
}

/**
 * Gradient-valid interval of every node's output for an interior tile (§1.3): where the local
 * gradient equals the full-image gradient when only the forward-valid output gradient is fed back.
 * Used by the per-layer-crop method of the reference; kept for diagnostics and to check the
 * reference's golden vectors. At a fork the consumers' intervals intersect.
 */
export function gradientValid(body: Body, axis: Axis, m: number): Map<string, Interval> {
  const fwd = forwardValid(body, axis, m);
  const users = consumers(body);
  const byName = new Map(body.nodes.map((n) => [n.name, n]));
  const grad = new Map<string, Interval>([[body.output, fwd.get(body.output) as Interval]]);
  const order = [INPUT, ...body.nodes.map((n) => n.name)].reverse();
  for (const name of order) {
    if (name === body.output) continue;
    const f0 = fwd.get(name) as Interval;
    let lo = f0.lo;
    let hi = f0.hi;
    const cs = users.get(name) ?? [];
    if (cs.length === 0) continue; // a dead branch receives no gradient
    for (const c of cs) {
      const g = grad.get(c);
      if (!g) continue;
      const f = footprint((byName.get(c) as BodyNode).op, axis);
      lo = Math.max(lo, (g.lo - 1) * f.s + f.k - f.pLo);
      hi = Math.min(hi, (g.hi + 1) * f.s - f.pLo - 1);
    }
    grad.set(name, { lo, hi });
  }
  return grad;
}

/** One tile along one axis. */
export interface AxisTile {
  /** First input pixel (a multiple of the total stride). */
  readonly start: number;
  /** Input pixels covered: the tile length, or the image length when the image fits in one tile. */
  readonly length: number;
  /** Global output index of the tile's local output 0 (start / S). */
  readonly outStart: number;
  /** Output length of the tile. */
  readonly outLength: number;
  /** Global output indices this tile writes and owns in the backward pass, [lo, hi] inclusive. */
  readonly owned: Interval;
  /** Local output crop that is forward-valid for this tile (borders at the image edge are valid). */
  readonly valid: Interval;
}

/** The tile grid along one axis. */
export interface AxisGrid {
  readonly imageLength: number;
  readonly tileLength: number;
  readonly outputLength: number;
  readonly tiles: readonly AxisTile[];
}

/** Nearest multiples of `step` below and above `n` (both when n is not a multiple). */
export function nearestMultiples(n: number, step: number): number[] {
  const below = Math.floor(n / step) * step;
  const above = below + step;
  return below === n ? [n] : below > 0 ? [below, above] : [above];
}

/**
 * The aligned tile grid along one axis (§1.4–1.5). Tiles start at multiples of S, the last one
 * flush with the image end; an image no longer than the tile is a single tile of its own length.
 */
export function axisGrid(body: Body, axis: Axis, imageLength: number, tileLength: number): AxisGrid {
  const prof = axisProfile(body, axis);
  const S = prof.totalStride;
  const what = axisName(axis);
  if (!Number.isInteger(imageLength) || imageLength < 1) {
    throw new GeometryError(`image ${what} must be a positive integer, got ${imageLength}`);
  }
  if (!Number.isInteger(tileLength) || tileLength < 1) {
    throw new GeometryError(`tile ${what} must be a positive integer, got ${tileLength}`);
  }
  const fullSizes = axisSizes(body, axis, imageLength);
  const outputLength = fullSizes.get(body.output) as number;
  if (imageLength <= tileLength) {
    const whole: Interval = { lo: 0, hi: outputLength - 1 };
    return {
      imageLength,
      tileLength: imageLength,
      outputLength,
      tiles: [
        { start: 0, length: imageLength, outStart: 0, outLength: outputLength, owned: whole, valid: whole },
      ],
    };
  }
  if (tileLength % S !== 0) {
    throw new GeometryError(
      `tile ${what} ${tileLength} is not a multiple of the body's total stride ${S}; ` +
        `use ${nearestMultiples(tileLength, S).join(' or ')}`,
    );
  }
  if (imageLength % S !== 0) {
    throw new GeometryError(
      `image ${what} ${imageLength} is not a multiple of the body's total stride ${S}, so tiles cannot be aligned; ` +
        `crop or pad the image to ${nearestMultiples(imageLength, S).join(' or ')}`,
    );
  }
  const m = axisSizes(body, axis, tileLength).get(body.output) as number;
  const fv = forwardValid(body, axis, tileLength).get(body.output) as Interval;
  const width = fv.hi - fv.lo + 1;
  if (width < 1) {
    const min = minimumTile(body, axis);
    throw new GeometryError(
      `tile ${what} ${tileLength} is too small for this body: no output of an interior tile is exact ` +
        `(receptive field ${prof.receptiveField} px); the smallest workable tile is ${min}`,
    );
  }
  const tiles: AxisTile[] = [];
  let prevHi = -1;
  for (let r = 0; prevHi < outputLength - 1; r++) {
    let outStart = r * width;
    const last = outStart * S + tileLength >= imageLength;
    if (last) outStart = (imageLength - tileLength) / S;
    const first = r === 0;
    const valid: Interval = { lo: first ? 0 : fv.lo, hi: last ? m - 1 : fv.hi };
    const lo = Math.max(outStart + valid.lo, prevHi + 1);
    const hi = outStart + valid.hi;
    if (lo > prevHi + 1) throw new Error(`internal: tile grid leaves a gap before output ${lo}`);
    tiles.push({ start: outStart * S, length: tileLength, outStart, outLength: m, owned: { lo, hi }, valid });
    prevHi = hi;
    if (last) break;
  }
  return { imageLength, tileLength, outputLength, tiles };
}

/** Smallest tile length (a multiple of S) whose interior tiles yield at least one exact output. */
export function minimumTile(body: Body, axis: Axis): number {
  const prof = axisProfile(body, axis);
  const S = prof.totalStride;
  // The valid width grows by one per S pixels once the tile exceeds about R + 2P; search from S.
  const limit = S * Math.ceil((prof.receptiveField + 2 * prof.offset + 2 * S) / S) + S;
  for (let t = S; t <= limit; t += S) {
    let sizes: Map<string, number>;
    try {
      sizes = axisSizes(body, axis, t);
    } catch {
      continue;
    }
    if ((sizes.get(body.output) as number) < 1) continue;
    const fv = forwardValid(body, axis, t).get(body.output) as Interval;
    if (fv.hi >= fv.lo) return t;
  }
  throw new Error(`internal: no workable tile up to ${limit} px for body '${body.name}'`);
}

/** A 2-D tile: the product of a row tile and a column tile. */
export interface Tile {
  readonly row: AxisTile;
  readonly col: AxisTile;
}

/** The full 2-D plan for one image size. Tiles are in raster order. */
export interface TileGrid {
  readonly rows: AxisGrid;
  readonly cols: AxisGrid;
  readonly tiles: readonly Tile[];
  /** Total stride per axis. */
  readonly stride: readonly [number, number];
  /** Tile input area processed divided by the image area (the recomputation factor A). */
  readonly areaFactor: number;
}

export function tileGrid(
  body: Body,
  image: readonly [number, number],
  tile: readonly [number, number],
): TileGrid {
  const rows = axisGrid(body, 0, image[0], tile[0]);
  const cols = axisGrid(body, 1, image[1], tile[1]);
  const tiles: Tile[] = [];
  for (const row of rows.tiles) for (const col of cols.tiles) tiles.push({ row, col });
  const processed = rows.tiles.length * rows.tileLength * cols.tiles.length * cols.tileLength;
  return {
    rows,
    cols,
    tiles,
    stride: [axisProfile(body, 0).totalStride, axisProfile(body, 1).totalStride],
    areaFactor: processed / (image[0] * image[1]),
  };
}
