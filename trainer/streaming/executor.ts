// Executors for a streamed network: the conventional full-image baseline, the tiled forward
// without a gradient tape, and the output-partition backward (streaming-algorithm.md §1.11): one
// gradient call per tile with that tile's owned slice of dL/dF, parameter gradients summed, input
// gradients scatter-added. Every tensor made per tile is disposed before the next tile.

import * as tf from '@tensorflow/tfjs-core';
import type { Tile, TileGrid } from './geometry.ts';
import { type Body, parameterShapes } from './graph.ts';
import { type BodyLayers, runBodyWith } from './layers.ts';
import { activation, affine, avgPool2d, conv2d, layerNorm, maxPool2d } from './ops.ts';
import { TF_LAYER_OPS } from './tf-layer-ops.ts';

/** Parameters of one body by the names of `parameterShapes` (e.g. `conv1/kernel`). */
export type Params = ReadonlyMap<string, tf.Tensor>;

/** The engine's layers: ops.ts checks each call, then runs the shared layer (layers.ts). */
export const ENGINE_LAYERS: BodyLayers<tf.Tensor> = {
  ops: TF_LAYER_OPS,
  conv: (x, w, bias, op) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, bias, op),
  maxPool: (x, op) => maxPool2d(x as tf.Tensor4D, op),
  avgPool: (x, op) => avgPool2d(x as tf.Tensor4D, op),
  activation: (x, fn, alpha) => activation(x as tf.Tensor4D, fn, alpha),
  affine: (x, scale, shift) => affine(x as tf.Tensor4D, scale, shift),
  layerNorm: (x, gamma, beta, epsilon) => layerNorm(x as tf.Tensor4D, gamma, beta, epsilon),
};

/**
 * Runs the body on a batch (conventionally: a whole image, or one tile). Frees intermediates
 * after their last use (layers.ts runBodyWith, which the planner runs on shapes).
 */
export function runBody(body: Body, params: Params, x: tf.Tensor4D): tf.Tensor4D {
  return runBodyWith(
    ENGINE_LAYERS,
    body,
    params,
    x,
    (name) => new Error(`missing parameter '${name}' of body '${body.name}'`),
  ) as tf.Tensor4D;
}

/** Where tiles come from: an in-memory image, or a reader that decodes only the region it needs. */
export interface TileSource {
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  /** The normalised float32 region [1, rows, cols, C]; the caller disposes it. */
  read(top: number, left: number, rows: number, cols: number): Promise<tf.Tensor4D> | tf.Tensor4D;
}

/**
 * A tile source over an image tensor [1, H, W, C] that the caller owns. Tiles are copied out on the
 * host: the cpu backend's Slice kernel takes seconds on a large image, a row copy takes microseconds.
 */
export function tensorSource(image: tf.Tensor4D): TileSource {
  const [, height, width, channels] = image.shape;
  let pixels: Float32Array | undefined;
  return {
    height,
    width,
    channels,
    read(top, left, rows, cols) {
      pixels ??= image.dataSync() as Float32Array;
      const out = new Float32Array(rows * cols * channels);
      for (let r = 0; r < rows; r++) {
        const from = ((top + r) * width + left) * channels;
        out.set(pixels.subarray(from, from + cols * channels), r * cols * channels);
      }
      return tf.tensor4d(out, [1, rows, cols, channels]);
    },
  };
}

/** Progress callback: which pass, tile index, tile count. */
export type TileProgress = (pass: 'forward' | 'backward', index: number, count: number) => void;

function ownedRegion(t: Tile): {
  begin: [number, number, number, number];
  size: [number, number, number, number];
} {
  return {
    begin: [0, t.row.owned.lo - t.row.outStart, t.col.owned.lo - t.col.outStart, 0],
    size: [1, t.row.owned.hi - t.row.owned.lo + 1, t.col.owned.hi - t.col.owned.lo + 1, -1],
  };
}

/**
 * Streamed forward: runs the body tile by tile without a gradient tape and stitches each tile's
 * owned output block into the full feature map F [1, H/S, W/S, C].
 */
