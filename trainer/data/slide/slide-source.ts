// Whole slides as tile sources: any format OpenSlide 4 reads, opened with openslide.ts, read per
// tile at the chosen level (resolution.ts), resampled by area (resample.ts), cropped to the tissue
// and placed into the image size (slide-geometry.ts). No read ever covers more than one tile's
// source span, plus one thumbnail of a low-resolution level per slide for the tissue mask; the
// geometry of each slide is remembered per process (keyed by file size and mtime), so later epochs
// skip the thumbnail.
import { createHash } from 'node:crypto';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Rect } from '../augment.ts';
import { ImageError } from '../image-error.ts';
import { makeSource } from '../image-source.ts';
import type {
  ImageOptions,
  ImageSource,
  PixelStore,
  SlideDescription,
  SlideOptions,
} from '../image-types.ts';
import { boxDownsample, convertChannels } from '../pixels.ts';
import { conversionOrThrow } from '../sharp-input.ts';
import { compositeArgb, OpenslideError, Slide, type SlideLevel } from './openslide.ts';
import { areaResample, sourceSpan } from './resample.ts';
import { parseMpp, ResolutionError } from './resolution.ts';
import { planSlide, type ScaledMask, type SlideGeometry } from './slide-geometry.ts';
import {
  detectTissue,
  THUMBNAIL_BAND_PIXELS,
  THUMBNAIL_MAX_SIDE,
  THUMBNAIL_MIN_SIDE,
  type Thumbnail,
  type TissueMask,
} from './tissue.ts';
import { cropLevel0, writeTissueImages } from './tissue-report.ts';

export type Rgb = readonly [number, number, number];

