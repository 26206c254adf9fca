// Image files as tile sources for the streaming engine.
//
// - TIFF (tiles, pyramids, strips of ≤ 256 rows): every read asks libvips for just the source
//   rectangle it needs from one page, `sharp(file, {page}).extract(rect)`. A tiled file is never
//   decoded whole, and memory stays flat in the image size (tfjs-notes.md §5a). For a pyramid the
//   page whose size equals the requested height × width is used. A page stored in taller strips
//   (one strip for the whole image is common) would be decoded whole by every read, so it is
//   decoded once at open like PNG.
// - PNG and JPEG decode sequentially (a region near the bottom costs a decode of everything above
//   it), so they are decoded once at open into a uint8 buffer and sliced.
// Pixels stay uint8 (HWC) until `read` normalises the tile to float32. Flips and rotations are
// coordinate transforms of the request and the jitter is pointwise (see augment.ts), so every
// region equals the same window of the augmented whole image.

import { type FileHandle, open, stat } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import type { TileSource } from '../streaming/executor.ts';
import {
  type Augmentation,
  augmentedSize,
  type GridMap,
  gridMap,
  type Rect,
  remapRegion,
  sourceRect,
} from './augment.ts';
import { type ImageFormat, looksTruncated, sniffFormat } from './file-format.ts';
import { ImageError } from './image-error.ts';
import {
  boxDownsample,
  type ChannelConversion,
  channelConversion,
  convertChannels,
  type Normalization,
  normalizePixels,
} from './pixels.ts';
import { readTiffLayout, TiffLayoutError, type TiffPage } from './tiff-layout.ts';

// sharp's types live in a namespace merged with its default export.
type Metadata = import('sharp').Metadata;
type OutputInfo = import('sharp').OutputInfo;

export interface ImageOptions {
  /** Height × width the image must have (before augmentation); for a pyramid, the level to use. */
  height: number;
  width: number;
  /** Channels the network sees: 1 (grey) or 3 (RGB); other sources are converted (pixels.ts). */
  channels: 1 | 3;
  /** x → (x/255 − mean)/std per channel. Default: mean 0, std 1 (pixels scaled to [0, 1]). */
  normalization?: Normalization;
  augmentation?: Augmentation;
}

export interface ImageLevel {
  page: number;
  width: number;
  height: number;
  tileWidth?: number;
  tileHeight?: number;
}

/** What was opened and how it is read; for logs. */
export interface ImageDescription {
  path: string;
  format: ImageFormat;
  /** 'regions': each read decodes only its rectangle (TIFF); 'decoded': decoded once at open (PNG, JPEG). */
  access: 'regions' | 'decoded';
  /** TIFF: every page of the main chain, with tile sizes where tiled. */
  levels: ImageLevel[];
  /** TIFF: the page that is read (the one of the requested size). */
  page?: number;
  sourceChannels: number;
  channels: number;
  conversion: ChannelConversion;
  /** Size after augmentation (what reads address). */
  height: number;
  width: number;
  augmentation: Augmentation;
}

