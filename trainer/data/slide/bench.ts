// `tilestream bench slides`: how fast OpenSlide feeds the trainer. Opens a slide (a synthetic Aperio
// .svs, JPEG q90 like a scanner's, unless --file names a real one), times the thumbnail and tissue
// detection, then reads image-sized grids of training tiles at several resolutions through the same
// ImageSource the trainer uses, and reports megapixels per second of tiles delivered. The training
// step's own rate is `tilestream bench throughput`; the README sets the two side by side.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage } from '../image.ts';
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
  log?: (line: string) => void;
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
    const report: SlideBenchReport = {
      file,
      synthetic: o.file === undefined,
      imageSize: o.imageSize,
      tile: o.tile,
      rows,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    };
    if (writeSeconds !== undefined) report.writeSeconds = writeSeconds;
    return report;
  } finally {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }
}
