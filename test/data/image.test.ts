import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import type { Augmentation } from '../../trainer/data/augment.ts';
import { type ImageOptions, openImage } from '../../trainer/data/image.ts';
import { ImageError, type ImageErrorReason } from '../../trainer/data/image-error.ts';
import { boxDownsample, normalizePixels } from '../../trainer/data/pixels.ts';
import { mulberry32 } from '../../trainer/data/random.ts';
import { readTiffLayout } from '../../trainer/data/tiff-layout.ts';
import { crop } from './pixel-window.ts';
import { encodeRawTiff } from './raw-tiff.ts';

await tf.setBackend('cpu');

const H = 300;
const W = 420;

/** Smooth gradients plus noise, so crops at different places differ and JPEG stays sane. */
function testPixels(h: number, w: number, c: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const px = new Uint8Array(h * w * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++)
        px[(y * w + x) * c + k] = (y * (k + 1) + x * (3 - k) + Math.floor(rand() * 40)) & 255;
    }
  }
  return px;
}

const raw = (px: Uint8Array, h: number, w: number, c: number) =>
  sharp(Buffer.from(px), { raw: { width: w, height: h, channels: c as 1 | 3 } });

async function decodeFull(
  file: string,
  options: { page?: number; grey?: boolean } = {},
): Promise<Uint8Array> {
  let p = sharp(file, options.page === undefined ? {} : { page: options.page });
  if (options.grey) p = p.toColourspace('b-w');
  return new Uint8Array(await p.raw().toBuffer());
}