/** A decoded or downsampled picture: HWC uint8. */
export interface Uint8Image {
  data: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

export interface ImageSource extends TileSource {
  readonly path: string;
  /** Size of the augmented image (height and width swap under an odd rot90). */
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  /** The normalised float32 region [1, rows, cols, C] of the augmented image; the caller disposes it. */
  read(top: number, left: number, rows: number, cols: number): Promise<tf.Tensor4D>;
  /** The same values as `read`, as a plain HWC array. */
  readFloat32(top: number, left: number, rows: number, cols: number): Promise<Float32Array>;
  /**
   * uint8 HWC pixels of a region of the augmented image, in the requested channels, before jitter
   * and normalisation: for saliency overlays and thumbnails.
   */
  readUint8Region(top: number, left: number, rows: number, cols: number): Promise<Uint8Array>;
  /** The augmented image box-downsampled by `factor`, read in bands of rows to keep memory flat. */
  readDownsampled(factor: number): Promise<Uint8Image>;
  describe(): ImageDescription;
  /** Frees the decoded pixels (PNG, JPEG). Reads after close throw. */
  close(): void;
}

/** Source pixels of the chosen image: HWC uint8 in the requested channels. */
interface PixelStore {
  readRect(r: Rect): Promise<Uint8Array>;
  close(): void;
}

let sharpConfigured = false;
function configureSharp(): void {
  if (sharpConfigured) return;
  // libvips' operation cache would keep the decoded pixels of every region ever read; a training
  // run never reads the same region of a file twice in a row, so the cache only costs memory.
  sharp.cache(false);
  sharpConfigured = true;
}

/** Strip TIFFs with taller strips than this are decoded once at open (see openTiff). */
const MAX_REGION_STRIP_ROWS = 256;

// Whole-slide images exceed sharp's default pixel limit (16383²); reads are bounded by their region.
const SHARP_INPUT = { limitInputPixels: false } as const;

/**
 * Opens an image for streaming. Throws ImageError (missing, unreadable, truncated, wrong-size,
 * wrong-channels); PNG/JPEG are fully decoded here, so their errors surface at open. For TIFF, the
 * structure is checked here and pixel errors surface in `read`, also as ImageError.
 */
export async function openImage(path: string, options: ImageOptions): Promise<ImageSource> {
  configureSharp();
  checkOptions(path, options);
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ImageError(path, 'unreadable', 'not a regular file');
    size = st.size;
  } catch (e) {
    if (e instanceof ImageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new ImageError(path, 'missing', 'no such file', { cause: e });
    throw new ImageError(path, 'unreadable', (e as Error).message, { cause: e });
  }
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw new ImageError(path, 'unreadable', (e as Error).message, { cause: e });
  }
  try {
    const head = new Uint8Array(16);
    await handle.read(head, 0, Math.min(16, size), 0);
    const format = sniffFormat(head);
    if (format === undefined) {
      throw new ImageError(
        path,
        size === 0 ? 'truncated' : 'unreadable',
        size === 0 ? 'the file is empty' : 'not a PNG, JPEG or TIFF file (unknown first bytes)',
      );
    }
    if (format === 'tiff') return await openTiff(path, handle, size, options);
    return await openDecoded(path, format, handle, size, options);
  } finally {
    await handle.close();
  }
}

function checkOptions(path: string, o: ImageOptions): void {
  const positive = (v: number): boolean => Number.isInteger(v) && v > 0;
  if (!positive(o.height) || !positive(o.width)) {
    throw new RangeError(
      `openImage(${path}): height and width must be positive integers, got ${o.height}×${o.width}`,
    );
  }
  if (o.channels !== 1 && o.channels !== 3) {
    throw new RangeError(`openImage(${path}): channels must be 1 or 3, got ${o.channels}`);
  }
  const n = o.normalization;
  if (n && (n.mean.length !== o.channels || n.std.length !== o.channels || n.std.some((s) => !(s > 0)))) {
    throw new RangeError(
      `openImage(${path}): normalization needs ${o.channels} means and ${o.channels} positive stds, got ` +
        `mean [${n.mean.join(', ')}], std [${n.std.join(', ')}]`,
    );
  }
}

const sizeText = (w: number, h: number): string => `${h}×${w}`;

