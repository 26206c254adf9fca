// The part every reader shares: an ImageSource over a reader's PixelStore. It maps regions of the
// augmented image to source rectangles (flips and rotations are coordinate transforms, augment.ts),
// normalises uint8 pixels to float32 tiles, and downsamples in bands of rows.

import * as tf from '@tensorflow/tfjs-core';
import { augmentedSize, type GridMap, gridMap, type Rect, remapRegion, sourceRect } from './augment.ts';
import type { ImageDescription, ImageOptions, ImageSource, PixelStore, SourceFacts } from './image-types.ts';
import { boxDownsample, type Normalization, normalizePixels } from './pixels.ts';

export function makeSource(
  path: string,
  store: PixelStore,
  options: ImageOptions,
  facts: SourceFacts,
): ImageSource {
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
  if (facts.slide !== undefined) description.slide = facts.slide;

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
