// Saliency maps: the gradient of the positive-class score with respect to every input pixel,
// streamed like training (input gradients scatter-added over tiles), drawn as a heatmap over a
// downsampled copy of the image — the picture pathologists ask for.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import type { Dataset } from '../data/dataset.ts';
import { ImageError } from '../data/image-error.ts';
import type { TileGrid } from '../streaming/geometry.ts';
import { type Network, type NetworkParams, streamedStep } from '../streaming/network.ts';

/** Longest side of the written picture. */
const MAX_SIDE = 1024;

/**
 * Reduces |∂score/∂x| summed over channels to `factor`×`factor` blocks (the block maximum, so a
 * lesion of a few pixels stays visible) and scales it to [0, 1] (see below).
 */
export function heatmap(
  grad: Float32Array,
  height: number,
  width: number,
  channels: number,
  factor: number,
): {
  values: Float32Array;
  height: number;
  width: number;
} {
  const h = Math.ceil(height / factor);
  const w = Math.ceil(width / factor);
  const values = new Float32Array(h * w);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / factor) * w;
    for (let x = 0; x < width; x++) {
      let s = 0;
      const o = (y * width + x) * channels;
      for (let c = 0; c < channels; c++) s += Math.abs(grad[o + c] as number);
      const i = row + Math.floor(x / factor);
      if (s > (values[i] as number)) values[i] = s;
    }
  }
  // A high percentile keeps one extreme pixel from washing out the rest; the floor at a quarter of
  // the maximum keeps a small lesion from lifting the whole background to full strength.
  const sorted = Float32Array.from(values).sort();
  const max = (sorted.at(-1) as number) || 1;
  const scale = Math.max(sorted[Math.floor(0.995 * (sorted.length - 1))] as number, max / 4);
  for (let i = 0; i < values.length; i++) values[i] = Math.min((values[i] as number) / scale, 1);
  return { values, height: h, width: w };
}

/** A perceptually ordered blue→yellow→red colour for t in [0, 1]. */
export function colour(t: number): [number, number, number] {
  const stops: [number, number, number, number][] = [
    [0, 0, 0, 130],
    [0.35, 0, 150, 255],
    [0.65, 255, 230, 0],
    [1, 220, 0, 0],
  ];
  for (let i = 1; i < stops.length; i++) {
    const [t1, r1, g1, b1] = stops[i] as [number, number, number, number];
    const [t0, r0, g0, b0] = stops[i - 1] as [number, number, number, number];
    if (t <= t1) {
      const u = (t - t0) / (t1 - t0);
      return [r0 + u * (r1 - r0), g0 + u * (g1 - g0), b0 + u * (b1 - b0)].map(Math.round) as [
        number,
        number,
        number,
      ];
    }
  }
  return [220, 0, 0];
}

/** Writes `<outDir>/<n>.png` for each sample: the image in grey with the heatmap blended by its strength. */
export async function writeSaliencyMaps(
  net: Network,
  params: NetworkParams,
  data: Dataset,
  grid: TileGrid,
  outDir: string,
  log: (message: string) => void,
): Promise<string[]> {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  // The score: the positive-class logit (binary) or the margin of class 1 (softmax).
  const score = (logits: tf.Tensor2D): tf.Scalar =>
    (net.outputs === 1 ? tf.sum(logits) : tf.sum(tf.slice(logits, [0, 1], [1, 1]))) as tf.Scalar;
  let n = 0;
  // Epoch 0 of an unshuffled, unaugmented validation set: the images in manifest order.
  for await (const item of data.items(0)) {
    const source = item.image;
    try {
      const step = await streamedStep(net, params, source, grid, score, { inputGrad: true });
      for (const g of step.grads.values()) g.dispose();
      const factor = Math.max(1, Math.ceil(Math.max(source.height, source.width) / MAX_SIDE));
      const map = heatmap(
        step.inputGrad as Float32Array,
        source.height,
        source.width,
        source.channels,
        factor,
      );
      const base = await source.readDownsampled(factor);
      const rgb = Buffer.alloc(map.height * map.width * 3);
      for (let i = 0; i < map.height * map.width; i++) {
        const y = Math.floor(i / map.width);
        const x = i % map.width;
        const bi = (Math.min(y, base.height - 1) * base.width + Math.min(x, base.width - 1)) * base.channels;
        let grey = 0;
        for (let c = 0; c < base.channels; c++) grey += base.data[bi + c] as number;
        grey /= base.channels;
        const t = map.values[i] as number;
        const [r, g, b] = colour(t);
        const a = 0.25 + 0.6 * t; // faint where the gradient is small, strong where it is large
        rgb[3 * i] = Math.round((1 - a) * grey + a * r);
        rgb[3 * i + 1] = Math.round((1 - a) * grey + a * g);
        rgb[3 * i + 2] = Math.round((1 - a) * grey + a * b);
      }
      const name = item.entry.relativePath.replace(/[^\w.-]+/g, '_');
      const file = join(outDir, `${String(n++).padStart(4, '0')}-${name}.png`);
      await sharp(rgb, { raw: { width: map.width, height: map.height, channels: 3 } })
        .png()
        .toFile(file);
      written.push(file);
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      log(`saliency: skipping ${item.entry.relativePath}: ${e.message}`);
    } finally {
      source.close();
    }
  }
  return written;
}