async function openTiff(
  path: string,
  handle: FileHandle,
  size: number,
  options: ImageOptions,
): Promise<ImageSource> {
  let pages: TiffPage[];
  try {
    pages = (await readTiffLayout(handle, size)).pages;
  } catch (e) {
    if (e instanceof TiffLayoutError) {
      throw new ImageError(path, e.truncated ? 'truncated' : 'unreadable', e.message, { cause: e });
    }
    throw e;
  }
  const levels: ImageLevel[] = pages.map((p) => {
    const level: ImageLevel = { page: p.index, width: p.width, height: p.height };
    if (p.tileWidth !== undefined && p.tileHeight !== undefined) {
      level.tileWidth = p.tileWidth;
      level.tileHeight = p.tileHeight;
    }
    return level;
  });
  const chosen = pages.find((p) => p.width === options.width && p.height === options.height);
  if (!chosen) {
    throw new ImageError(
      path,
      'wrong-size',
      `expected ${sizeText(options.width, options.height)} (height×width); ` +
        `the file holds ${pages.map((p) => sizeText(p.width, p.height)).join(', ')}`,
    );
  }
  const page = chosen.index;
  let meta: Metadata;
  try {
    meta = await sharp(path, { ...SHARP_INPUT, page }).metadata();
  } catch (e) {
    throw new ImageError(path, 'unreadable', `libvips cannot open page ${page}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const grey = isGrey(meta);
  const sourceChannels = sourceChannelCount(path, meta);
  const conversion = conversionOrThrow(path, sourceChannels, options.channels);
  const facts: SourceFacts = {
    format: 'tiff',
    access: 'regions',
    levels,
    page,
    sourceChannels,
    conversion,
    sourceHeight: chosen.height,
    sourceWidth: chosen.width,
  };
  if (chosen.tileWidth === undefined && (chosen.rowsPerStrip ?? chosen.height) > MAX_REGION_STRIP_ROWS) {
    // Each region read would decode whole strips, here most of the page: decode it once instead.
    const whole = await decodeWhole(path, page, grey, sourceChannels, options);
    return makeSource(path, whole, options, { ...facts, access: 'decoded' });
  }
  const store: PixelStore = {
    async readRect(r) {
      let pipeline = sharp(path, { ...SHARP_INPUT, page }).extract({
        left: r.left,
        top: r.top,
        width: r.cols,
        height: r.rows,
      });
      if (grey) pipeline = pipeline.toColourspace('b-w');
      let out: { data: Buffer; info: OutputInfo };
      try {
        out = await pipeline.raw().toBuffer({ resolveWithObject: true });
      } catch (e) {
        const msg = (e as Error).message;
        const truncated = /premature|truncat|end of file|short read|unexpected end/i.test(msg);
        throw new ImageError(
          path,
          truncated ? 'truncated' : 'unreadable',
          `reading ${r.rows}×${r.cols} at (${r.top}, ${r.left}) of page ${page}: ${msg}`,
          { cause: e },
        );
      }
      checkChannels(path, out.info.channels, sourceChannels);
      const px = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
      return convertChannels(px, r.rows * r.cols, sourceChannels, options.channels);
    },
    close() {},
  };
  return makeSource(path, store, options, facts);
}

async function openDecoded(
  path: string,
  format: 'png' | 'jpeg',
  handle: FileHandle,
  size: number,
  options: ImageOptions,
): Promise<ImageSource> {
  const truncated = await looksTruncated(format, handle, size);
  if (truncated) {
    // libpng/libjpeg may fill a cut-off image with grey and only warn; never train on that.
    throw new ImageError(
      path,
      'truncated',
      `the ${format.toUpperCase()} data ends before the end-of-image marker`,
    );
  }
  let meta: Metadata;
  try {
    meta = await sharp(path, SHARP_INPUT).metadata();
  } catch (e) {
    throw new ImageError(path, 'unreadable', (e as Error).message, { cause: e });
  }
  if (meta.width !== options.width || meta.height !== options.height) {
    throw new ImageError(
      path,
      'wrong-size',
      `expected ${sizeText(options.width, options.height)} (height×width), found ${sizeText(meta.width ?? 0, meta.height ?? 0)}`,
    );
  }
  const sourceChannels = sourceChannelCount(path, meta);
  const conversion = conversionOrThrow(path, sourceChannels, options.channels);
  const store = await decodeWhole(path, undefined, isGrey(meta), sourceChannels, options);
  return makeSource(path, store, options, {
    format,
    access: 'decoded',
    levels: [],
    sourceChannels,
    conversion,
    sourceHeight: options.height,
    sourceWidth: options.width,
  });
}

/**
 * Decodes a whole image (or TIFF page) once into uint8 pixels in the requested channels, and slices
 * regions from it: for formats that decode sequentially.
 */
async function decodeWhole(
  path: string,
  page: number | undefined,
  grey: boolean,
  sourceChannels: number,
  options: ImageOptions,
): Promise<PixelStore> {
  let pixels: Uint8Array | undefined;
  try {
    let pipeline = sharp(path, {
      ...SHARP_INPUT,
      failOn: 'warning',
      ...(page === undefined ? {} : { page }),
    });
    if (grey) pipeline = pipeline.toColourspace('b-w');
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    checkChannels(path, info.channels, sourceChannels);
    pixels = convertChannels(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      options.width * options.height,
      info.channels,
      options.channels,
    );
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(path, 'unreadable', `decoding failed: ${(e as Error).message}`, { cause: e });
  }
  const width = options.width;
  const c = options.channels;
  return {
    async readRect(r) {
      if (!pixels) throw new Error(`${path}: read after close()`);
      const out = new Uint8Array(r.rows * r.cols * c);
      for (let i = 0; i < r.rows; i++) {
        const s = ((r.top + i) * width + r.left) * c;
        out.set(pixels.subarray(s, s + r.cols * c), i * r.cols * c);
      }
      return out;
    },
    close() {
      pixels = undefined;
    },
  };
}

/** Grey files are read as one channel; sharp would otherwise expand them to sRGB. */
function isGrey(meta: Metadata): boolean {
  return meta.space === 'b-w' || meta.space === 'grey16';
}

/**
 * Channels of the raw pixels the pipeline yields: grey (b-w, one band plus an optional alpha) gives 1;
 * colour (sRGB, or CMYK, which sharp converts to sRGB) gives 3, or 4 with alpha. Files with more
 * bands than that (multispectral, several extra samples) have no sensible grey or RGB reading.
 */
function sourceChannelCount(path: string, meta: Metadata): number {
  const bands = meta.channels ?? 0;
  if (isGrey(meta) && bands <= 2) return 1;
  if (!isGrey(meta) && bands >= 3 && bands <= 4) return meta.hasAlpha ? 4 : 3;
  throw new ImageError(
    path,
    'wrong-channels',
    `the image has ${bands} bands (${meta.space ?? 'unknown'} colour space); expected grey or RGB, each with an optional alpha`,
  );
}

/** The pixels sharp returned must have the channels the metadata promised. */
function checkChannels(path: string, got: number, expected: number): void {
  if (got !== expected) {
    throw new ImageError(
      path,
      'wrong-channels',
      `decoding gave ${got} channels where the metadata promised ${expected}`,
    );
  }
}

function conversionOrThrow(path: string, from: number, to: number): ChannelConversion {
  const conv = channelConversion(from, to);
  if (!conv) throw new ImageError(path, 'wrong-channels', `cannot convert ${from} channels to ${to}`);
  return conv;
}

interface SourceFacts {
  format: ImageFormat;
  access: 'regions' | 'decoded';
  levels: ImageLevel[];
  page?: number;
  sourceChannels: number;
  conversion: ChannelConversion;
  sourceHeight: number;
  sourceWidth: number;
}

function makeSource(path: string, store: PixelStore, options: ImageOptions, facts: SourceFacts): ImageSource {
  const aug = options.augmentation ?? {};
  const { height, width } = augmentedSize(facts.sourceHeight, facts.sourceWidth, aug);
  const map: GridMap = gridMap(facts.sourceHeight, facts.sourceWidth, aug);
  const channels = options.channels;
  const norm: Normalization = options.normalization ?? {
    mean: new Array(channels).fill(0),
    std: new Array(channels).fill(1),
  };
  let closed = false;

  const readUint8Region = async (
    top: number,
    left: number,
    rows: number,
    cols: number,
  ): Promise<Uint8Array> => {
    if (closed) throw new Error(`${path}: read after close()`);
    const out: Rect = { top, left, rows, cols };
    checkRegion(path, out, height, width);
    const src = sourceRect(map, out);
    const pixels = await store.readRect(src);
    return remapRegion(pixels, src, channels, map, out);
  };
  const readFloat32 = async (top: number, left: number, rows: number, cols: number): Promise<Float32Array> =>
    normalizePixels(await readUint8Region(top, left, rows, cols), channels, norm, aug.jitter);

  const description: ImageDescription = {
    path,
    format: facts.format,
    access: facts.access,
    levels: facts.levels,
    sourceChannels: facts.sourceChannels,
    channels,
    conversion: facts.conversion,
    height,
    width,
    augmentation: aug,
  };
  if (facts.page !== undefined) description.page = facts.page;

  return {
    path,
    height,
    width,
    channels,
    readUint8Region,
    readFloat32,
    async read(top, left, rows, cols) {
      const data = await readFloat32(top, left, rows, cols);
      return tf.tensor4d(data, [1, rows, cols, channels], 'float32');
    },
    async readDownsampled(factor) {
      if (!Number.isInteger(factor) || factor < 1)
        throw new RangeError(`downsampling factor ${factor} is not a positive integer`);
      const oh = Math.ceil(height / factor);
      const ow = Math.ceil(width / factor);
      const data = new Uint8Array(oh * ow * channels);
      // Bands of whole blocks, about 16 MB of source pixels each.
      const blocksPerBand = Math.max(1, Math.floor((1 << 24) / (width * channels * factor)));
      for (let br = 0; br < oh; br += blocksPerBand) {
        const top = br * factor;
        const rows = Math.min(height, (br + blocksPerBand) * factor) - top;
        const band = await readUint8Region(top, 0, rows, width);
        data.set(boxDownsample(band, rows, width, channels, factor), br * ow * channels);
      }
      return { data, height: oh, width: ow, channels };
    },
    describe: () => description,
    close() {
      closed = true;
      store.close();
    },
  };
}

function checkRegion(path: string, r: Rect, height: number, width: number): void {
  const ok =
    Number.isInteger(r.top) &&
    Number.isInteger(r.left) &&
    Number.isInteger(r.rows) &&
    Number.isInteger(r.cols) &&
    r.top >= 0 &&
    r.left >= 0 &&
    r.rows >= 1 &&
    r.cols >= 1 &&
    r.top + r.rows <= height &&
    r.left + r.cols <= width;
  if (!ok) {
    throw new RangeError(
      `${path}: region ${r.rows}×${r.cols} at (${r.top}, ${r.left}) is outside the ${height}×${width} image`,
    );
  }
}
