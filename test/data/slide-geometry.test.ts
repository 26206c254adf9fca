// The pure parts of whole-slide reading: resolution choice, area resampling, tissue detection and
// placement. No OpenSlide needed (slide.test.ts reads real slides).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { areaResample, sourceSpan } from '../../trainer/data/slide/resample.ts';
import { chooseResolution, parseMpp, ResolutionError } from '../../trainer/data/slide/resolution.ts';
import { planSlide } from '../../trainer/data/slide/slide-geometry.ts';
import { detectTissue, otsuThreshold } from '../../trainer/data/slide/tissue.ts';

const levels = [
  { width: 8000, height: 6000, downsample: 1 },
  { width: 2000, height: 1500, downsample: 4 },
  { width: 500, height: 375, downsample: 16 },
];

/** Area average written the slow way: every output pixel integrates its footprint directly. */
function naiveArea(
  src: Uint8Array,
  w: number,
  c: number,
  oy: number,
  ox: number,
  rows: number,
  cols: number,
  s: number,
): Uint8Array {
  const out = new Uint8Array(rows * cols * c);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      for (let k = 0; k < c; k++) {
        let acc = 0;
        for (let sy = Math.floor((oy + y) * s); sy < Math.ceil((oy + y + 1) * s); sy++) {
          const wy = Math.min((oy + y + 1) * s, sy + 1) - Math.max((oy + y) * s, sy);
          for (let sx = Math.floor((ox + x) * s); sx < Math.ceil((ox + x + 1) * s); sx++) {
            const wx = Math.min((ox + x + 1) * s, sx + 1) - Math.max((ox + x) * s, sx);
            acc += wy * wx * (src[(sy * w + sx) * c + k] as number);
          }
        }
        out[(y * cols + x) * c + k] = Math.round(acc / (s * s));
      }
    }
  }
  return out;
}

describe('resolution', () => {
  it('micronsPerPixel picks the coarsest level at least as fine as the target, and the rest is resampled', () => {
    const mpp = { x: 0.25, y: 0.25 };
    const at = (t: number) => chooseResolution(levels, mpp, { micronsPerPixel: t });
    assert.deepEqual([at(1).level, at(1).scaleX], [1, 1]);
    assert.deepEqual([at(2).level, at(2).scaleX], [1, 2]);
    assert.deepEqual([at(0.25).level, at(0.25).scaleX], [0, 1]);
    assert.deepEqual([at(0.5).level, at(0.5).scaleX], [0, 2]);
    assert.deepEqual([at(8).level, at(8).scaleX, at(8).width], [2, 2, 250]);
    assert.throws(
      () => at(0.2),
      /coarser than the requested 0.2 µm\/px .*raise spec.data.slides.micronsPerPixel/,
    );
  });

  it('slides without a usable resolution are refused unless a level is given', () => {
    assert.equal(parseMpp(undefined, undefined), undefined);
    assert.equal(
      parseMpp('1000.000015', '1000.000015'),
      undefined,
      "libvips' default 1 px/mm is not a resolution",
    );
    assert.deepEqual(parseMpp('0.2527', '0.2531'), { x: 0.2527, y: 0.2531 });
    assert.throws(
      () => chooseResolution(levels, undefined, { micronsPerPixel: 1 }),
      (e: Error) => e instanceof ResolutionError && /set spec.data.slides.level/.test(e.message),
    );
    const r = chooseResolution(levels, undefined, { micronsPerPixel: 1, level: 2 });
    assert.deepEqual([r.level, r.scaleX, r.width, r.height], [2, 1, 500, 375]);
    assert.throws(
      () => chooseResolution(levels, undefined, { level: 3 }),
      /level 3 does not exist; the slide has levels 0–2/,
    );
  });
});

