// A small whole-slide dataset for the end-to-end slide suite: Aperio .svs slides written by libvips
// (slide-writer.ts) and DICOM WSI series converted from such slides by wsidicomizer
// (test/wsidicomizer.ts), 2048² at 0.5 µm/px with tissue at known places, listed in train.csv and
// val.csv; the job that reads them at 1 µm/px; and the check that a run read only thumbnails and
// the tissue crops (slide-reads.ts records the reads).
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { writeAperioSvs } from '../../trainer/data/slide/slide-writer.ts';
import { generateSyntheticSlide } from '../../trainer/data/slide/synthetic-slide.ts';
import type { Box } from '../../trainer/data/slide/tissue.ts';
import { convertToDicom } from '../wsidicomizer.ts';
import type { SlideRead } from './slide-reads.ts';

/** Level 0 of every slide (each level a multiple of 256: OpenSlide wants full DICOM tiles). */
export const SLIDE_SIDE = 2048;
export const SLIDE_MPP = 0.5;
/** What the job asks for: level 1 of these slides exactly, so level 0 is never needed. */
export const JOB_MPP = 1.0;
export const IMAGE_SIZE = 256;

export interface DatasetSlide {
  /** Path as the manifests list it, relative to the dataset root. */
  path: string;
  split: 'train' | 'val';
  label: 0 | 1;
  format: 'svs' | 'dicom';
  /** The tissue's bounding box at level 0. */
  tissue: Box;
}

const PLAN: readonly Omit<DatasetSlide, 'path' | 'tissue'>[] = [
  { split: 'train', label: 1, format: 'svs' },
  { split: 'train', label: 0, format: 'svs' },
  { split: 'train', label: 1, format: 'svs' },
  { split: 'train', label: 0, format: 'dicom' },
  { split: 'val', label: 0, format: 'svs' },
  { split: 'val', label: 1, format: 'dicom' },
];

/**
 * Writes the slides and the two manifests into `dir`. Tissue 400² (200² at 1 µm/px, so it is
 * centred in the 256² image) at a different place on each slide.
 */
export async function writeSlideDataset(dir: string): Promise<DatasetSlide[]> {
  const slides: DatasetSlide[] = [];
  for (const [i, p] of PLAN.entries()) {
    const x0 = 300 + 220 * i;
    const y0 = 1300 - 180 * i;
    const tissue = { x0, y0, x1: x0 + 400, y1: y0 + 400 };
    const pixels = generateSyntheticSlide(SLIDE_SIDE, SLIDE_SIDE, tissue, 20 + i, p.label === 1);
    const folder = join(dir, p.split);
    mkdirSync(folder, { recursive: true });
    const svs = join(folder, `slide-${i}.svs`);
    await writeAperioSvs(svs, pixels, SLIDE_MPP);
    let path = svs;
    if (p.format === 'dicom') {
      // The series goes in its own folder; any instance of it opens the slide. The .svs is only
      // its source, so the manifests do not list it.
      const series = join(folder, `slide-${i}.dicom`);
      convertToDicom(svs, series);
      const first = readdirSync(series)
        .filter((n) => n.endsWith('.dcm'))
        .sort()[0];
      assert.ok(first, `wsidicomizer wrote no .dcm into ${series}`);
      path = join(series, first);
    }
    slides.push({ ...p, path: relative(dir, path), tissue });
  }
  for (const [split, file] of [
    ['train', 'train.csv'],
    ['val', 'val.csv'],
  ] as const) {
    const rows = slides.filter((s) => s.split === split).map((s) => `${s.path},${s.label}`);
    writeFileSync(join(dir, file), `path,label\n${rows.join('\n')}\n`);
  }
  return slides;
}

/** spec.data, spec.model and spec.training of the slide job (volumes and paths are the caller's). */
export function slideJobSpec(root: string) {
  return {
    model: { architecture: 'smallcnn', width: 4, head: { pooling: 'max', classes: 1 } },
    data: {
      root,
      train: 'train.csv',
      validation: 'val.csv',
      imageSize: { height: IMAGE_SIZE, width: IMAGE_SIZE },
      channels: 3,
      slides: { micronsPerPixel: JOB_MPP, tissue: true },
      normalization: { mean: [0.75, 0.6, 0.75], std: [0.2, 0.2, 0.2] },
    },
    training: {
      epochs: 1,
      batchSize: 2,
      loss: 'binary-cross-entropy',
      optimizer: { type: 'adam', learningRate: 0.003 },
      seed: 7,
      backend: 'wasm',
    },
    // Tiles smaller than the image: each slide is read tile by tile, as on a large image.
    streaming: { tileSize: 128 },
  };
}

