// The synthetic lesion dataset on disk (`tilestream synth`, and `spec.data.synthetic` of a job):
// images (PNG, or tiled pyramidal TIFF with lossless deflate: JPEG would smear the 2-px
// checkerboards, or an Aperio .svs whole slide holding the image as stained tissue on glass, read
// with spec.data.slides at 0.5 µm/px: slide/synthetic-slide.ts, or the same slide as a DICOM WSI
// series converted by wsidicomizer: slide/dicom-writer.ts), `train.csv` and `val.csv` manifests with paths relative to the folder, and a
// `dataset.json` that records the parameters. Optionally an F× box-downsampled copy (`down8/`, with
// its own manifests) for the resolution comparison, and that copy upsampled back to full size
// (`down8-up/`), so that the same network sees the same number of pixels with less information.
//
// Labels alternate (even indices negative, odd positive); every image has its own seed derived from
// the dataset seed, the split and its index, so generation can resume after an interruption and the
// training and validation sets use unrelated random streams.

import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { generateLesionImage, LESION_TASK, MIN_SYNTHETIC_SIDE } from './lesions.ts';
import { boxDownsample } from './pixels.ts';
import { deriveSeed } from './random.ts';
import {
  convertSvsToDicom,
  DICOM_TILE_SIZE,
  findWsidicomizer,
  WSIDICOMIZER_MISSING,
} from './slide/dicom-writer.ts';
import { writeAperioSvs } from './slide/slide-writer.ts';
import {
  dicomGlassSide,
  SYNTHETIC_SLIDE_MPP,
  SYNTHETIC_SLIDE_NORMALIZATION,
  slideOfImage,
} from './slide/synthetic-slide.ts';

export type SyntheticFormat = 'png' | 'tiff' | 'svs' | 'dicom';
export const SYNTHETIC_FORMATS: readonly SyntheticFormat[] = ['png', 'tiff', 'svs', 'dicom'];

/** Formats written as whole slides (3-channel stained tissue, read with spec.data.slides). */
const isSlideFormat = (f: SyntheticFormat): boolean => f === 'svs' || f === 'dicom';

export interface SyntheticParams {
  height: number;
  width: number;
  /** Training images (half positive). */
  count: number;
  /** Validation images; default 200 (≥ 200 keeps the AUC's chance-level noise near ±0.03). */
  validationCount?: number;
  /** Default 1. */
  seed?: number;
  /** Default 'png' (as `spec.data.synthetic.format`). */
  format?: SyntheticFormat;
  /** Also write an F× box-downsampled copy to `down{F}/`. */
  downsample?: number;
  /** With `downsample`, also write the copy upsampled back (nearest) to full size in `down{F}-up/`. */
  downUp?: boolean;
}

/**
 * The parameters that define the images, with defaults filled in, as recorded in dataset.json.
 * The derived copies are not among them: they can be added to a dataset later.
 */
export interface ResolvedSyntheticParams {
  height: number;
  width: number;
  count: number;
  validationCount: number;
  seed: number;
  format: SyntheticFormat;
}

/** One folder of images with its manifests: the full-resolution set or a derived copy. */
export interface SyntheticVariant {
  /** Folder relative to the dataset folder ('.' for full resolution). */
  dir: string;
  kind: 'full' | 'down' | 'down-up';
  factor: number;
  height: number;
  width: number;
}

/** The content of dataset.json (in the dataset folder and, for a copy, in its folder). */
export interface SyntheticDatasetInfo {
  kind: 'tilestream-synthetic-lesions';
  version: 1;
  params: ResolvedSyntheticParams;
  /** This folder's images. */
  variant: SyntheticVariant;
  /** 1 (grey images); 3 for svs (stained slides). */
  channels: 1 | 3;
  /** Use as spec.data.normalization: network input (x/255 − 0.5)/0.05 (per stain channel for svs). */
  normalization: { mean: number[]; std: number[] };
  manifests: { train: string; validation: string };
  counts: { train: { total: number; positive: number }; validation: { total: number; positive: number } };
  /** Every variant of the dataset (in the dataset folder's dataset.json, all that were written). */
  variants: SyntheticVariant[];
  generator: typeof LESION_TASK;
  /** False while generation runs; an interrupted run resumes. */
  complete: boolean;
}

