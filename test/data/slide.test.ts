// Whole slides read through OpenSlide 4 (`tilestream setup openslide`, run by test/prepare.ts), on
// real files made by real tools: a generic tiled pyramidal TIFF written by libvips (sharp) and an
// Aperio .svs (the same with the Aperio description and resolution), holding a synthetic slide with
// tissue, lesions and dust at known places. sharp (libvips' own TIFF reader) is the independent
// reader the region reads are compared with. A DICOM WSI series is converted from the .svs by PyPI's
// wsidicomizer (lossless JPEG 2000, test/wsidicomizer.ts) and must read as the same pixels.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { initBackend } from '../../trainer/backend/select.ts';
import { type ImageOptions, type ImageSource, openImage } from '../../trainer/data/image.ts';
import { ImageError, type ImageErrorReason } from '../../trainer/data/image-error.ts';
import { openslideAvailability, Slide } from '../../trainer/data/slide/openslide.ts';
import { readLevelRgb } from '../../trainer/data/slide/slide-source.ts';
import { writeAperioSvs, writePyramidTiff } from '../../trainer/data/slide/slide-writer.ts';
import { generateSyntheticSlide, type SyntheticSlide } from '../../trainer/data/slide/synthetic-slide.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { linearLoss, relativeError } from '../../trainer/streaming/compare.ts';
import { tileGrid } from '../../trainer/streaming/geometry.ts';
import { conventionalStep, initParams, type Network, streamedStep } from '../../trainer/streaming/network.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { convertToDicom, wsidicomizerMissing } from '../wsidicomizer.ts';

const available = openslideAvailability();
const skip = skipUnlessRequired(
  available.ok
    ? undefined
    : `OpenSlide is not set up (${available.reason}); run 'tilestream setup openslide'`,
);

const MPP = 0.5;
const TISSUE = { x0: 1000, y0: 500, x1: 2200, y1: 1400 };

/** The `rows` × `cols` window at (top, left) of an RGB image `width` wide. */
function window(
  px: Uint8Array,
  width: number,
  top: number,
  left: number,
  rows: number,
  cols: number,
): Uint8Array {
  const out = new Uint8Array(rows * cols * 3);
  for (let y = 0; y < rows; y++)
    out.set(px.subarray(((top + y) * width + left) * 3, ((top + y) * width + left + cols) * 3), y * cols * 3);
  return out;
}

async function expectImageError(
  p: Promise<unknown>,
  reason: ImageErrorReason,
  path: string,
  message: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.equal(e.path, path);
    assert.match(e.message, message);
    return true;
  });
}

