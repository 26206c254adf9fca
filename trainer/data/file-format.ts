// Which image format a file holds, from its first bytes (not its name), and whether a sequential
// format ends where it should. Truncation is judged from the file's structure, not from decoder
// messages, whose wording differs between formats and library versions.

import type { FileHandle } from 'node:fs/promises';

/** What a file holds; 'openslide' is any whole-slide format read through OpenSlide (spec.data.slides). */
export type ImageFormat = 'png' | 'jpeg' | 'tiff' | 'openslide';

/** The formats told by their first bytes. */
export type SniffedFormat = Exclude<ImageFormat, 'openslide'>;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The format named by a file's magic bytes, or undefined. */
export function sniffFormat(head: Uint8Array): SniffedFormat | undefined {
  if (PNG_SIGNATURE.every((b, i) => head[i] === b)) return 'png';
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  const ii = head[0] === 0x49 && head[1] === 0x49 && head[3] === 0x00 && (head[2] === 42 || head[2] === 43);
  const mm = head[0] === 0x4d && head[1] === 0x4d && head[2] === 0x00 && (head[3] === 42 || head[3] === 43);
  if (ii || mm) return 'tiff';
  return undefined;
}

/**
 * Whether a PNG or JPEG file is cut short: a PNG must end with its IEND chunk, a JPEG with the
 * end-of-image marker (a few trailing bytes are tolerated; some writers pad).
 */
export async function looksTruncated(
  format: 'png' | 'jpeg',
  file: FileHandle,
  size: number,
): Promise<boolean> {
  const tailLength = Math.min(size, format === 'png' ? 12 : 64);
  const tail = new Uint8Array(tailLength);
  await file.read(tail, 0, tailLength, size - tailLength);
  if (format === 'png') {
    // Length 0, type 'IEND', CRC AE 42 60 82.
    const iend = [0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82];
    return tailLength < 12 || !iend.every((b, i) => tail[i] === b);
  }
  for (let i = tailLength - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return false;
  return true;
}