export interface SyntheticProgress {
  split: 'train' | 'validation';
  done: number;
  total: number;
  seconds: number;
}

export interface EnsureOptions {
  onProgress?: (p: SyntheticProgress) => void;
  /** Regenerate every image, even over a complete dataset with other parameters. */
  force?: boolean;
}

export interface EnsureResult {
  dir: string;
  /** Images generated now (0 when the dataset was complete). */
  generated: number;
  /** Images found complete and kept. */
  kept: number;
  seconds: number;
  info: SyntheticDatasetInfo;
}

export const DATASET_JSON = 'dataset.json';
const MANIFESTS = { train: 'train.csv', validation: 'val.csv' } as const;
const SPLIT_DIRS = { train: 'train', validation: 'val' } as const;
const SPLITS = ['train', 'validation'] as const;
const TIFF_TILE = 256;

/** Fills defaults and checks the parameters (including the copies); errors name the parameter. */
export function resolveSyntheticParams(p: SyntheticParams): ResolvedSyntheticParams {
  const r: ResolvedSyntheticParams = {
    height: p.height,
    width: p.width,
    count: p.count,
    validationCount: p.validationCount ?? 200,
    seed: p.seed ?? 1,
    format: p.format ?? 'png',
  };
  const int = (name: string, v: number, min: number): void => {
    if (!Number.isSafeInteger(v) || v < min) {
      throw new RangeError(`synthetic ${name} must be an integer ≥ ${min}, got ${v}`);
    }
  };
  int('height', r.height, MIN_SYNTHETIC_SIDE);
  int('width', r.width, MIN_SYNTHETIC_SIDE);
  int('count', r.count, 1);
  int('validationCount', r.validationCount, 1);
  int('seed', r.seed, 0);
  if (!SYNTHETIC_FORMATS.includes(r.format)) {
    throw new RangeError(
      `synthetic format must be one of ${SYNTHETIC_FORMATS.join(', ')}, got '${r.format}'`,
    );
  }
  if (p.downsample !== undefined) {
    int('downsample', p.downsample, 2);
    if (r.height % p.downsample !== 0 || r.width % p.downsample !== 0) {
      throw new RangeError(
        `synthetic downsample ${p.downsample} must divide the image size ${r.height}×${r.width} ` +
          '(whole blocks keep the lesions zero-mean)',
      );
    }
  } else if (p.downUp) {
    throw new RangeError('synthetic downUp needs downsample');
  }
  return r;
}

/** The variants a request asks for: full resolution, plus the copies. */
export function syntheticVariants(p: SyntheticParams): SyntheticVariant[] {
  const v: SyntheticVariant[] = [{ dir: '.', kind: 'full', factor: 1, height: p.height, width: p.width }];
  const f = p.downsample;
  if (f !== undefined) {
    v.push({ dir: `down${f}`, kind: 'down', factor: f, height: p.height / f, width: p.width / f });
    if (p.downUp)
      v.push({ dir: `down${f}-up`, kind: 'down-up', factor: f, height: p.height, width: p.width });
  }
  return v;
}

/** Union of variant lists by folder, full resolution first, then by factor. */
function unionVariants(a: readonly SyntheticVariant[], b: readonly SyntheticVariant[]): SyntheticVariant[] {
  const byDir = new Map<string, SyntheticVariant>();
  for (const v of [...a, ...b]) byDir.set(v.dir, v);
  const rank = { full: 0, down: 1, 'down-up': 2 } as const;
  return [...byDir.values()].sort((x, y) => x.factor - y.factor || rank[x.kind] - rank[y.kind]);
}

/** Label of image `index`: alternating, so every set is half positive (one more negative if odd). */
export function syntheticLabel(index: number): 0 | 1 {
  return (index % 2) as 0 | 1;
}