describe('whole slides through OpenSlide', { skip }, () => {
  let dir: string;
  let slide: SyntheticSlide;
  const f = (name: string) => join(dir, name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-slide-'));
    slide = generateSyntheticSlide(2048, 3072, TISSUE, 7, true);
    await writePyramidTiff(f('generic.tiff'), slide);
    await writeAperioSvs(f('aperio.svs'), slide, MPP);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names the vendor, the levels and the resolution', () => {
    const g = Slide.open(f('generic.tiff'));
    const a = Slide.open(f('aperio.svs'));
    try {
      assert.equal(g.vendor, 'generic-tiff');
      assert.equal(a.vendor, 'aperio');
      const sizes = [3072, 1536, 768, 384, 192].map((w) => ({
        width: w,
        height: (w * 2) / 3,
        downsample: 3072 / w,
      }));
      assert.deepEqual(a.levels, sizes);
      assert.deepEqual(g.levels, sizes);
      assert.equal(Number(a.property('openslide.mpp-x')), MPP);
      assert.ok(a.propertyNames().includes('aperio.AppMag'));
    } finally {
      g.close();
      a.close();
    }
  });

  it('region reads equal the source pixels at every level (libvips reads the same pages)', async () => {
    for (const file of ['generic.tiff', 'aperio.svs']) {
      const s = Slide.open(f(file));
      try {
        for (let level = 0; level < s.levels.length; level++) {
          const l = s.levels[level] as { width: number; height: number };
          const rows = Math.min(100, l.height - 3);
          const cols = Math.min(150, l.width - 5);
          const [top, left] = [Math.floor((l.height - rows) / 2) + 1, Math.floor((l.width - cols) / 3) + 5];
          const got = await readLevelRgb(s, level, left, top, cols, rows, [255, 255, 255]);
          const { data } = await sharp(f(file), { page: level })
            .extract({ left, top, width: cols, height: rows })
            .raw()
            .toBuffer({ resolveWithObject: true });
          assert.deepEqual(got, new Uint8Array(data), `${file} level ${level}`);
          if (level === 0) assert.deepEqual(got, window(slide.data, slide.width, top, left, rows, cols));
        }
      } finally {
        s.close();
      }
    }
  });

  it('transparent areas outside the slide get the background colour (premultiplied ARGB composited)', async () => {
    const s = Slide.open(f('aperio.svs'));
    try {
      const px = await readLevelRgb(s, 0, 3072 - 2, 0, 4, 1, [10, 20, 30]);
      assert.deepEqual([...px.subarray(6, 12)], [10, 20, 30, 10, 20, 30]);
      assert.deepEqual([...px.subarray(0, 6)], [...window(slide.data, 3072, 0, 3070, 1, 2)]);
    } finally {
      s.close();
    }
  });

  it('micronsPerPixel reads the coarsest level at least as fine and area-averages the rest', async () => {
    const base: ImageOptions = { height: 256, width: 256, channels: 3 };
    const cases = [
      { mpp: 1, level: 1, scale: 1 },
      { mpp: 2, level: 2, scale: 1 },
      { mpp: 0.75, level: 0, scale: 1.5 },
      { mpp: 1.5, level: 1, scale: 1.5 },
    ];
    for (const c of cases) {
      const img = await openImage(f('aperio.svs'), {
        ...base,
        slide: { micronsPerPixel: c.mpp, tissue: false },
      });
      try {
        const d = img.describe().slide;
        assert.ok(d);
        assert.deepEqual([d.level, d.scaleX, d.micronsPerPixel], [c.level, c.scale, c.mpp], `${c.mpp} µm/px`);
        // Expected: each output pixel is the overlap-weighted mean of the pixels of the chosen level
        // (as libvips reads that page) that it covers.
        const page = await sharp(f('aperio.svs'), { page: c.level })
          .raw()
          .toBuffer({ resolveWithObject: true });
        const lw = page.info.width;
        const got = await img.readUint8Region(100, 120, 8, 8);
        const s0 = c.scale;
        for (let y = 0; y < 8; y++) {
          for (let x = 0; x < 8; x++) {
            const oy = d.offsetY + 100 + y;
            const ox = d.offsetX + 120 + x;
            for (let k = 0; k < 3; k++) {
              let acc = 0;
              for (let sy = Math.floor(oy * s0); sy < Math.ceil((oy + 1) * s0); sy++) {
                const wy = Math.min((oy + 1) * s0, sy + 1) - Math.max(oy * s0, sy);
                for (let sx = Math.floor(ox * s0); sx < Math.ceil((ox + 1) * s0); sx++) {
                  const wx = Math.min((ox + 1) * s0, sx + 1) - Math.max(ox * s0, sx);
                  acc += wy * wx * (page.data[(sy * lw + sx) * 3 + k] as number);
                }
              }
              const want = acc / (s0 * s0);
              const v = got[(y * 8 + x) * 3 + k] as number;
              assert.ok(
                Math.abs(v - want) <= 0.5 + 1e-9,
                `${c.mpp} µm/px (${y}, ${x}) channel ${k}: ${v} vs ${want}`,
              );
            }
          }
        }
      } finally {
        img.close();
      }
    }
  });

  it('slides without resolution metadata are refused unless a level is given', async () => {
    const path = f('generic.tiff');
    const o: ImageOptions = { height: 256, width: 256, channels: 3 };
    await expectImageError(
      openImage(path, { ...o, slide: { micronsPerPixel: 1 } }),
      'wrong-resolution',
      path,
      /set spec\.data\.slides\.level/,
    );
    const img = await openImage(path, { ...o, slide: { micronsPerPixel: 1, level: 2 } });
    assert.deepEqual([img.describe().slide?.level, img.describe().slide?.scaleX], [2, 1]);
    img.close();
    await expectImageError(
      openImage(f('aperio.svs'), { ...o, slide: { micronsPerPixel: 0.25 } }),
      'wrong-resolution',
      f('aperio.svs'),
      /coarser than the requested 0\.25/,
    );
  });

  it('the tissue crop finds the tissue, ignores the dust, and keeps the lesions where they are', async () => {
    const img = await openImage(f('aperio.svs'), {
      height: 1024,
      width: 1536,
      channels: 3,
      slide: { micronsPerPixel: MPP },
    });
    try {
      const d = img.describe().slide;
      assert.ok(d);
      assert.equal(d.tissue, 'found');
      assert.equal(d.placement, 'centred');
      // The thumbnail (level 2, 4 level-0 px per pixel) bounds the box to within one of its pixels.
      for (const k of ['x0', 'y0', 'x1', 'y1'] as const)
        assert.ok(Math.abs(d.tissueBox[k] - TISSUE[k]) <= 4, `${k}: ${d.tissueBox[k]}`);
      const whole = await img.readUint8Region(0, 0, 1024, 1536);
      assert.deepEqual([...whole.subarray(0, 3)], [255, 255, 255], 'outside the tissue box: background');
      assert.ok(slide.lesions.length > 0);
      for (const l of slide.lesions) {
        const [top, left] = [Math.round(l.y) - 8, Math.round(l.x) - 8];
        const got = window(whole, 1536, top - d.offsetY, left - d.offsetX, 16, 16);
        assert.deepEqual(got, window(slide.data, 3072, top, left, 16, 16), `lesion at (${l.x}, ${l.y})`);
      }
    } finally {
      img.close();
    }
  });

  it("tissue larger than the image: 'crop' keeps the resolution, 'downscale' keeps all the tissue", async () => {
    const o: ImageOptions = { height: 512, width: 512, channels: 3 };
    const crop = await openImage(f('aperio.svs'), { ...o, slide: { micronsPerPixel: MPP, fit: 'crop' } });
    const cd = crop.describe().slide;
    assert.ok(cd);
    assert.deepEqual([cd.placement, cd.micronsPerPixel], ['cropped', MPP]);
    assert.ok(cd.offsetX >= cd.tissueBox.x0 && cd.offsetX + 512 <= cd.tissueBox.x1);
    crop.close();
    const down = await openImage(f('aperio.svs'), {
      ...o,
      slide: { micronsPerPixel: MPP, fit: 'downscale' },
    });
    const dd = down.describe().slide;
    assert.ok(dd);
    assert.equal(dd.placement, 'downscaled');
    assert.ok(
      dd.tissueBox.x1 - dd.tissueBox.x0 <= 512 && (dd.micronsPerPixel as number) > 1.1,
      JSON.stringify(dd),
    );
    down.close();
  });

  it('tiles equal the whole image under flips and rotations, and no read spans more than its tile', async () => {
    const reads: { level: number; w: number; h: number }[] = [];
    const original = Slide.prototype.readArgb;
    Slide.prototype.readArgb = function (this: Slide, x0, y0, level, w, h) {
      reads.push({ level, w, h });
      return original.call(this, x0, y0, level, w, h);
    };
    try {
      const img = await openImage(f('aperio.svs'), {
        height: 600,
        width: 900,
        channels: 3,
        augmentation: { rot90: 1, flipH: true },
        slide: { micronsPerPixel: 0.75 },
      });
      const whole = await img.readUint8Region(0, 0, img.height, img.width);
      reads.length = 0;
      for (let top = 0; top < img.height; top += 160) {
        for (let left = 0; left < img.width; left += 130) {
          const rows = Math.min(160, img.height - top);
          const cols = Math.min(130, img.width - left);
          assert.deepEqual(
            await img.readUint8Region(top, left, rows, cols),
            window(whole, img.width, top, left, rows, cols),
          );
        }
      }
      img.close();
      // A 160 × 130 tile at 1.5 level pixels per output pixel spans at most 241 × 196 level pixels.
      assert.ok(reads.length > 0);
      for (const r of reads) assert.ok(r.w * r.h <= 241 * 196, `a read of ${r.w}×${r.h} at level ${r.level}`);
    } finally {
      Slide.prototype.readArgb = original;
    }
  });

  it('streamed training on a slide equals conventional training on the same pixels decoded whole', async () => {
    await initBackend('cpu');
    const net: Network = {
      ...builtinNetwork('smallcnn', { width: 4, inputChannels: 3 }),
      pooling: 'max',
      outputs: 2,
    };
    const img: ImageSource = await openImage(f('aperio.svs'), {
      height: 192,
      width: 256,
      channels: 3,
      normalization: { mean: [0.8, 0.6, 0.8], std: [0.2, 0.2, 0.2] },
      slide: { micronsPerPixel: 6, fit: 'downscale' },
    });
    const params = initParams(net, 3);
    const loss = linearLoss(2, 3);
    const x = tf.tensor4d(await img.readFloat32(0, 0, 192, 256), [1, 192, 256, 3]);
    try {
      const conv = conventionalStep(net, params, x, loss);
      const streamed = await streamedStep(net, params, img, tileGrid(net.body, [192, 256], [96, 96]), loss);
      assert.ok(relativeError(streamed.logits, conv.logits) <= 1e-5);
      for (const [name, g] of conv.grads) {
        const e = relativeError((streamed.grads.get(name) as tf.Tensor).dataSync(), g.dataSync());
        assert.ok(e <= 1e-4, `gradient of ${name} differs by ${e}`);
      }
      for (const g of [...conv.grads.values(), ...streamed.grads.values()]) g.dispose();
    } finally {
      x.dispose();
      for (const p of params.values()) p.dispose();
      img.close();
    }
  });

  describe('bad slides are bad images that name the slide', () => {
    const o: ImageOptions = { height: 256, width: 256, channels: 3, slide: { micronsPerPixel: 1 } };

    it('missing, not a slide format, cut short, .mrxs without its folder', async () => {
      await expectImageError(openImage(f('nope.svs'), o), 'missing', f('nope.svs'), /no such file|ENOENT/);
      await writeFile(f('text.svs'), 'not a slide at all\n');
      await expectImageError(openImage(f('text.svs'), o), 'unreadable', f('text.svs'), /does not recognise/);
      const svs = await readFile(f('aperio.svs'));
      await writeFile(f('cut.svs'), svs.subarray(0, Math.floor(svs.length * 0.4)));
      await assert.rejects(
        (async () => {
          const img = await openImage(f('cut.svs'), {
            ...o,
            height: 1024,
            width: 1536,
            slide: { micronsPerPixel: MPP },
          });
          await img.readUint8Region(0, 0, 1024, 1536);
        })(),
        (e: unknown) =>
          e instanceof ImageError &&
          e.path === f('cut.svs') &&
          ['unreadable', 'truncated'].includes(e.reason),
      );
      const jpeg = await sharp(slide.data.subarray(0, 64 * 64 * 3), {
        raw: { width: 64, height: 64, channels: 3 },
      })
        .jpeg()
        .toBuffer();
      await writeFile(f('orphan.mrxs'), jpeg);
      await expectImageError(
        openImage(f('orphan.mrxs'), o),
        'unreadable',
        f('orphan.mrxs'),
        /needs its companion folder .*orphan\/ \(Slidedat\.ini/,
      );
    });
  });
});

