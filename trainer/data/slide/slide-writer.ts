// Writes slides that OpenSlide reads, from HWC uint8 RGB pixels: a generic tiled pyramidal TIFF
// (libvips' tiffsave through sharp: 256² tiles, each level half the previous, down to one tile) and
// an Aperio-style .svs (the same file whose first ImageDescription starts with "Aperio" and carries
// the resolution, `MPP = …`, which is how OpenSlide's aperio driver recognises it and finds
// openslide.mpp-x/y). For `tilestream synth --format svs|tiff-pyramid` and the tests.
import { open, readFile } from 'node:fs/promises';
import sharp from 'sharp';

export interface SlidePixels {
  data: Uint8Array;
  height: number;
  width: number;
  /** 3 (RGB); slides are colour. */
  channels: 3;
}

export interface PyramidTiffOptions {
  /** Lossless by default, so region reads can be compared with the source pixels exactly. */
  compression?: 'deflate' | 'lzw' | 'jpeg';
  tileSize?: number;
  /** Written as TIFF X/YResolution in pixels per centimetre (OpenSlide's generic-tiff ignores it). */
  micronsPerPixel?: number;
}

/** A tiled pyramidal TIFF (levels in the main directory chain, as OpenSlide's generic-tiff expects). */
export async function writePyramidTiff(
  path: string,
  px: SlidePixels,
  o: PyramidTiffOptions = {},
): Promise<void> {
  const tile = o.tileSize ?? 256;
  await sharp(px.data, {
    raw: { width: px.width, height: px.height, channels: px.channels },
    limitInputPixels: false,
  })
    .tiff({
      compression: o.compression ?? 'deflate',
      tile: true,
      tileWidth: tile,
      tileHeight: tile,
      pyramid: true,
      ...(o.micronsPerPixel === undefined
        ? {}
        : { xres: 1000 / o.micronsPerPixel, yres: 1000 / o.micronsPerPixel, resolutionUnit: 'cm' as const }),
    })
    .toFile(path);
}

/** The ImageDescription of an Aperio slide: the fields OpenSlide's aperio driver parses. */
export function aperioDescription(px: { height: number; width: number }, micronsPerPixel: number): string {
  const mag = Math.round(10 / micronsPerPixel);
  return (
    `Aperio Image Library v12.0.15 \r\n${px.width}x${px.height} [0,0 ${px.width}x${px.height}] (256x256) ` +
    `RAW|AppMag = ${mag}|MPP = ${micronsPerPixel}|ScanScope ID = TILESTREAM|Filename = synthetic`
  );
}

/** An Aperio-style .svs: a pyramidal TIFF whose first page carries the Aperio description. */
export async function writeAperioSvs(
  path: string,
  px: SlidePixels,
  micronsPerPixel: number,
  o: Omit<PyramidTiffOptions, 'micronsPerPixel'> = {},
): Promise<void> {
  await writePyramidTiff(path, px, { ...o, micronsPerPixel });
  await setImageDescription(path, aperioDescription(px, micronsPerPixel));
}

/**
 * Sets TIFF tag 270 (ImageDescription) of the first page of a classic little- or big-endian TIFF:
 * the directory is copied to the end of the file with the tag added or replaced (entries stay sorted
 * by tag, as TIFF requires) and the header points at the copy. sharp cannot write this tag.
 */
export async function setImageDescription(path: string, text: string): Promise<void> {
  const file = new Uint8Array(await readFile(path));
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const little = file[0] === 0x49;
  if (view.getUint16(2, little) !== 42)
    throw new Error(`${path}: not a classic TIFF (BigTIFF is not supported here)`);
  const ifd = view.getUint32(4, little);
  const count = view.getUint16(ifd, little);
  const entries: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const at = ifd + 2 + i * 12;
    if (view.getUint16(at, little) !== 270) entries.push(file.slice(at, at + 12));
  }
  const next = view.getUint32(ifd + 2 + count * 12, little);
  const textBytes = new TextEncoder().encode(`${text}\0`);
  let end = file.byteLength + (file.byteLength % 2);
  const textAt = end;
  end += textBytes.length + (textBytes.length % 2);
  const entry = new Uint8Array(12);
  const ev = new DataView(entry.buffer);
  ev.setUint16(0, 270, little);
  ev.setUint16(2, 2, little); // ASCII
  ev.setUint32(4, textBytes.length, little);
  ev.setUint32(8, textAt, little);
  entries.push(entry);
  entries.sort(
    (a, b) => new DataView(a.buffer).getUint16(0, little) - new DataView(b.buffer).getUint16(0, little),
  );
  const dir = new Uint8Array(2 + entries.length * 12 + 4);
  const dv = new DataView(dir.buffer);
  dv.setUint16(0, entries.length, little);
  for (const [i, e] of entries.entries()) dir.set(e, 2 + i * 12);
  dv.setUint32(2 + entries.length * 12, next, little);
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, end, little);
  const handle = await open(path, 'r+');
  try {
    await handle.write(textBytes, 0, textBytes.length, textAt);
    await handle.write(dir, 0, dir.length, end);
    await handle.write(header, 0, 4, 4);
  } finally {
    await handle.close();
  }
}
