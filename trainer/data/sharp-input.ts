// How the sharp-based readers (image-tiff.ts, image-decoded.ts) open files and interpret what
// libvips reports: the shared sharp settings, the channel count of a file, and the conversion to
// the requested channels, each failing as an ImageError that names the file.

import sharp from 'sharp';
import { ImageError } from './image-error.ts';
import { type ChannelConversion, channelConversion } from './pixels.ts';

// sharp's types live in a namespace merged with its default export.
export type Metadata = import('sharp').Metadata;
export type OutputInfo = import('sharp').OutputInfo;

let sharpConfigured = false;
export function configureSharp(): void {
  if (sharpConfigured) return;
  // libvips' operation cache would keep the decoded pixels of every region ever read; a training
  // run never reads the same region of a file twice in a row, so the cache only costs memory.
  sharp.cache(false);
  sharpConfigured = true;
}

// Whole-slide images exceed sharp's default pixel limit (16383²); reads are bounded by their region.
export const SHARP_INPUT = { limitInputPixels: false } as const;

/** Grey files are read as one channel; sharp would otherwise expand them to sRGB. */
export function isGrey(meta: Metadata): boolean {
  return meta.space === 'b-w' || meta.space === 'grey16';
}

/**
 * Channels of the raw pixels the pipeline yields: grey (b-w, one band plus an optional alpha) gives 1;
 * colour (sRGB, or CMYK, which sharp converts to sRGB) gives 3, or 4 with alpha. Files with more
 * bands than that (multispectral, several extra samples) have no sensible grey or RGB reading.
 */
export function sourceChannelCount(path: string, meta: Metadata): number {
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
export function checkChannels(path: string, got: number, expected: number): void {
  if (got !== expected) {
    throw new ImageError(
      path,
      'wrong-channels',
      `decoding gave ${got} channels where the metadata promised ${expected}`,
    );
  }
}

export function conversionOrThrow(path: string, from: number, to: number): ChannelConversion {
  const conv = channelConversion(from, to);
  if (!conv) throw new ImageError(path, 'wrong-channels', `cannot convert ${from} channels to ${to}`);
  return conv;
}

export const sizeText = (w: number, h: number): string => `${h}×${w}`;
