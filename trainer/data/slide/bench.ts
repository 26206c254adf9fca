// `tilestream bench slides`: how fast OpenSlide feeds the trainer. Opens a slide (a synthetic Aperio
// .svs, JPEG q90 like a scanner's, unless --file names a real one), times the thumbnail and tissue
// detection, then reads image-sized grids of training tiles at several resolutions through the same
// ImageSource the trainer uses, and reports megapixels per second of tiles delivered. The training
// step's own rate is `tilestream bench throughput`; the README sets the two side by side.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BackendChoice, initBackend } from '../../backend/select.ts';
import { type Architecture, builtinNetwork } from '../../streaming/bodies.ts';
import { linearLoss } from '../../streaming/compare.ts';
import type { TileSource } from '../../streaming/executor.ts';
import { tileGrid } from '../../streaming/geometry.ts';
import { initParams, type Network, streamedStep } from '../../streaming/network.ts';
import { openImage } from '../image.ts';
import { readAhead } from '../read-ahead.ts';
import { writeAperioSvs } from './slide-writer.ts';
import { generateSyntheticSlide } from './synthetic-slide.ts';

export interface SlideBenchOptions {
  /** A slide to read; else a synthetic side × side .svs at 0.25 µm/px is written to a temporary folder. */
  file?: string;
  side: number;
  /** Training image size (pixels per side) at every resolution. */
  imageSize: number;
  tile: number;
  micronsPerPixel: readonly number[];
  /** Also time training steps that read the slide, at the first resolution, with and without read-ahead. */
  train?: { backend: BackendChoice; architecture: Architecture; width?: number; rounds: number };
  log?: (line: string) => void;
}

/** Seconds of one streamed training step on the slide, reading tiles as it goes or ahead. */
export interface SlideStepTiming {
  backend: string;
  architecture: string;
  micronsPerPixel: number;
  /** Fastest round of each. */
  stepSeconds: number;
  stepSecondsReadAhead: number;
  /** Reading the image's tiles alone (twice: forward and backward), from the table above. */
  readSeconds: number;
  /** Image megapixels a step consumes per second. */
  megapixelsPerSecond: number;
}

export interface SlideBenchRow {
  micronsPerPixel: number;
  level: number;
  scale: number;
  /** First open of the slide at this resolution: thumbnail, tissue mask and placement. */
  openMs: number;
  tiles: number;
  /** Tile pixels delivered per second (output pixels, after resampling). */
  megapixelsPerSecond: number;
  msPerTile: number;
}

export interface SlideBenchReport {
  file: string;
  synthetic: boolean;
  writeSeconds?: number;
  imageSize: number;
  tile: number;
  rows: SlideBenchRow[];
  step?: SlideStepTiming;
  maxRssMiB: number;
}