describe('area resampling', () => {
  it('equals the direct integral of each footprint, and any window equals the same window of the whole', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 400 }).map((v) => v / 100),
        fc.nat({ max: 5 }),
        fc.nat({ max: 5 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 7 }),
        (s, oy, ox, rows, cols) => {
          const w = Math.ceil((ox + cols) * s) + 1;
          const h = Math.ceil((oy + rows) * s) + 1;
          const src = Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 97 + 13) % 251);
          const [x0, x1] = sourceSpan(ox, ox + cols, s);
          const [y0, y1] = sourceSpan(oy, oy + rows, s);
          const window = new Uint8Array((y1 - y0) * (x1 - x0) * 3);
          for (let y = y0; y < y1; y++)
            window.set(src.subarray((y * w + x0) * 3, (y * w + x1) * 3), (y - y0) * (x1 - x0) * 3);
          const got = areaResample(window, y1 - y0, x1 - x0, 3, oy, oy + rows, ox, ox + cols, s, s);
          // The same pixels cut from the resampling of everything up to the window: exactly equal.
          const [, wx1] = sourceSpan(0, ox + cols, s);
          const [, wy1] = sourceSpan(0, oy + rows, s);
          const all = new Uint8Array(wy1 * wx1 * 3);
          for (let y = 0; y < wy1; y++) all.set(src.subarray(y * w * 3, (y * w + wx1) * 3), y * wx1 * 3);
          const whole = areaResample(all, wy1, wx1, 3, 0, oy + rows, 0, ox + cols, s, s);
          for (let y = 0; y < rows; y++) {
            const row = whole.subarray(
              ((oy + y) * (ox + cols) + ox) * 3,
              ((oy + y) * (ox + cols) + ox + cols) * 3,
            );
            assert.deepEqual(got.subarray(y * cols * 3, (y + 1) * cols * 3), row);
          }
          // The direct 2-D integral rounds its own way: equal up to one grey level at .5 ties.
          const want = naiveArea(src, w, 3, oy, ox, rows, cols, s);
          for (let i = 0; i < got.length; i++)
            assert.ok(Math.abs((got[i] as number) - (want[i] as number)) <= 1);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('tissue detection', () => {
  /** White glass (with faint noise) holding a pink rectangle with a hole, and a speck. */
  function thumbnail(w: number, h: number): Uint8Array {
    const rgb = new Uint8Array(w * h * 3);
    for (let p = 0; p < w * h; p++) rgb.set([238 + (p % 3), 236 + (p % 2), 240], p * 3);
    const paint = (x0: number, y0: number, x1: number, y1: number, c: number[]) => {
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) rgb.set(c, (y * w + x) * 3);
    };
    paint(40, 30, 160, 90, [200, 120, 180]);
    paint(90, 50, 100, 60, [238, 236, 240]); // a hole (a vessel): filled
    paint(5, 5, 7, 7, [120, 40, 140]); // dust: removed
    return rgb;
  }

  it('finds the tissue box, fills holes and drops specks', () => {
    const t = detectTissue(thumbnail(200, 120), 200, 120);
    assert.deepEqual(t.box, { x0: 40, y0: 30, x1: 160, y1: 90 });
    assert.equal(t.area, 120 * 60);
    assert.equal(t.mask[55 * 200 + 95], 1, 'the hole is filled');
    assert.equal(t.mask[6 * 200 + 6], 0, 'the speck is gone');
  });

  it('an empty slide has no tissue (the saturation floor stops Otsu from splitting noise)', () => {
    const rgb = new Uint8Array(100 * 80 * 3);
    for (let p = 0; p < 8000; p++) rgb.set([236 + (p % 5), 234 + (p % 3), 238], p * 3);
    const t = detectTissue(rgb, 100, 80);
    assert.equal(t.box, undefined);
    assert.equal(t.area, 0);
  });

  it("Otsu's threshold separates two clusters", () => {
    const v = Uint8Array.from([...new Array(500).fill(10), ...new Array(300).fill(120)]);
    const t = otsuThreshold(v);
    assert.ok(t > 10 && t <= 120, `threshold ${t}`);
  });
});

describe('placement into the image size', () => {
  const mpp = { x: 0.25, y: 0.25 };
  const t = detectTissue(
    (() => {
      const w = 500;
      const h = 375;
      const rgb = new Uint8Array(w * h * 3).fill(240);
      for (let y = 100; y < 200; y++)
        for (let x = 50; x < 350; x++) rgb.set([190, 100, 170], (y * w + x) * 3);
      for (let y = 120; y < 180; y++)
        for (let x = 300; x < 350; x++) rgb.set([120, 30, 120], (y * w + x) * 3);
      return rgb;
    })(),
    500,
    375,
  );
  const mask = { mask: t, downsampleX: 16, downsampleY: 16 };

  it('a box that fits is centred; outside it is background', () => {
    // At 4 µm/px (level 2 as is) the box is 300 × 100 output pixels.
    const g = planSlide(levels, mpp, { micronsPerPixel: 4 }, mask, 200, 400);
    assert.equal(g.placement, 'centred');
    assert.deepEqual(g.tissueBox, { x0: 50, y0: 100, x1: 350, y1: 200 });
    assert.deepEqual([g.offsetX, g.offsetY], [0, 50]);
    assert.deepEqual(g.visible, g.tissueBox);
  });

  it("fit 'crop' keeps the resolution and takes the window with the most tissue", () => {
    const g = planSlide(levels, mpp, { micronsPerPixel: 4, fit: 'crop' }, mask, 200, 100);
    assert.equal(g.placement, 'cropped');
    assert.equal(g.resolution.micronsPerPixelX, 4);
    assert.ok(g.offsetX >= 50 && g.offsetX + 100 <= 350, `window inside the box, offset ${g.offsetX}`);
    assert.equal(g.offsetY, 50, 'centred along the axis that fits');
  });

  it("fit 'downscale' lowers the resolution until the box fits", () => {
    const g = planSlide(levels, mpp, { micronsPerPixel: 4, fit: 'downscale' }, mask, 200, 100);
    assert.equal(g.placement, 'downscaled');
    assert.ok((g.resolution.micronsPerPixelX as number) >= 12, `${g.resolution.micronsPerPixelX} µm/px`);
    assert.ok(g.tissueBox.x1 - g.tissueBox.x0 <= 100 && g.tissueBox.y1 - g.tissueBox.y0 <= 200);
    assert.deepEqual(g.visible, g.tissueBox);
  });

  it('without tissue detection the whole slide is placed', () => {
    const g = planSlide(levels, mpp, { micronsPerPixel: 4, tissue: false }, undefined, 375, 500);
    assert.equal(g.tissue, 'off');
    assert.deepEqual(g.tissueBox, { x0: 0, y0: 0, x1: 500, y1: 375 });
    assert.deepEqual([g.offsetX, g.offsetY, g.placement], [0, 0, 'centred']);
  });
});
