// A minimal TIFF writer for tests: one uncompressed strip page with any number of 8-bit samples
// per pixel, which sharp cannot write (it folds extra bands into sRGB).

/**
 * Encodes HWC uint8 pixels as a little-endian, uncompressed, single-strip TIFF. Samples beyond the
 * first (grey) or the first three (RGB) are marked as unspecified extra samples.
 */
export function encodeRawTiff(
  pixels: Uint8Array,
  height: number,
  width: number,
  samples: number,
  photometric: 'min-is-black' | 'rgb' = 'min-is-black',
): Uint8Array {
  const entries: [tag: number, type: number, count: number, value: number][] = [];
  const dataOffset = 8;
  const dataLength = pixels.length;
  const bitsOffset = dataOffset + dataLength;
  const colour = photometric === 'rgb' ? 3 : 1;
  const extraCount = Math.max(0, samples - colour);
  const extraOffset = bitsOffset + samples * 2;
  const ifdOffset = extraOffset + extraCount * 2 + ((extraOffset + extraCount * 2) % 2);
  entries.push([256, 4, 1, width]);
  entries.push([257, 4, 1, height]);
  entries.push([258, 3, samples, samples <= 2 ? 8 | (samples === 2 ? 8 << 16 : 0) : bitsOffset]);
  entries.push([259, 3, 1, 1]); // no compression
  entries.push([262, 3, 1, photometric === 'rgb' ? 2 : 1]);
  entries.push([273, 4, 1, dataOffset]);
  entries.push([277, 3, 1, samples]);
  entries.push([278, 4, 1, height]);
  entries.push([279, 4, 1, dataLength]);
  entries.push([284, 3, 1, 1]); // chunky
  if (extraCount > 0) entries.push([338, 3, extraCount, extraCount <= 2 ? 0 : extraOffset]); // unspecified
  const size = ifdOffset + 2 + entries.length * 12 + 4;
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  buf.set([0x49, 0x49, 42, 0]);
  v.setUint32(4, ifdOffset, true);
  buf.set(pixels, dataOffset);
  for (let i = 0; i < samples; i++) v.setUint16(bitsOffset + 2 * i, 8, true);
  v.setUint16(ifdOffset, entries.length, true);
  entries.forEach(([tag, type, count, value], i) => {
    const at = ifdOffset + 2 + i * 12;
    v.setUint16(at, tag, true);
    v.setUint16(at + 2, type, true);
    v.setUint32(at + 4, count, true);
    if (type === 3 && count === 1) v.setUint16(at + 8, value, true);
    else v.setUint32(at + 8, value, true);
  });
  v.setUint32(ifdOffset + 2 + entries.length * 12, 0, true);
  return buf;
}