describe('DICOM WSI through OpenSlide (converted by wsidicomizer)', {
  skip: skip ?? skipUnlessRequired(wsidicomizerMissing()),
}, () => {
  let dir: string;
  let slide: SyntheticSlide;
  let dicom: string;
  const f = (name: string) => join(dir, name);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-dicom-'));
    // Every level a multiple of the 256² tiles: OpenSlide refuses DICOM edge tiles stored smaller.
    slide = generateSyntheticSlide(2048, 2048, { x0: 500, y0: 700, x1: 1500, y1: 1500 }, 11, true);
    await writeAperioSvs(f('source.svs'), slide, MPP);
    convertToDicom(f('source.svs'), f('dicom'));
    const files = (await readdir(f('dicom'))).filter((n) => n.endsWith('.dcm'));
    assert.ok(files.length >= 4, `one instance per level: ${files.join(', ')}`);
    dicom = join(f('dicom'), files[0] as string);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads as vendor dicom with the levels and resolution of the source, and the same pixels at every level', async () => {
    const d = Slide.open(dicom);
    const s = Slide.open(f('source.svs'));
    try {
      assert.equal(d.vendor, 'dicom');
      assert.deepEqual(d.levels, s.levels);
      assert.equal(Number(d.property('openslide.mpp-x')), MPP);
      for (let level = 0; level < d.levels.length; level++) {
        const l = d.levels[level] as { width: number; height: number };
        const [rows, cols] = [Math.min(150, l.height - 7), Math.min(170, l.width - 3)];
        const got = await readLevelRgb(d, level, 3, 7, cols, rows, [255, 255, 255]);
        assert.deepEqual(
          got,
          await readLevelRgb(s, level, 3, 7, cols, rows, [255, 255, 255]),
          `level ${level}`,
        );
        if (level === 0) assert.deepEqual(got, window(slide.data, 2048, 7, 3, rows, cols));
      }
    } finally {
      d.close();
      s.close();
    }
  });

  it('trains on the same image as the .svs: resolution, tissue crop and pixels', async () => {
    const o: ImageOptions = { height: 512, width: 640, channels: 3, slide: { micronsPerPixel: 0.75 } };
    const a = await openImage(dicom, o);
    const b = await openImage(f('source.svs'), o);
    try {
      const da = a.describe().slide;
      assert.ok(da);
      assert.deepEqual({ ...da, vendor: 'x' }, { ...b.describe().slide, vendor: 'x' });
      assert.equal(da.tissue, 'found');
      assert.deepEqual(await a.readUint8Region(0, 0, 512, 640), await b.readUint8Region(0, 0, 512, 640));
    } finally {
      a.close();
      b.close();
    }
  });
});
