// `tilestream slides inspect FILE`: what the trainer would read from one slide — vendor, levels,
// resolution, the tissue box, and (given an image size) the level, scale and crop — plus a thumbnail
// PNG with the tissue outline (green) and the crop (red), and the mask as a PNG, so a user can check
// the tissue detection before training.
import sharp from 'sharp';
import { Slide, type SlideLevel } from './openslide.ts';
import { parseMpp } from './resolution.ts';
import { planSlide, type SlideGeometry, type SlideRequest } from './slide-geometry.ts';
import { backgroundOf, slideTissue } from './slide-source.ts';
import type { Box } from './tissue.ts';

export interface InspectOptions {
  /** Where to write the thumbnail PNG (and `<name>.mask.png` beside it). */
  thumbnailPath: string;
  /** With an image size: the level, scale and crop spec.data.slides would give. */
  image?: { height: number; width: number; request: SlideRequest };
}

export interface SlideReport {
  path: string;
  vendor: string;
  levels: (SlideLevel & { micronsPerPixel?: number })[];
  micronsPerPixel?: { x: number; y: number };
  objectivePower?: string;
  background: number[];
  tissue: {
    found: boolean;
    /** Bounding box in level-0 pixels. */
    box?: Box;
    /** Fraction of the thumbnail covered by tissue. */
    fraction: number;
    threshold: number;
    thumbnailLevel: number;
  };
  /** With an image size: what training reads. */
  placement?: {
    level: number;
    scaleX: number;
    scaleY: number;
    micronsPerPixel?: number;
    placement: SlideGeometry['placement'];
    /** The pixels read, in level-0 coordinates. */
    cropLevel0: Box;
  };
  thumbnail: string;
  mask: string;
}

/** Draws the 1-px outline of `mask` (pixels set with an unset 4-neighbour) and a box into RGB. */
function drawOverlay(rgb: Uint8Array, w: number, h: number, mask: Uint8Array, crop: Box | undefined): void {
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      if (!mask[p]) continue;
      const edge =
        x === 0 ||
        y === 0 ||
        x === w - 1 ||
        y === h - 1 ||
        !mask[p - 1] ||
        !mask[p + 1] ||
        !mask[p - w] ||
        !mask[p + w];
      if (edge) rgb.set([0, 200, 0], p * 3);
    }
  }
  if (crop === undefined) return;
  const cl = (v: number, hi: number) => Math.min(hi - 1, Math.max(0, Math.round(v)));
  const [x0, x1, y0, y1] = [cl(crop.x0, w), cl(crop.x1 - 1, w), cl(crop.y0, h), cl(crop.y1 - 1, h)];
  for (let x = x0; x <= x1; x++) for (const y of [y0, y1]) rgb.set([230, 0, 0], (y * w + x) * 3);
  for (let y = y0; y <= y1; y++) for (const x of [x0, x1]) rgb.set([230, 0, 0], (y * w + x) * 3);
}

/** Inspects one slide. Throws OpenslideError (not a slide, broken) or ResolutionError. */
export async function inspectSlide(path: string, o: InspectOptions): Promise<SlideReport> {
  const slide = Slide.open(path);
  try {
    const background = backgroundOf(slide);
    const mpp = parseMpp(slide.property('openslide.mpp-x'), slide.property('openslide.mpp-y'));
    const { thumbnail: t, mask } = await slideTissue(slide, background);
    const report: SlideReport = {
      path,
      vendor: slide.vendor,
      levels: slide.levels.map((l) => ({ ...l, ...(mpp && { micronsPerPixel: mpp.x * l.downsample }) })),
      background: [...background],
      tissue: {
        found: mask.box !== undefined,
        fraction: mask.area / (t.width * t.height),
        threshold: mask.threshold,
        thumbnailLevel: t.level,
      },
      thumbnail: o.thumbnailPath,
      mask: o.thumbnailPath.replace(/(\.png)?$/i, '.mask.png'),
    };
    if (mpp) report.micronsPerPixel = mpp;
    const power = slide.property('openslide.objective-power');
    if (power !== undefined) report.objectivePower = power;
    if (mask.box) {
      report.tissue.box = {
        x0: Math.floor(mask.box.x0 * t.downsampleX),
        y0: Math.floor(mask.box.y0 * t.downsampleY),
        x1: Math.min((slide.levels[0] as SlideLevel).width, Math.ceil(mask.box.x1 * t.downsampleX)),
        y1: Math.min((slide.levels[0] as SlideLevel).height, Math.ceil(mask.box.y1 * t.downsampleY)),
      };
    }
    let cropInThumbnail: Box | undefined;
    if (o.image) {
      const g = planSlide(
        slide.levels,
        mpp,
        o.image.request,
        o.image.request.tissue === false
          ? undefined
          : { mask, downsampleX: t.downsampleX, downsampleY: t.downsampleY },
        o.image.height,
        o.image.width,
      );
      const d = (slide.levels[g.resolution.level] as SlideLevel).downsample;
      const fx = d * g.resolution.scaleX;
      const fy = d * g.resolution.scaleY;
      const v = g.visible;
      const cropLevel0 = {
        x0: Math.round(v.x0 * fx),
        y0: Math.round(v.y0 * fy),
        x1: Math.round(v.x1 * fx),
        y1: Math.round(v.y1 * fy),
      };
      report.placement = {
        level: g.resolution.level,
        scaleX: g.resolution.scaleX,
        scaleY: g.resolution.scaleY,
        placement: g.placement,
        cropLevel0,
        ...(g.resolution.micronsPerPixelX !== undefined && {
          micronsPerPixel: g.resolution.micronsPerPixelX,
        }),
      };
      cropInThumbnail = {
        x0: cropLevel0.x0 / t.downsampleX,
        y0: cropLevel0.y0 / t.downsampleY,
        x1: cropLevel0.x1 / t.downsampleX,
        y1: cropLevel0.y1 / t.downsampleY,
      };
    }
    const overlay = t.rgb.slice();
    drawOverlay(overlay, t.width, t.height, mask.mask, cropInThumbnail);
    await sharp(overlay, { raw: { width: t.width, height: t.height, channels: 3 } })
      .png()
      .toFile(report.thumbnail);
    const maskPx = Uint8Array.from(mask.mask, (v) => v * 255);
    await sharp(maskPx, { raw: { width: t.width, height: t.height, channels: 1 } })
      .png()
      .toFile(report.mask);
    return report;
  } finally {
    slide.close();
  }
}