/** Seed of one image: unrelated streams for the two splits and for every index. */
export function syntheticImageSeed(seed: number, split: 'train' | 'validation', index: number): number {
  return deriveSeed(seed, 'synthetic-lesions', split, index);
}

function relativeImagePath(split: 'train' | 'validation', index: number, format: SyntheticFormat): string {
  const name = String(index).padStart(6, '0');
  // A DICOM series is a folder of instances (one per level); any of them opens the slide.
  if (format === 'dicom') return `${SPLIT_DIRS[split]}/${name}.dicom/${DICOM_FIRST_INSTANCE}`;
  return `${SPLIT_DIRS[split]}/${name}.${format}`;
}

const splitCount = (p: ResolvedSyntheticParams, split: 'train' | 'validation'): number =>
  split === 'train' ? p.count : p.validationCount;

/**
 * Generates the dataset into `dir` unless it is already there, and adds requested copies that are
 * missing. A complete dataset with the same parameters and copies is left untouched (the folder may
 * be read-only); an interrupted one keeps its finished images; a complete dataset with other image
 * parameters is an error unless `force`.
 */
export async function ensureSyntheticDataset(
  dir: string,
  params: SyntheticParams,
  options: EnsureOptions = {},
): Promise<EnsureResult> {
  const p = resolveSyntheticParams(params);
  const requested = syntheticVariants(params);
  const start = performance.now();
  const seconds = (): number => (performance.now() - start) / 1000;
  const existing = await readInfo(join(dir, DATASET_JSON));
  // Compare the parameters that decide the images, key by key: a dataset.json written by another
  // version may carry other fields (earlier ones recorded the downsampled copies here).
  const sameParams =
    existing !== undefined &&
    (Object.keys(p) as (keyof ResolvedSyntheticParams)[]).every((k) => existing.params[k] === p[k]);
  if (existing?.complete && !sameParams && !options.force) {
    throw new Error(
      `${dir} already holds a synthetic dataset with other parameters (${describeParams(existing.params)}; ` +
        `asked for ${describeParams(p)}). Use another folder, delete it, or pass --force to overwrite.`,
    );
  }
  // Images of an earlier run are trusted only when that run had the same parameters.
  const keepExisting = sameParams && !options.force;
  const variants = keepExisting ? unionVariants(existing.variants, requested) : requested;
  if (
    existing?.complete &&
    keepExisting &&
    variants.length === existing.variants.length &&
    (await datasetFilesExist(dir, p, variants))
  ) {
    return { dir, generated: 0, kept: p.count + p.validationCount, seconds: seconds(), info: existing };
  }

  const infoFor = (variant: SyntheticVariant, complete: boolean): SyntheticDatasetInfo => ({
    kind: 'tilestream-synthetic-lesions',
    version: 1,
    params: p,
    variant,
    channels: isSlideFormat(p.format) ? 3 : 1,
    normalization: isSlideFormat(p.format)
      ? { mean: [...SYNTHETIC_SLIDE_NORMALIZATION.mean], std: [...SYNTHETIC_SLIDE_NORMALIZATION.std] }
      : { mean: [...LESION_TASK.normalization.mean], std: [...LESION_TASK.normalization.std] },
    manifests: { train: MANIFESTS.train, validation: MANIFESTS.validation },
    counts: {
      train: { total: p.count, positive: Math.floor(p.count / 2) },
      validation: { total: p.validationCount, positive: Math.floor(p.validationCount / 2) },
    },
    variants,
    generator: LESION_TASK,
    complete,
  });
  const full = variants[0] as SyntheticVariant;
  for (const v of variants) {
    for (const split of SPLITS) await mkdir(join(dir, v.dir, SPLIT_DIRS[split]), { recursive: true });
  }
  await writeAtomic(join(dir, DATASET_JSON), `${JSON.stringify(infoFor(full, false), null, 2)}\n`);

  // Found once, before any image: a missing wsidicomizer fails at once, naming the fix.
  const dicomPython = p.format === 'dicom' ? findWsidicomizer() : undefined;
  if (p.format === 'dicom' && dicomPython === undefined)
    throw new Error(`tilestream synth --format dicom: ${WSIDICOMIZER_MISSING}`);
  let generated = 0;
  let kept = 0;
  for (const split of SPLITS) {
    const total = splitCount(p, split);
    const splitStart = performance.now();
    let inflight: Promise<unknown> = Promise.resolve();
    for (let i = 0; i < total; i++) {
      const rel = relativeImagePath(split, i, p.format);
      const missing: SyntheticVariant[] = [];
      for (const v of variants) if (!keepExisting || !(await isFile(join(dir, v.dir, rel)))) missing.push(v);
      if (missing.length === 0) {
        kept++;
      } else {
        // Generation is synchronous JS; the previous image's encoding runs meanwhile on libuv threads.
        const img = generateLesionImage(
          p.height,
          p.width,
          syntheticImageSeed(p.seed, split, i),
          syntheticLabel(i) === 1,
        );
        const outputs = missing.map((v) => ({
          file: join(dir, v.dir, rel),
          ...variantPixels(img.pixels, p, v),
        }));
        await inflight;
        inflight = Promise.all(
          outputs.map((o) =>
            writeGreyImage(
              o.file,
              o.pixels,
              o.height,
              o.width,
              p.format,
              syntheticImageSeed(p.seed, split, i),
              dicomPython,
            ),
          ),
        );
        generated++;
      }
      options.onProgress?.({ split, done: i + 1, total, seconds: (performance.now() - splitStart) / 1000 });
    }
    await inflight;
  }

  for (const v of variants) {
    for (const split of SPLITS) {
      const rows = ['path,label,split'];
      for (let i = 0; i < splitCount(p, split); i++) {
        rows.push(`${relativeImagePath(split, i, p.format)},${syntheticLabel(i)},${split}`);
      }
      await writeAtomic(join(dir, v.dir, MANIFESTS[split]), `${rows.join('\n')}\n`);
    }
    if (v.dir !== '.') {
      await writeAtomic(join(dir, v.dir, DATASET_JSON), `${JSON.stringify(infoFor(v, true), null, 2)}\n`);
    }
  }
  const info = infoFor(full, true);
  // Written last: `complete: true` promises that everything above is on disk.
  await writeAtomic(join(dir, DATASET_JSON), `${JSON.stringify(info, null, 2)}\n`);
  return { dir, generated, kept, seconds: seconds(), info };
}

