// Attention maps of the attention-MIL head (head.pooling: attention): the softmax weight of each
// position of the head's input (the stitched feature map, or the trunk's output) drawn over a
// downsampled copy of the image, as saliency.ts draws gradients. Written beside the saliency maps.

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
 * The attention weights at `height` × `width` picture pixels, scaled to [0, 1] by the largest
 * weight (so the most attended position is full strength whatever the number of positions).
 * Each picture pixel takes the position whose share of the image it falls in (nearest; a position
 * of a stride-S map covers S × S image pixels).
 */
export function attentionHeatmap(map: AttentionMap, height: number, width: number): Float32Array {
  let max = 0;
  for (const w of map.weights) if (w > max) max = w;
  const out = new Float32Array(height * width);
  for (let y = 0; y < height; y++) {
    const row = Math.min(map.height - 1, Math.floor((y * map.height) / height)) * map.width;
    for (let x = 0; x < width; x++) {
      const col = Math.min(map.width - 1, Math.floor((x * map.width) / width));
      out[y * width + x] = max > 0 ? (map.weights[row + col] as number) / max : 0;
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
