// Attention maps of the attention-MIL head (head.pooling: attention): the softmax weight of each
// position of the head's input (the stitched feature map, or the trunk's output), as a percentile
// rank drawn over a downsampled copy of the image as saliency.ts draws gradients; beside them.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Dataset } from '../data/dataset.ts';
import { ImageError } from '../data/image-error.ts';
import type { TileGrid } from '../streaming/geometry.ts';
import {
  type AttentionMap,
  type Network,
  type NetworkParams,
  streamedAttention,
} from '../streaming/network.ts';
import { colour } from './saliency.ts';

/** Longest side of the written picture (as the saliency maps). */
const MAX_SIDE = 1024;

/**
 * Percentile rank of each weight in [0, 1] (ties share their mean rank), as CLAM draws its
 * heatmaps: the softmax of an untrained or unsure head is nearly uniform, and dividing by the
 * largest weight would paint every position hot; ranks show where the head looks most either way.
 */
export function percentileRanks(weights: ArrayLike<number>): Float32Array {
  const n = weights.length;
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (a, b) => (weights[a] as number) - (weights[b] as number),
  );
  const out = new Float32Array(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && weights[order[j + 1] as number] === weights[order[i] as number]) j++;
    const rank = n === 1 ? 1 : (i + j) / 2 / (n - 1);
    for (let k = i; k <= j; k++) out[order[k] as number] = rank;
    i = j + 1;
  }
  return out;
}

/**
 * The attention map at `height` × `width` picture pixels, as percentile ranks (percentileRanks).
 * Each picture pixel takes the position whose share of the image it falls in (nearest; a position
 * of a stride-S map covers S × S image pixels).
 */
export function attentionHeatmap(map: AttentionMap, height: number, width: number): Float32Array {
  const ranks = percentileRanks(map.weights);
  const out = new Float32Array(height * width);
  for (let y = 0; y < height; y++) {
    const row = Math.min(map.height - 1, Math.floor((y * map.height) / height)) * map.width;
    for (let x = 0; x < width; x++) {
      const col = Math.min(map.width - 1, Math.floor((x * map.width) / width));
      out[y * width + x] = ranks[row + col] as number;
    }
  }
  return out;
}

/** The picture of `values` ([0, 1], height × width) blended over the grey of `base`. */
function overlay(
  values: Float32Array,
  height: number,
  width: number,
  base: { data: ArrayLike<number>; height: number; width: number; channels: number },
): Buffer {
  const rgb = Buffer.alloc(height * width * 3);
  for (let i = 0; i < height * width; i++) {
    const y = Math.floor(i / width);
    const x = i % width;
    const bi = (Math.min(y, base.height - 1) * base.width + Math.min(x, base.width - 1)) * base.channels;
    let grey = 0;
    for (let c = 0; c < base.channels; c++) grey += base.data[bi + c] as number;
    grey /= base.channels;
    const t = values[i] as number;
    const [r, g, b] = colour(t);
    const a = 0.25 + 0.6 * t;
    rgb[3 * i] = Math.round((1 - a) * grey + a * r);
    rgb[3 * i + 1] = Math.round((1 - a) * grey + a * g);
    rgb[3 * i + 2] = Math.round((1 - a) * grey + a * b);
  }
  return rgb;
}

/**
 * Writes `<outDir>/<n>-<name>.attention.png` for each validation image (the saliency maps'
 * numbering and names): the streamed forward pass, then the head's attention weights.
 */
export async function writeAttentionMaps(
  net: Network,
  params: NetworkParams,
  data: Dataset,
  grid: TileGrid,
  outDir: string,
  log: (message: string) => void,
): Promise<string[]> {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  let n = 0;
  // Epoch 0 of an unshuffled, unaugmented validation set: the images in manifest order.
  for await (const item of data.items(0)) {
    const source = item.image;
    try {
      const map = await streamedAttention(net, params, source, grid);
      const factor = Math.max(1, Math.ceil(Math.max(source.height, source.width) / MAX_SIDE));
      const height = Math.ceil(source.height / factor);
      const width = Math.ceil(source.width / factor);
      const base = await source.readDownsampled(factor);
      const rgb = overlay(attentionHeatmap(map, height, width), height, width, base);
      const name = item.entry.relativePath.replace(/[^\w.-]+/g, '_');
      const file = join(outDir, `${String(n++).padStart(4, '0')}-${name}.attention.png`);
      await sharp(rgb, { raw: { width, height, channels: 3 } })
        .png()
        .toFile(file);
      written.push(file);
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      log(`attention map: skipping ${item.entry.relativePath}: ${e.message}`);
    } finally {
      source.close();
    }
  }
  return written;
}