/** Reads a dataset.json, or undefined when it is absent or not ours. */
export async function readSyntheticInfo(dir: string): Promise<SyntheticDatasetInfo | undefined> {
  return readInfo(join(dir, DATASET_JSON));
}

async function readInfo(file: string): Promise<SyntheticDatasetInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(file, 'utf8')) as SyntheticDatasetInfo;
    return info.kind === 'tilestream-synthetic-lesions' ? info : undefined;
  } catch {
    return undefined;
  }
}

function describeParams(p: ResolvedSyntheticParams): string {
  return `${p.height}×${p.width}, ${p.count} training + ${p.validationCount} validation images, seed ${p.seed}, ${p.format}`;
}

function variantPixels(
  full: Uint8Array,
  p: ResolvedSyntheticParams,
  v: SyntheticVariant,
): { pixels: Uint8Array; height: number; width: number } {
  if (v.kind === 'full') return { pixels: full, height: p.height, width: p.width };
  const down = boxDownsample(full, p.height, p.width, 1, v.factor);
  if (v.kind === 'down') return { pixels: down, height: v.height, width: v.width };
  return {
    pixels: nearestUpsample(down, p.height / v.factor, p.width / v.factor, v.factor),
    height: p.height,
    width: p.width,
  };
}

/** Repeats every pixel of a grey image f × f times. */
export function nearestUpsample(src: Uint8Array, height: number, width: number, f: number): Uint8Array {
  const ow = width * f;
  const out = new Uint8Array(height * f * ow);
  for (let y = 0; y < height; y++) {
    const row = out.subarray(y * f * ow, (y * f + 1) * ow);
    for (let x = 0; x < width; x++) row.fill(src[y * width + x] as number, x * f, (x + 1) * f);
    for (let k = 1; k < f; k++) out.copyWithin((y * f + k) * ow, y * f * ow, (y * f + 1) * ow);
  }
  return out;
}

