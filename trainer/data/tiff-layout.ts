// The layout of a TIFF file (classic or BigTIFF) read from its directories without decoding pixels:
// each page's size, samples, tiling and where its data lies. sharp's metadata gives neither the tile
// size nor per-page sizes in one call, and says "unsupported image format" for a file cut short; the
// layout tells a truncated file (a directory or data block beyond the end) from a corrupt one.

import type { FileHandle } from 'node:fs/promises';

export interface TiffPage {
  /** Index in the main directory chain: sharp's `page`. */
  index: number;
  width: number;
  height: number;
  samplesPerPixel: number;
  bitsPerSample: number;
  /** TIFF compression code (1 none, 5 LZW, 7 JPEG, 8 deflate, ...). */
  compression: number;
  /** Tile size when the page is tiled; undefined for strips. */
  tileWidth?: number;
  tileHeight?: number;
  /** Rows per strip for strip pages. */
  rowsPerStrip?: number;
  /** Byte offset and length of every tile or strip (row-major tiles). */
  blockOffsets: number[];
  blockByteCounts: number[];
  /** One past the last byte of pixel data this page refers to. */
  dataEnd: number;
}

export interface TiffLayout {
  bigTiff: boolean;
  pages: TiffPage[];
}

/** A TIFF whose structure is broken; `truncated` when it points past the end of the file. */
export class TiffLayoutError extends Error {
  readonly truncated: boolean;
  constructor(message: string, truncated: boolean) {
    super(message);
    this.name = 'TiffLayoutError';
    this.truncated = truncated;
  }
}

const TAG = {
  width: 256,
  height: 257,
  bitsPerSample: 258,
  compression: 259,
  stripOffsets: 273,
  samplesPerPixel: 277,
  rowsPerStrip: 278,
  stripByteCounts: 279,
  tileWidth: 322,
  tileHeight: 323,
  tileOffsets: 324,
  tileByteCounts: 325,
} as const;

/** Bytes per value of each TIFF field type. */
const TYPE_SIZE: Readonly<Record<number, number>> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
  13: 4,
  16: 8,
  17: 8,
  18: 8,
};

const MAX_PAGES = 4096;