export async function streamForward(
  body: Body,
  params: Params,
  source: TileSource,
  grid: TileGrid,
  progress?: TileProgress,
): Promise<tf.Tensor4D> {
  const rows: tf.Tensor4D[] = [];
  let row: tf.Tensor4D[] = [];
  try {
    for (const [index, t] of grid.tiles.entries()) {
      const x = await source.read(t.row.start, t.col.start, t.row.length, t.col.length);
      let block: tf.Tensor4D;
      try {
        block = tf.tidy(() => {
          const { begin, size } = ownedRegion(t);
          return tf.slice(runBody(body, params, x), begin, size);
        });
      } finally {
        x.dispose();
      }
      row.push(block);
      progress?.('forward', index, grid.tiles.length);
      if (row.length === grid.cols.tiles.length) {
        rows.push(row.length === 1 ? (row[0] as tf.Tensor4D) : tf.concat(row, 2));
        if (row.length > 1) for (const b of row) b.dispose();
        row = [];
      }
    }
    const out = rows.length === 1 ? (rows[0] as tf.Tensor4D) : tf.concat(rows, 1);
    if (rows.length > 1) for (const r of rows) r.dispose();
    return out;
  } catch (e) {
    // A tile that fails to read (a corrupt TIFF tile) or a stop request from `progress`: the loop
    // goes on with the next image, so the blocks stitched so far must not outlive this one.
    for (const b of [...row, ...rows]) b.dispose();
    throw e;
  }
}

export interface BackwardResult {
  /** dL/dθ for every body parameter, summed over tiles. */
  readonly grads: Map<string, tf.Tensor>;
  /** dL/dimage [H, W, C] when asked for (saliency), scatter-added over tiles on the host. */
  readonly inputGrad?: Float32Array;
}

/**
 * Output-partition backward: for each tile, recompute the body with the tape on and feed back
 * dL/dF restricted to the block the tile owns (zeros elsewhere). Backprop is linear in the
 * upstream gradient and the owned blocks partition F, so the sums are the full-image gradients.
 */
export async function streamBackward(
  body: Body,
  params: Params,
  source: TileSource,
  grid: TileGrid,
  dF: tf.Tensor4D,
  options: { inputGrad?: boolean; progress?: TileProgress } = {},
): Promise<BackwardResult> {
  const names = [...parameterShapes(body).keys()];
  const tensors = names.map((n) => params.get(n) as tf.Tensor);
  const sums: tf.Tensor[] = tensors.map((p) => tf.zerosLike(p));
  const C = source.channels;
  const inputGrad = options.inputGrad ? new Float32Array(source.height * source.width * C) : undefined;
  // A body without parameters (pools and activations only) has nothing to learn; without a saliency
  // map there is then no backward pass to run.
  if (names.length === 0 && !inputGrad) return { grads: new Map() };
  try {
    for (const [index, t] of grid.tiles.entries()) {
      const x = await source.read(t.row.start, t.col.start, t.row.length, t.col.length);
      let grads: tf.Tensor[];
      try {
        grads = tf.tidy(() => {
          const { begin, size } = ownedRegion(t);
          const gBegin = [0, t.row.owned.lo, t.col.owned.lo, 0];
          const owned = tf.slice(dF, gBegin, size);
          const dy = tf.pad(owned, [
            [0, 0],
            [begin[1], t.row.outLength - begin[1] - (size[1] as number)],
            [begin[2], t.col.outLength - begin[2] - (size[2] as number)],
            [0, 0],
          ]);
          const f = (xt: tf.Tensor, ...ps: tf.Tensor[]): tf.Tensor =>
            runBody(body, new Map(names.map((n, i) => [n, ps[i] as tf.Tensor])), xt as tf.Tensor4D);
          if (inputGrad) return tf.grads(f)([x, ...tensors], dy);
          return tf.grads((...ps: tf.Tensor[]) => f(x, ...ps))(tensors, dy);
        });
      } finally {
        x.dispose();
      }
      try {
        const paramGrads = inputGrad ? grads.slice(1) : grads;
        paramGrads.forEach((g, i) => {
          const next = tf.add(sums[i] as tf.Tensor, g);
          (sums[i] as tf.Tensor).dispose();
          sums[i] = next;
        });
        if (inputGrad) scatterAdd(inputGrad, source.width, C, t, grads[0]?.dataSync() as Float32Array);
      } finally {
        tf.dispose(grads);
      }
      options.progress?.('backward', index, grid.tiles.length);
    }
  } catch (e) {
    // As in streamForward: the partial sums belong to an image that is being given up.
    for (const s of sums) s.dispose();
    throw e;
  }
  const grads = new Map(names.map((n, i) => [n, sums[i] as tf.Tensor]));
  return inputGrad ? { grads, inputGrad } : { grads };
}

function scatterAdd(target: Float32Array, width: number, C: number, t: Tile, tileGrad: Float32Array): void {
  const rows = t.row.length;
  const cols = t.col.length;
  for (let r = 0; r < rows; r++) {
    const dst = ((t.row.start + r) * width + t.col.start) * C;
    const src = r * cols * C;
    for (let i = 0; i < cols * C; i++)
      target[dst + i] = (target[dst + i] as number) + (tileGrad[src + i] as number);
  }
}