async function expectImageError(
  p: Promise<unknown>,
  reason: ImageErrorReason,
  pattern?: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

const rgbOptions: ImageOptions = { height: H, width: W, channels: 3 };
const regions: [number, number, number, number][] = [
  [0, 0, 300, 420],
  [0, 0, 17, 23],
  [100, 130, 64, 64],
  [250, 370, 50, 50], // bottom-right corner
  [63, 0, 2, 420], // a band across tile rows
];

describe('image sources', () => {
  let dir: string;
  const f = (name: string) => join(dir, name);
  const rgb = testPixels(H, W, 3, 1);
  const grey = testPixels(H, W, 1, 2);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-image-'));
    await raw(rgb, H, W, 3).png().toFile(f('rgb.png'));
    await raw(rgb, H, W, 3).jpeg({ quality: 90 }).toFile(f('rgb.jpg'));
    await raw(rgb, H, W, 3).tiff({ compression: 'none' }).toFile(f('strip.tiff'));
    await raw(rgb, H, W, 3)
      .tiff({ tile: true, tileWidth: 64, tileHeight: 64, pyramid: true, compression: 'deflate' })
      .toFile(f('pyramid.tiff'));
    await raw(grey, H, W, 1).toColourspace('b-w').png().toFile(f('grey.png'));
    await raw(grey, H, W, 1)
      .toColourspace('b-w')
      .tiff({ tile: true, tileWidth: 64, tileHeight: 64, compression: 'deflate' })
      .toFile(f('grey.tiff'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [name, lossless] of [
    ['rgb.png', true],
    ['strip.tiff', true],
    ['pyramid.tiff', true],
    ['rgb.jpg', false],
  ] as const) {
    it(`${name}: region reads equal the same region of a full decode`, async () => {
      const src = await openImage(f(name), rgbOptions);
      const full = await decodeFull(f(name));
      if (lossless) assert.deepEqual(full, rgb, 'lossless file round-trips');
      assert.equal(src.describe().access, name.endsWith('.tiff') ? 'regions' : 'decoded');
      for (const [t, l, r, c] of regions) {
        assert.deepEqual(
          await src.readUint8Region(t, l, r, c),
          crop(full, W, 3, t, l, r, c),
          `region ${t},${l} ${r}×${c}`,
        );
      }
      src.close();
    });
  }

  it('a TIFF stored as one tall strip is decoded once, and reads the same', async () => {
    // encodeRawTiff writes a single strip of all 300 rows: every region read would decode it all.
    await writeFile(f('one-strip.tiff'), encodeRawTiff(rgb, H, W, 3, 'rgb'));
    const src = await openImage(f('one-strip.tiff'), rgbOptions);
    assert.equal(src.describe().access, 'decoded');
    assert.equal(src.describe().levels[0]?.tileWidth, undefined);
    for (const [t, l, r, c] of regions)
      assert.deepEqual(await src.readUint8Region(t, l, r, c), crop(rgb, W, 3, t, l, r, c));
  });

  it('read() gives normalised float32 tensors [1, rows, cols, C]', async () => {
    const norm = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    const src = await openImage(f('pyramid.tiff'), { ...rgbOptions, normalization: norm });
    const t = await src.read(10, 20, 30, 40);
    assert.deepEqual(t.shape, [1, 30, 40, 3]);
    assert.equal(t.dtype, 'float32');
    const want = normalizePixels(crop(rgb, W, 3, 10, 20, 30, 40), 3, norm);
    assert.deepEqual(t.dataSync(), want);
    const v = t.dataSync()[5] as number;
    assert.ok(Math.abs(v - ((rgb[(10 * W + 21) * 3 + 2] as number) / 255 - 0.406) / 0.225) < 1e-6);
    t.dispose();
    await assert.rejects(src.read(290, 0, 11, 5), /outside the 300×420 image/);
    src.close();
    await assert.rejects(src.readUint8Region(0, 0, 1, 1), /after close/);
  });

  it('picks the pyramid level of the requested size and reads it by regions', async () => {
    const src = await openImage(f('pyramid.tiff'), { height: 150, width: 210, channels: 3 });
    const d = src.describe();
    assert.equal(d.page, 1);
    assert.deepEqual(
      d.levels.map((l) => [l.page, l.height, l.width, l.tileHeight, l.tileWidth]),
      [
        [0, 300, 420, 64, 64],
        [1, 150, 210, 64, 64],
        [2, 75, 105, 64, 64],
        [3, 37, 52, 64, 64],
      ],
    );
    const level = await decodeFull(f('pyramid.tiff'), { page: 1 });
    assert.equal(level.length, 150 * 210 * 3);
    assert.deepEqual(await src.readUint8Region(70, 100, 80, 110), crop(level, 210, 3, 70, 100, 80, 110));
    await expectImageError(
      openImage(f('pyramid.tiff'), { height: 100, width: 100, channels: 3 }),
      'wrong-size',
      /expected 100×100 \(height×width\); the file holds 300×420, 150×210, 75×105, 37×52$/,
    );
  });

  it('a tiled TIFF region read decodes only the tiles it covers', async () => {
    // Overwrite every tile except the one at tile row 1, column 2 with garbage: a full decode fails,
    // the region inside that tile still reads exactly, and a region touching another tile fails.
    const bad = f('corrupt-tiles.tiff');
    await writeFile(bad, await readFile(f('grey.tiff')));
    const handle = await open(bad, 'r+');
    const { size } = await handle.stat();
    const page = (await readTiffLayout(handle, size)).pages[0];
    assert.ok(page?.tileWidth === 64 && page.blockOffsets.length === 5 * 7, 'grey.tiff has 5×7 tiles of 64²');
    const keep = 1 * 7 + 2;
    for (let i = 0; i < page.blockOffsets.length; i++) {
      if (i === keep) continue;
      const junk = Buffer.alloc(page.blockByteCounts[i] as number, 0xa5);
      await handle.write(junk, 0, junk.length, page.blockOffsets[i]);
    }
    await handle.close();
    await assert.rejects(sharp(bad).raw().toBuffer(), 'a whole decode of the damaged file fails');
    const src = await openImage(bad, { height: H, width: W, channels: 1 });
    assert.deepEqual(await src.readUint8Region(64, 128, 64, 64), crop(grey, W, 1, 64, 128, 64, 64));
    assert.deepEqual(await src.readUint8Region(70, 130, 20, 50), crop(grey, W, 1, 70, 130, 20, 50));
    await expectImageError(src.readUint8Region(64, 100, 10, 40), 'unreadable', /at \(64, 100\) of page 0/);
  });

  const rotations: Augmentation[] = [
    { flipH: true },
    { flipV: true },
    { rot90: 1 },
    { rot90: 2 },
    { rot90: 3, flipH: true },
    { rot90: 1, flipH: true, flipV: true },
  ];
  for (const name of ['pyramid.tiff', 'rgb.png']) {
    it(`${name}: flipped/rotated region reads equal transforming the whole image with sharp, then cropping`, async () => {
      for (const aug of rotations) {
        // Reference: flips first, then a clockwise rotation by 360° − 90°·k (= k counter-clockwise quarter turns).
        let p = sharp(f(name));
        if (aug.flipH) p = p.flop();
        if (aug.flipV) p = p.flip();
        const flipped = await p.raw().toBuffer({ resolveWithObject: true });
        const k = aug.rot90 ?? 0;
        const turned = await sharp(flipped.data, { raw: { width: W, height: H, channels: 3 } })
          .rotate((360 - 90 * k) % 360)
          .raw()
          .toBuffer({ resolveWithObject: true });
        const src = await openImage(f(name), { ...rgbOptions, augmentation: aug });
        assert.equal(src.width, turned.info.width, JSON.stringify(aug));
        assert.equal(src.height, turned.info.height);
        const ref = new Uint8Array(turned.data);
        for (const [t, l, r, c] of [
          [0, 0, src.height, src.width],
          [5, 7, 61, 90],
          [src.height - 40, src.width - 33, 40, 33],
        ] as const) {
          assert.deepEqual(
            await src.readUint8Region(t, l, r, c),
            crop(ref, src.width, 3, t, l, r, c),
            `${JSON.stringify(aug)} region ${t},${l}`,
          );
        }
        src.close();
      }
    });
  }

  it('colour jitter is pointwise: tiles of a jittered image equal the same windows of the whole', async () => {
    const aug: Augmentation = { rot90: 1, jitter: { brightness: 1.2, contrast: 0.8, saturation: 1.3 } };
    const norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
    const src = await openImage(f('pyramid.tiff'), { ...rgbOptions, normalization: norm, augmentation: aug });
    const whole = await src.readFloat32(0, 0, src.height, src.width);
    assert.deepEqual(
      whole,
      normalizePixels(await src.readUint8Region(0, 0, src.height, src.width), 3, norm, aug.jitter),
    );
    for (const [t, l, r, c] of [
      [0, 0, 100, 100],
      [333, 211, 87, 89],
      [150, 40, 64, 200],
    ] as const) {
      const tile = await src.readFloat32(t, l, r, c);
      for (let i = 0; i < r; i++) {
        const a = ((t + i) * src.width + l) * 3;
        assert.deepEqual(tile.subarray(i * c * 3, (i + 1) * c * 3), whole.subarray(a, a + c * 3));
      }
    }
    const plain = await openImage(f('pyramid.tiff'), {
      ...rgbOptions,
      normalization: norm,
      augmentation: { rot90: 1 },
    });
    assert.notDeepEqual(await plain.readFloat32(0, 0, 10, 10), await src.readFloat32(0, 0, 10, 10));
  });

  it('converts grey ↔ RGB and drops alpha; refuses images with more bands', async () => {
    const g3 = await openImage(f('grey.png'), rgbOptions);
    assert.equal(g3.describe().conversion, 'grey-to-rgb');
    const region = await g3.readUint8Region(3, 4, 2, 2);
    const g = crop(grey, W, 1, 3, 4, 2, 2);
    assert.deepEqual(region, Uint8Array.from([...g].flatMap((v) => [v, v, v])));
    const gt = await openImage(f('grey.tiff'), { height: H, width: W, channels: 1 });
    assert.equal(gt.describe().conversion, 'none');
    assert.deepEqual(await gt.readUint8Region(100, 100, 40, 40), crop(grey, W, 1, 100, 100, 40, 40));
    const c1 = await openImage(f('rgb.png'), { height: H, width: W, channels: 1 });
    assert.equal(c1.describe().conversion, 'rgb-to-grey');
    const [r, gg, b] = rgb.subarray(0, 3);
    assert.deepEqual(
      await c1.readUint8Region(0, 0, 1, 1),
      Uint8Array.from([Math.round(0.299 * r! + 0.587 * gg! + 0.114 * b!)]),
    );

    // Hand-written TIFFs: grey + alpha reads as grey; grey with two extra bands is refused.
    const px2 = testPixels(20, 30, 2, 3);
    await writeFile(f('grey-alpha.tiff'), encodeRawTiff(px2, 20, 30, 2));
    const ga = await openImage(f('grey-alpha.tiff'), { height: 20, width: 30, channels: 1 });
    assert.deepEqual(
      await ga.readUint8Region(0, 0, 20, 30),
      Uint8Array.from(px2.filter((_, i) => i % 2 === 0)),
    );
    await writeFile(f('three-band.tiff'), encodeRawTiff(testPixels(20, 30, 3, 4), 20, 30, 3));
    await expectImageError(
      openImage(f('three-band.tiff'), { height: 20, width: 30, channels: 3 }),
      'wrong-channels',
      /3 bands/,
    );
  });

  it('downsampled reads equal box-downsampling the augmented whole image', async () => {
    const src = await openImage(f('rgb.png'), { ...rgbOptions, augmentation: { rot90: 3 } });
    const whole = await src.readUint8Region(0, 0, src.height, src.width);
    const d = await src.readDownsampled(8);
    assert.deepEqual([d.height, d.width, d.channels], [Math.ceil(420 / 8), Math.ceil(300 / 8), 3]);
    assert.deepEqual(d.data, boxDownsample(whole, src.height, src.width, 3, 8));
  });

  describe('bad files', () => {
    before(async () => {
      const cut = async (from: string, to: string, fraction: number) => {
        const b = await readFile(f(from));
        await writeFile(f(to), b.subarray(0, Math.floor(b.length * fraction)));
      };
      await cut('pyramid.tiff', 'cut.tiff', 0.6);
      await cut('strip.tiff', 'cut-strip.tiff', 0.5);
      await cut('rgb.png', 'cut.png', 0.5);
      await cut('rgb.jpg', 'cut.jpg', 0.7);
      await writeFile(f('noise.png'), Buffer.from(testPixels(50, 50, 1, 9)));
      await writeFile(f('empty.png'), Buffer.alloc(0));
      // A PNG whose pixel data is damaged in the middle (the IEND trailer intact).
      const png = Buffer.from(await readFile(f('rgb.png')));
      png.fill(0x33, Math.floor(png.length / 3), Math.floor(png.length / 3) + 2000);
      await writeFile(f('damaged.png'), png);
      await mkdir(f('folder.png'));
    });

    it('truncated TIFF, PNG and JPEG are reported as truncated', async () => {
      await expectImageError(openImage(f('cut.tiff'), rgbOptions), 'truncated', /refers to bytes up to/);
      await expectImageError(openImage(f('cut-strip.tiff'), rgbOptions), 'truncated');
      await expectImageError(openImage(f('cut.png'), rgbOptions), 'truncated', /PNG data ends/);
      await expectImageError(openImage(f('cut.jpg'), rgbOptions), 'truncated', /JPEG data ends/);
      await expectImageError(openImage(f('empty.png'), rgbOptions), 'truncated', /empty/);
    });

    it('random bytes, damaged data and folders are unreadable; absent files missing', async () => {
      await expectImageError(openImage(f('noise.png'), rgbOptions), 'unreadable', /not a PNG, JPEG or TIFF/);
      await expectImageError(openImage(f('damaged.png'), rgbOptions), 'unreadable');
      await expectImageError(openImage(f('folder.png'), rgbOptions), 'unreadable', /not a regular file/);
      await expectImageError(openImage(f('absent.png'), rgbOptions), 'missing');
      await expectImageError(openImage(join(f('absent'), 'x.png'), rgbOptions), 'missing');
    });

    it('wrong sizes name both sizes', async () => {
      await expectImageError(
        openImage(f('rgb.png'), { height: 420, width: 300, channels: 3 }),
        'wrong-size',
        /expected 420×300 \(height×width\), found 300×420/,
      );
      await expectImageError(
        openImage(f('strip.tiff'), { height: 299, width: 420, channels: 3 }),
        'wrong-size',
        /holds 300×420$/,
      );
    });

    it('bad options are programming errors, not image errors', async () => {
      await assert.rejects(
        openImage(f('rgb.png'), { ...rgbOptions, normalization: { mean: [0], std: [1] } }),
        RangeError,
      );
      await assert.rejects(openImage(f('rgb.png'), { ...rgbOptions, channels: 2 as 3 }), RangeError);
    });
  });
});
