// TIFF (tiles, pyramids, strips of ≤ 256 rows): every read asks libvips for just the source
// rectangle it needs from one page, `sharp(file, {page}).extract(rect)`. A tiled file is never
// decoded whole, and memory stays flat in the image size (tfjs-notes.md §5a). For a pyramid the page
// whose size equals the requested height × width is used. A page stored in taller strips (one strip
// for the whole image is common) would be decoded whole by every read, so it is decoded once at open
// like PNG.

import type { FileHandle } from 'node:fs/promises';
import sharp from 'sharp';
import { decodeWhole } from './image-decoded.ts';
import { ImageError } from './image-error.ts';
import { makeSource } from './image-source.ts';
import type { ImageLevel, ImageOptions, ImageSource, PixelStore, SourceFacts } from './image-types.ts';
import { convertChannels } from './pixels.ts';
import {
  checkChannels,
  conversionOrThrow,
  isGrey,
  type Metadata,
  type OutputInfo,
  SHARP_INPUT,
  sizeText,
  sourceChannelCount,
} from './sharp-input.ts';
import { readTiffLayout, TiffLayoutError, type TiffPage } from './tiff-layout.ts';

/** Strip TIFFs with taller strips than this are decoded once at open (see openTiff). */
const MAX_REGION_STRIP_ROWS = 256;

export async function openTiff(
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
