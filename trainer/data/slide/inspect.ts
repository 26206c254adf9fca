// `tilestream slides inspect FILE`: what the trainer would read from one slide — vendor, levels,
// resolution, the tissue box, and (given an image size) the level, scale and crop — plus a thumbnail
// PNG with the tissue outline (green) and the crop (red), and the mask as a PNG, so a user can check
// the tissue detection before training.
import { Slide, type SlideLevel } from './openslide.ts';
import { parseMpp } from './resolution.ts';
import { planSlide, type SlideGeometry, type SlideRequest } from './slide-geometry.ts';
import { backgroundOf, slideTissue } from './slide-source.ts';
import type { Box } from './tissue.ts';
import { cropLevel0, writeTissueImages } from './tissue-report.ts';

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
    let cropAtLevel0: Box | undefined;
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
      const crop = cropLevel0(slide.levels, g);
      report.placement = {
        level: g.resolution.level,
        scaleX: g.resolution.scaleX,
        scaleY: g.resolution.scaleY,
        placement: g.placement,
        cropLevel0: crop,
        ...(g.resolution.micronsPerPixelX !== undefined && {
          micronsPerPixel: g.resolution.micronsPerPixelX,
        }),
      };
      cropAtLevel0 = crop;
    }
    await writeTissueImages(t, mask, cropAtLevel0, report.thumbnail, report.mask);
    return report;
  } finally {
    slide.close();
  }
}