/** The per-slide report a run saves into <checkpoint.path>/tissue/. */
interface TissueFacts {
  slide: string;
  vendor: string;
  level: number;
  scaleX: number;
  tissue: string;
  placement: string;
  cropLevel0: Box;
}

/**
 * Checks one run's tissue reports (one per slide: pictures and facts) and its OpenSlide reads:
 * every slide opened, tissue found where it was painted and the crop centred, and nothing read at
 * level 0 or outside the crop except the thumbnail — so no slide was decoded whole. `root` is the
 * dataset root as the trainer saw it (the reads and reports name slides by that path).
 */
export function checkSlideRun(
  slides: readonly DatasetSlide[],
  root: string,
  tissueDir: string,
  reads: readonly SlideRead[],
): string {
  const files = readdirSync(tissueDir);
  const facts = files
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(tissueDir, f), 'utf8')) as TissueFacts);
  assert.equal(facts.length, slides.length, `one report per slide: ${files.join(', ')}`);
  for (const s of slides) {
    const where = join(root, s.path);
    const f = facts.find((x) => x.slide === where);
    assert.ok(f, `no tissue report for ${where}: ${facts.map((x) => x.slide).join(', ')}`);
    const stem = f.slide.split('/').at(-1) as string;
    for (const ext of ['tissue.png', 'mask.png'])
      assert.ok(
        files.some((n) => n.startsWith(`${stem}-`) && n.endsWith(`.${ext}`)),
        `${s.path}: no .${ext}`,
      );
    assert.equal(f.vendor, s.format === 'svs' ? 'aperio' : 'dicom', s.path);
    assert.deepEqual([f.level, f.scaleX, f.tissue, f.placement], [1, 1, 'found', 'centred'], s.path);
    // The crop is the tissue found on a 512² thumbnail (4 level-0 px per thumbnail px).
    for (const k of ['x0', 'y0', 'x1', 'y1'] as const)
      assert.ok(
        Math.abs(f.cropLevel0[k] - s.tissue[k]) <= 16,
        `${s.path}: crop ${JSON.stringify(f.cropLevel0)}`,
      );

    const mine = reads.filter((r) => r.path === where);
    assert.ok(mine.length > 0, `${s.path}: never read`);
    const thumbnailLevel = 2; // the coarsest level with a side of at least 512 px
    for (const r of mine) {
      const at = `${s.path}: read ${r.width}×${r.height} at (${r.x0}, ${r.y0}) of level ${r.level}`;
      assert.notEqual(r.level, 0, at);
      if (r.level === thumbnailLevel) continue;
      assert.equal(r.level, 1, at);
      // Level 1 is 2× level 0: the region in level-0 pixels must lie inside the crop.
      const c = f.cropLevel0;
      assert.ok(
        r.x0 >= c.x0 - 1 &&
          r.y0 >= c.y0 - 1 &&
          r.x0 + 2 * r.width <= c.x1 + 2 &&
          r.y0 + 2 * r.height <= c.y1 + 2,
        `${at}: outside the crop ${JSON.stringify(c)}`,
      );
    }
    const thumbnailPx = mine
      .filter((r) => r.level === thumbnailLevel)
      .reduce((n, r) => n + r.width * r.height, 0);
    assert.ok(thumbnailPx <= 512 * 512, `${s.path}: ${thumbnailPx} thumbnail pixels`);
  }
  const tiles = reads.filter((r) => r.level === 1);
  const largest = Math.max(...tiles.map((r) => r.width * r.height));
  return (
    `${reads.length} OpenSlide reads: ${reads.length - tiles.length} for thumbnails at level 2, ` +
    `${tiles.length} at level 1 (largest ${Math.round(largest / 1024)} Ki px of the level's 1024 Ki), none at level 0`
  );
}