/** Reads the page directories of a TIFF file. Throws TiffLayoutError for a broken structure. */
export async function readTiffLayout(file: FileHandle, size: number): Promise<TiffLayout> {
  const read = async (offset: number, length: number): Promise<DataView> => {
    if (offset + length > size) {
      throw new TiffLayoutError(
        `the file is ${size} bytes but its structure refers to bytes up to ${offset + length}`,
        true,
      );
    }
    const buf = new Uint8Array(length);
    const { bytesRead } = await file.read(buf, 0, length, offset);
    if (bytesRead < length) throw new TiffLayoutError(`short read at byte ${offset}`, true);
    return new DataView(buf.buffer);
  };
  const head = await read(0, Math.min(16, size));
  if (head.byteLength < 8) throw new TiffLayoutError('the file is shorter than a TIFF header', true);
  const little = head.getUint8(0) === 0x49;
  const magic = head.getUint16(2, little);
  const bigTiff = magic === 43;
  if (bigTiff && head.byteLength < 16)
    throw new TiffLayoutError('the file is shorter than a BigTIFF header', true);
  const u64 = (v: DataView, at: number): number => {
    const x = v.getBigUint64(at, little);
    if (x > BigInt(Number.MAX_SAFE_INTEGER))
      throw new TiffLayoutError(`an offset of ${x} is out of range`, false);
    return Number(x);
  };
  const entrySize = bigTiff ? 20 : 12;
  const countSize = bigTiff ? 8 : 2;
  const offsetSize = bigTiff ? 8 : 4;

  /** Reads all values of one directory entry as numbers. */
  const values = async (entry: DataView, at: number): Promise<number[]> => {
    const type = entry.getUint16(at + 2, little);
    const count = bigTiff ? u64(entry, at + 4) : entry.getUint32(at + 4, little);
    const unit = TYPE_SIZE[type];
    if (unit === undefined) return [];
    const bytes = unit * count;
    const valueAt = at + (bigTiff ? 12 : 8);
    let view: DataView;
    let base: number;
    if (bytes <= offsetSize) {
      view = entry;
      base = valueAt;
    } else {
      const offset = bigTiff ? u64(entry, valueAt) : entry.getUint32(valueAt, little);
      view = await read(offset, bytes);
      base = 0;
    }
    const out: number[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const p = base + i * unit;
      switch (type) {
        case 3:
          out[i] = view.getUint16(p, little);
          break;
        case 4:
        case 13:
          out[i] = view.getUint32(p, little);
          break;
        case 16:
        case 18:
          out[i] = u64(view, p);
          break;
        default:
          out[i] = view.getUint8(p);
      }
    }
    return out;
  };

  const pages: TiffPage[] = [];
  const seen = new Set<number>();
  let ifd = bigTiff ? u64(head, 8) : head.getUint32(4, little);
  while (ifd !== 0) {
    if (seen.has(ifd)) throw new TiffLayoutError('the directory chain loops', false);
    if (pages.length >= MAX_PAGES) throw new TiffLayoutError(`more than ${MAX_PAGES} pages`, false);
    seen.add(ifd);
    const countView = await read(ifd, countSize);
    const count = bigTiff ? u64(countView, 0) : countView.getUint16(0, little);
    const entries = await read(ifd + countSize, count * entrySize + offsetSize);
    const tags = new Map<number, number>();
    for (let i = 0; i < count; i++) tags.set(entries.getUint16(i * entrySize, little), i * entrySize);
    const get = async (tag: number): Promise<number[] | undefined> => {
      const at = tags.get(tag);
      return at === undefined ? undefined : values(entries, at);
    };
    const first = async (tag: number, fallback?: number): Promise<number> => {
      const v = (await get(tag))?.[0] ?? fallback;
      if (v === undefined) throw new TiffLayoutError(`page ${pages.length} lacks TIFF tag ${tag}`, false);
      return v;
    };
    const width = await first(TAG.width);
    const height = await first(TAG.height);
    const tileWidth = tags.has(TAG.tileWidth) ? await first(TAG.tileWidth) : undefined;
    const tileHeight = tags.has(TAG.tileHeight) ? await first(TAG.tileHeight) : undefined;
    const tiled = tileWidth !== undefined && tileHeight !== undefined;
    const offsets = (await get(tiled ? TAG.tileOffsets : TAG.stripOffsets)) ?? [];
    const counts = (await get(tiled ? TAG.tileByteCounts : TAG.stripByteCounts)) ?? [];
    if (offsets.length === 0 || offsets.length !== counts.length) {
      throw new TiffLayoutError(`page ${pages.length} has no valid ${tiled ? 'tile' : 'strip'} table`, false);
    }
    let dataEnd = 0;
    for (let i = 0; i < offsets.length; i++) {
      dataEnd = Math.max(dataEnd, (offsets[i] as number) + (counts[i] as number));
    }
    const page: TiffPage = {
      index: pages.length,
      width,
      height,
      samplesPerPixel: await first(TAG.samplesPerPixel, 1),
      bitsPerSample: await first(TAG.bitsPerSample, 1),
      compression: await first(TAG.compression, 1),
      blockOffsets: offsets,
      blockByteCounts: counts,
      dataEnd,
    };
    if (tiled) {
      page.tileWidth = tileWidth;
      page.tileHeight = tileHeight;
    } else {
      page.rowsPerStrip = Math.min(height, await first(TAG.rowsPerStrip, height));
    }
    if (dataEnd > size) {
      throw new TiffLayoutError(
        `page ${page.index} (${width}×${height}) has pixel data up to byte ${dataEnd} but the file is ${size} bytes`,
        true,
      );
    }
    pages.push(page);
    const next = entries;
    ifd = bigTiff ? u64(next, count * entrySize) : next.getUint32(count * entrySize, little);
  }
  if (pages.length === 0) throw new TiffLayoutError('the file has no image directory', false);
  return { bigTiff, pages };
}
