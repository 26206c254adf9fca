// PNG and JPEG: they decode sequentially (a region near the bottom costs a decode of everything
// above it, tfjs-notes.md §5a), so they are decoded once at open into a uint8 buffer and sliced.
// decodeWhole also serves TIFF pages stored in tall strips (image-tiff.ts).

import type { FileHandle } from 'node:fs/promises';
import sharp from 'sharp';
import { looksTruncated } from './file-format.ts';
import { ImageError } from './image-error.ts';
import { makeSource } from './image-source.ts';
import type { ImageOptions, ImageSource, PixelStore } from './image-types.ts';
import { convertChannels } from './pixels.ts';
import {
  checkChannels,
  conversionOrThrow,
  isGrey,
  type Metadata,
  SHARP_INPUT,
  sizeText,
  sourceChannelCount,
} from './sharp-input.ts';

export async function openDecoded(
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
export async function decodeWhole(
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