/**
 * Writes a single-channel image: PNG, or tiled pyramidal TIFF (256² tiles, deflate, lossless), or an
 * Aperio .svs slide with the image as its tissue (`seed` places it; lossless too), or that slide as a
 * DICOM WSI series (lossless JPEG 2000).
 */
export async function writeGreyImage(
  file: string,
  pixels: Uint8Array,
  height: number,
  width: number,
  format: SyntheticFormat,
  seed = 0,
  /** For 'dicom': a python that imports wsidicomizer (findWsidicomizer). */
  dicomPython?: string,
): Promise<void> {
  if (format === 'svs') {
    const slide = slideOfImage({ pixels, height, width, lesions: [] }, seed);
    const tmp = `${file}.tmp-${process.pid}`;
    await writeAperioSvs(tmp, slide, SYNTHETIC_SLIDE_MPP);
    await rename(tmp, file);
    return;
  }
  if (format === 'dicom') {
    if (dicomPython === undefined) throw new Error(`writing ${file}: ${WSIDICOMIZER_MISSING}`);
    await writeDicomSlide(file, { pixels, height, width, lesions: [] }, seed, dicomPython);
    return;
  }
  const input = sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength), {
    raw: { width, height, channels: 1 },
  }).toColourspace('b-w'); // one channel on disk; sharp would otherwise write sRGB
  const encoded =
    format === 'png'
      ? input.png({ compressionLevel: 6 })
      : input.tiff({
          tile: true,
          tileWidth: TIFF_TILE,
          tileHeight: TIFF_TILE,
          pyramid: true,
          compression: 'deflate',
          predictor: 'horizontal',
        });
  await writeAtomic(file, await encoded.toBuffer());
}

/** Name of the series' level-0 instance, which the manifests list. */
const DICOM_FIRST_INSTANCE = '0.dcm';

/**
 * Writes the image's slide as a DICOM WSI series into the folder of `file` (…/NNNNNN.dicom/0.dcm):
 * an .svs on glass of whole DICOM tiles, converted by wsidicomizer, its instances renamed 0.dcm, 1.dcm…
 * from the largest (level 0) down — wsidicomizer names them by UID, and a manifest needs a fixed name.
 */
async function writeDicomSlide(
  file: string,
  texture: Parameters<typeof slideOfImage>[0],
  seed: number,
  python: string,
): Promise<void> {
  const folder = dirname(file);
  const tmp = `${folder}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const glass = dicomGlassSide(texture.height, texture.width, DICOM_TILE_SIZE);
    const svs = join(tmp, 'source.svs');
    await writeAperioSvs(svs, slideOfImage(texture, seed, glass), SYNTHETIC_SLIDE_MPP);
    const series = join(tmp, 'series');
    await convertSvsToDicom(python, svs, series);
    const instances = await Promise.all(
      (await readdir(series))
        .filter((n) => n.endsWith('.dcm'))
        .map(async (n) => ({ n, size: (await stat(join(series, n))).size })),
    );
    instances.sort((a, b) => b.size - a.size);
    for (const [i, { n }] of instances.entries()) await rename(join(series, n), join(series, `${i}.dcm`));
    await rm(folder, { recursive: true, force: true });
    await rename(series, folder);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

async function datasetFilesExist(
  dir: string,
  p: ResolvedSyntheticParams,
  variants: SyntheticVariant[],
): Promise<boolean> {
  for (const v of variants) {
    const files = [join(dir, v.dir, MANIFESTS.train), join(dir, v.dir, MANIFESTS.validation)];
    for (const split of SPLITS) {
      for (let i = 0; i < splitCount(p, split); i++)
        files.push(join(dir, v.dir, relativeImagePath(split, i, p.format)));
    }
    for (const f of files) if (!(await isFile(f))) return false;
  }
  return true;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