/** openslide.background-color (RRGGBB), else white. */
export function backgroundOf(slide: Slide): Rgb {
  const hex = slide.property('openslide.background-color');
  if (hex !== undefined && /^[0-9a-f]{6}$/i.test(hex)) {
    const v = Number.parseInt(hex, 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }
  return [255, 255, 255];
}

/** Composited RGB pixels of a rectangle of `level` given in that level's pixel coordinates. */
export async function readLevelRgb(
  slide: Slide,
  level: number,
  x: number,
  y: number,
  width: number,
  height: number,
  background: Rgb,
): Promise<Uint8Array> {
  const d = (slide.levels[level] as SlideLevel).downsample;
  // read_region takes the top-left in level-0 coordinates; a level pixel starts at its index × d.
  const argb = await slide.readArgb(Math.round(x * d), Math.round(y * d), level, width, height);
  return compositeArgb(argb, background);
}

/** A thumbnail of the slide from a low-resolution level, read in bands (never the whole level 0). */
export async function readThumbnail(slide: Slide, background: Rgb): Promise<Thumbnail> {
  let level = 0;
  slide.levels.forEach((l, i) => {
    if (Math.max(l.width, l.height) >= THUMBNAIL_MIN_SIDE) level = i;
  });
  const l = slide.levels[level] as SlideLevel;
  const f = Math.max(1, Math.ceil(Math.max(l.width, l.height) / THUMBNAIL_MAX_SIDE));
  const width = Math.ceil(l.width / f);
  const height = Math.ceil(l.height / f);
  const rgb = new Uint8Array(width * height * 3);
  const bandBlocks = Math.max(1, Math.floor(THUMBNAIL_BAND_PIXELS / (l.width * f)));
  for (let by = 0; by < height; by += bandBlocks) {
    const top = by * f;
    const rows = Math.min(l.height, (by + bandBlocks) * f) - top;
    const band = await readLevelRgb(slide, level, 0, top, l.width, rows, background);
    rgb.set(boxDownsample(band, rows, l.width, 3, f), by * width * 3);
  }
  return { rgb, width, height, level, downsampleX: l.downsample * f, downsampleY: l.downsample * f };
}

/** The tissue mask of a slide and its scale. */
export async function slideTissue(
  slide: Slide,
  background: Rgb,
): Promise<{ thumbnail: Thumbnail; mask: TissueMask }> {
  const thumbnail = await readThumbnail(slide, background);
  return { thumbnail, mask: detectTissue(thumbnail.rgb, thumbnail.width, thumbnail.height) };
}

const geometryCache = new Map<string, SlideGeometry>();

function imageError(path: string, e: unknown, what: string): ImageError {
  if (e instanceof ImageError) return e;
  if (e instanceof ResolutionError) return new ImageError(path, 'wrong-resolution', e.message, { cause: e });
  if (e instanceof OpenslideError) {
    const truncated = /truncat|premature|end of file|short read|unexpected end|beyond|past the end/i.test(
      e.message,
    );
    const detail = e.unsupported
      ? `${e.message} (OpenSlide reads Aperio .svs/.tif, Hamamatsu .ndpi/.vms, 3DHISTECH .mrxs with its ` +
        'companion folder, Leica .scn, Philips TIFF, Ventana .bif, Sakura .svslide, DICOM WSI and tiled pyramidal TIFF)'
      : `${what}: ${e.message}`;
    return new ImageError(path, truncated ? 'truncated' : 'unreadable', detail, { cause: e });
  }
  throw e;
}

/** Opens a slide as an ImageSource of options.height × options.width. */
export async function openSlideImage(
  path: string,
  options: ImageOptions & { slide: SlideOptions },
): Promise<ImageSource> {
  let key: string;
  try {
    const st = await stat(path);
    key = `${path}\0${st.size}\0${st.mtimeMs}\0${options.height}x${options.width}\0${JSON.stringify(options.slide)}`;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(
      path,
      code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unreadable',
      (e as Error).message,
      {
        cause: e,
      },
    );
  }
  let slide: Slide;
  try {
    slide = Slide.open(path);
  } catch (e) {
    throw imageError(path, e, 'opening');
  }
  try {
    const background = backgroundOf(slide);
    const mpp = parseMpp(slide.property('openslide.mpp-x'), slide.property('openslide.mpp-y'));
    let geometry = geometryCache.get(key);
    if (geometry === undefined) {
      let scaled: ScaledMask | undefined;
      let tissue: Awaited<ReturnType<typeof slideTissue>> | undefined;
      if (options.slide.tissue !== false) {
        tissue = await slideTissue(slide, background);
        const { thumbnail, mask } = tissue;
        scaled = { mask, downsampleX: thumbnail.downsampleX, downsampleY: thumbnail.downsampleY };
      }
      geometry = planSlide(slide.levels, mpp, options.slide, scaled, options.height, options.width);
      geometryCache.set(key, geometry);
      if (options.slide.reportDir !== undefined) {
        await writeSlideReport(options.slide.reportDir, slide, geometry, tissue);
      }
    }
    const g = geometry;
    const conversion = conversionOrThrow(path, 3, options.channels);
    const store: PixelStore = {
      async readRect(r: Rect): Promise<Uint8Array> {
        const rgb = await readPlaced(slide, g, r, background).catch((e: unknown) => {
          throw imageError(path, e, `reading ${r.rows}×${r.cols} at (${r.top}, ${r.left})`);
        });
        return convertChannels(rgb, r.rows * r.cols, 3, options.channels);
      },
      close() {
        slide.close();
      },
    };
    const description: SlideDescription = {
      vendor: slide.vendor,
      levels: slide.levels.map((l) => ({ ...l })),
      level: g.resolution.level,
      scaleX: g.resolution.scaleX,
      scaleY: g.resolution.scaleY,
      placement: g.placement,
      tissue: g.tissue,
      tissueBox: g.tissueBox,
      offsetX: g.offsetX,
      offsetY: g.offsetY,
      background: [...background],
    };
    if (mpp !== undefined) description.slideMicronsPerPixel = mpp;
    if (g.resolution.micronsPerPixelX !== undefined)
      description.micronsPerPixel = g.resolution.micronsPerPixelX;
    return makeSource(path, store, options, {
      format: 'openslide',
      access: 'regions',
      levels: slide.levels.map((l, i) => ({ page: i, width: l.width, height: l.height })),
      sourceChannels: 3,
      conversion,
      sourceHeight: options.height,
      sourceWidth: options.width,
      slide: description,
    });
  } catch (e) {
    slide.close();
    throw imageError(path, e, 'opening');
  }
}

/**
 * RGB pixels of output rectangle `r`: the part inside the visible box is read at the chosen level
 * (just its source span) and area-resampled; the rest is background.
 */
export async function readPlaced(
  slide: Slide,
  g: SlideGeometry,
  r: Rect,
  background: Rgb,
): Promise<Uint8Array> {
  const out = new Uint8Array(r.rows * r.cols * 3);
  for (let p = 0; p < r.rows * r.cols; p++) out.set(background, p * 3);
  // The rectangle at the output resolution, clipped to the visible box.
  const x0 = Math.max(g.visible.x0, g.offsetX + r.left);
  const y0 = Math.max(g.visible.y0, g.offsetY + r.top);
  const x1 = Math.min(g.visible.x1, g.offsetX + r.left + r.cols);
  const y1 = Math.min(g.visible.y1, g.offsetY + r.top + r.rows);
  if (x1 <= x0 || y1 <= y0) return out;
  const { level, scaleX, scaleY } = g.resolution;
  const [sx0, sx1] = sourceSpan(x0, x1, scaleX);
  const [sy0, sy1] = sourceSpan(y0, y1, scaleY);
  const src = await readLevelRgb(slide, level, sx0, sy0, sx1 - sx0, sy1 - sy0, background);
  const px = areaResample(src, sy1 - sy0, sx1 - sx0, 3, y0, y1, x0, x1, scaleY, scaleX);
  const w = x1 - x0;
  for (let i = 0; i < y1 - y0; i++) {
    const at = ((y0 - g.offsetY - r.top + i) * r.cols + (x0 - g.offsetX - r.left)) * 3;
    out.set(px.subarray(i * w * 3, (i + 1) * w * 3), at);
  }
  return out;
}

/**
 * Saves what was chosen for one slide (tissue pictures and the geometry as JSON) into `dir`, named
 * after the slide and a hash of its path. A diagnostic: failing to write it warns, never fails
 * training.
 */
async function writeSlideReport(
  dir: string,
  slide: Slide,
  g: SlideGeometry,
  tissue: Awaited<ReturnType<typeof slideTissue>> | undefined,
): Promise<void> {
  const base = join(
    dir,
    `${basename(slide.path)}-${createHash('sha256').update(slide.path).digest('hex').slice(0, 8)}`,
  );
  const crop = cropLevel0(slide.levels, g);
  try {
    await mkdir(dir, { recursive: true });
    const facts = {
      slide: slide.path,
      vendor: slide.vendor,
      level: g.resolution.level,
      scaleX: g.resolution.scaleX,
      scaleY: g.resolution.scaleY,
      micronsPerPixel: g.resolution.micronsPerPixelX,
      tissue: g.tissue,
      placement: g.placement,
      cropLevel0: crop,
    };
    await writeFile(`${base}.json`, `${JSON.stringify(facts, null, 2)}\n`);
    if (tissue)
      await writeTissueImages(tissue.thumbnail, tissue.mask, crop, `${base}.tissue.png`, `${base}.mask.png`);
  } catch (e) {
    process.emitWarning(
      `could not save the tissue report of ${slide.path} in ${dir}: ${(e as Error).message}`,
    );
  }
}