export async function benchSlides(o: SlideBenchOptions): Promise<SlideBenchReport> {
  const log = o.log ?? (() => {});
  let dir: string | undefined;
  let file = o.file;
  let writeSeconds: number | undefined;
  try {
    if (file === undefined) {
      dir = await mkdtemp(join(tmpdir(), 'tilestream-bench-slides-'));
      file = join(dir, 'bench.svs');
      const m = Math.round(o.side / 10);
      log(`writing a synthetic ${o.side}² Aperio slide (JPEG q90, 0.25 µm/px)`);
      const t0 = performance.now();
      const slide = generateSyntheticSlide(
        o.side,
        o.side,
        { x0: m, y0: m, x1: o.side - m, y1: o.side - m },
        1,
        true,
      );
      await writeAperioSvs(file, slide, 0.25, { compression: 'jpeg' });
      writeSeconds = (performance.now() - t0) / 1000;
    }
    const rows: SlideBenchRow[] = [];
    for (const mpp of o.micronsPerPixel) {
      const t0 = performance.now();
      const img = await openImage(file, {
        height: o.imageSize,
        width: o.imageSize,
        channels: 3,
        slide: { micronsPerPixel: mpp, level: 0 },
      });
      const openMs = performance.now() - t0;
      const d = img.describe().slide;
      let tiles = 0;
      const t1 = performance.now();
      for (let top = 0; top < img.height; top += o.tile) {
        for (let left = 0; left < img.width; left += o.tile) {
          await img.readFloat32(
            top,
            left,
            Math.min(o.tile, img.height - top),
            Math.min(o.tile, img.width - left),
          );
          tiles++;
        }
      }
      const seconds = (performance.now() - t1) / 1000;
      img.close();
      const row: SlideBenchRow = {
        micronsPerPixel: mpp,
        level: d?.level ?? 0,
        scale: d?.scaleX ?? 1,
        openMs,
        tiles,
        megapixelsPerSecond: (img.height * img.width) / 1e6 / seconds,
        msPerTile: (seconds * 1000) / tiles,
      };
      log(`${mpp} µm/px: level ${row.level}, ${row.megapixelsPerSecond.toFixed(1)} Mpx/s`);
      rows.push(row);
    }
    let step: SlideStepTiming | undefined;
    const first = rows[0];
    if (o.train && first !== undefined) step = await timeSteps(file, o, first, log);
    const report: SlideBenchReport = {
      file,
      synthetic: o.file === undefined,
      imageSize: o.imageSize,
      tile: o.tile,
      rows,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    };
    if (writeSeconds !== undefined) report.writeSeconds = writeSeconds;
    if (step !== undefined) report.step = step;
    return report;
  } finally {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }
}

async function timeSteps(
  file: string,
  o: SlideBenchOptions,
  row: SlideBenchRow,
  log: (line: string) => void,
): Promise<SlideStepTiming> {
  const t = o.train as NonNullable<SlideBenchOptions['train']>;
  const info = await initBackend(t.backend);
  const net: Network = {
    ...builtinNetwork(t.architecture, { inputChannels: 3, ...(t.width !== undefined && { width: t.width }) }),
    pooling: 'max',
    outputs: 2,
  };
  const img = await openImage(file, {
    height: o.imageSize,
    width: o.imageSize,
    channels: 3,
    slide: { micronsPerPixel: row.micronsPerPixel, level: 0 },
  });
  const grid = tileGrid(net.body, [o.imageSize, o.imageSize], [o.tile, o.tile]);
  const params = initParams(net, 1);
  const loss = linearLoss(2, 1);
  const once = async (ahead: boolean): Promise<number> => {
    const source: TileSource & { settle?: () => Promise<void> } = ahead
      ? readAhead(img, grid, { maxBytes: 64 * 2 ** 20 })
      : img;
    const t0 = performance.now();
    const r = await streamedStep(net, params, source, grid, loss);
    const seconds = (performance.now() - t0) / 1000;
    await source.settle?.();
    for (const g of r.grads.values()) g.dispose();
    return seconds;
  };
  try {
    await once(false); // warm-up: kernels compiled, OpenSlide's cache filled as in a later epoch
    let plain = Number.POSITIVE_INFINITY;
    let ahead = Number.POSITIVE_INFINITY;
    for (let i = 0; i < t.rounds; i++) {
      plain = Math.min(plain, await once(false));
      ahead = Math.min(ahead, await once(true));
      log(
        `${info.name} ${t.architecture} step: ${plain.toFixed(2)} s reading as it goes, ${ahead.toFixed(2)} s reading ahead`,
      );
    }
    return {
      backend: info.name,
      architecture: t.architecture,
      micronsPerPixel: row.micronsPerPixel,
      stepSeconds: plain,
      stepSecondsReadAhead: ahead,
      readSeconds: (2 * (o.imageSize * o.imageSize)) / 1e6 / row.megapixelsPerSecond,
      megapixelsPerSecond: (o.imageSize * o.imageSize) / 1e6 / ahead,
    };
  } finally {
    img.close();
    for (const p of params.values()) p.dispose();
  }
}
