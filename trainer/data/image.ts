// Image files as tile sources for the streaming engine: openImage checks the request, sniffs the
// format from the first bytes and hands the file to its reader —
// - image-tiff.ts: TIFF, read region by region from one page (pyramid level) through libvips;
// - image-decoded.ts: PNG and JPEG, decoded once at open (they decode sequentially);
// - slide/slide-source.ts: with options.slide (spec.data.slides), any format OpenSlide reads.
// Pixels stay uint8 (HWC) until `read` normalises the tile to float32 (image-source.ts). Flips and
// rotations are coordinate transforms of the request and the jitter is pointwise (see augment.ts),
// so every region equals the same window of the augmented whole image.

import { type FileHandle, open, stat } from 'node:fs/promises';
import { sniffFormat } from './file-format.ts';
import { openDecoded } from './image-decoded.ts';
import { ImageError } from './image-error.ts';
import { openTiff } from './image-tiff.ts';
import type { ImageOptions, ImageSource } from './image-types.ts';
import { configureSharp } from './sharp-input.ts';

export type {
  ImageDescription,
  ImageLevel,
  ImageOptions,
  ImageSource,
  Uint8Image,
} from './image-types.ts';

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
  if (options.slide !== undefined) {
    // Loaded on demand: a run without slides never loads the FFI or the OpenSlide library.
    const { openSlideImage } = await import('./slide/slide-source.ts');
    return openSlideImage(path, { ...options, slide: options.slide });
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
        size === 0
          ? 'the file is empty'
          : 'not a PNG, JPEG or TIFF file (unknown first bytes); whole-slide formats (.svs, .ndpi, .mrxs, ' +
              'DICOM, …) are read through OpenSlide when spec.data.slides is set',
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
