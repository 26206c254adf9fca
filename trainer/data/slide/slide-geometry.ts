// Where each output pixel of a slide comes from: the resolution (resolution.ts), the tissue box,
// and the placement of that box into the fixed spec.data.imageSize. Pure.
//
// Placement policy (README "Whole-slide images"):
// - the tissue box fits: it is centred in the image;
// - it does not fit, fit 'crop' (default): the image-sized window inside the box that holds the most
//   tissue (centred along an axis where the box fits), at the requested resolution;
// - it does not fit, fit 'downscale': the resolution is lowered by the factor that makes the box fit
//   (a coarser level when one exists), then the box is centred.
// Everything outside the tissue box (and outside the slide) is the slide's background colour, so
// pen marks, labels and debris beside the tissue never reach the network.
import type { SlideLevel } from './openslide.ts';
import { chooseResolution, type ResolutionChoice, type ResolutionRequest } from './resolution.ts';
import { type Box, densestWindow, type TissueMask } from './tissue.ts';

export type TissueFit = 'crop' | 'downscale';

export interface SlideRequest extends ResolutionRequest {
  /** Detect tissue and crop to it (default true); false places the whole slide. */
  tissue?: boolean;
  fit?: TissueFit;
}

/** A tissue mask and its scale: level-0 pixels per mask pixel. */
export interface ScaledMask {
  mask: TissueMask;
  downsampleX: number;
  downsampleY: number;
}

export interface SlideGeometry {
  resolution: ResolutionChoice;
  /** Slide coordinates at the output resolution of output pixel (0, 0). */
  offsetX: number;
  offsetY: number;
  /** The tissue box at the output resolution (the whole slide when none). */
  tissueBox: Box;
  /** tissueBox ∩ the output window ∩ the slide: the pixels read; the rest is background. */
  visible: Box;
  placement: 'centred' | 'cropped' | 'downscaled';
  /** 'found', 'none-found' (the whole slide is used) or 'off' (spec.data.slides.tissue false). */
  tissue: 'found' | 'none-found' | 'off';
}

/** The resolution whose output pixel spans `f` level-0 pixels per axis (coarsest level ≤ f). */
function resolutionAtFactor(
  levels: readonly SlideLevel[],
  fx: number,
  fy: number,
  mppX?: number,
  mppY?: number,
): ResolutionChoice {
  let level = 0;
  for (let i = 0; i < levels.length; i++)
    if ((levels[i] as SlideLevel).downsample <= Math.min(fx, fy) * (1 + 1e-6)) level = i;
  const l = levels[level] as SlideLevel;
  const scaleX = fx / l.downsample;
  const scaleY = fy / l.downsample;
  const choice: ResolutionChoice = {
    level,
    scaleX,
    scaleY,
    width: Math.floor(l.width / scaleX),
    height: Math.floor(l.height / scaleY),
  };
  if (mppX !== undefined && mppY !== undefined) {
    choice.micronsPerPixelX = mppX * fx;
    choice.micronsPerPixelY = mppY * fy;
  }
  return choice;
}

/** Level-0 pixels per output pixel. */
const factors = (levels: readonly SlideLevel[], r: ResolutionChoice): [number, number] => {
  const d = (levels[r.level] as SlideLevel).downsample;
  return [d * r.scaleX, d * r.scaleY];
};

function boxAt(levels: readonly SlideLevel[], r: ResolutionChoice, m: ScaledMask | undefined): Box {
  if (m?.mask.box === undefined) return { x0: 0, y0: 0, x1: r.width, y1: r.height };
  const [fx, fy] = factors(levels, r);
  const b = m.mask.box;
  return {
    x0: Math.max(0, Math.floor((b.x0 * m.downsampleX) / fx)),
    y0: Math.max(0, Math.floor((b.y0 * m.downsampleY) / fy)),
    x1: Math.min(r.width, Math.ceil((b.x1 * m.downsampleX) / fx)),
    y1: Math.min(r.height, Math.ceil((b.y1 * m.downsampleY) / fy)),
  };
}

const intersect = (a: Box, b: Box): Box => ({
  x0: Math.max(a.x0, b.x0),
  y0: Math.max(a.y0, b.y0),
  x1: Math.max(Math.max(a.x0, b.x0), Math.min(a.x1, b.x1)),
  y1: Math.max(Math.max(a.y0, b.y0), Math.min(a.y1, b.y1)),
});

/**
 * Plans how a slide fills a `height` × `width` image. `mask` is the tissue detected on a thumbnail
 * (undefined when detection is off). Throws ResolutionError when the resolution cannot be chosen.
 */
export function planSlide(
  levels: readonly SlideLevel[],
  mpp: { x: number; y: number } | undefined,
  req: SlideRequest,
  mask: ScaledMask | undefined,
  height: number,
  width: number,
): SlideGeometry {
  let resolution = chooseResolution(levels, mpp, req);
  const tissue: SlideGeometry['tissue'] =
    req.tissue === false ? 'off' : mask?.mask.box === undefined ? 'none-found' : 'found';
  const usable = tissue === 'found' ? mask : undefined;
  let box = boxAt(levels, resolution, usable);
  let placement: SlideGeometry['placement'] = 'centred';
  const fits = (b: Box): boolean => b.x1 - b.x0 <= width && b.y1 - b.y0 <= height;
  if (!fits(box) && req.fit === 'downscale') {
    // Rounding the box outwards can leave it a pixel too large: grow the factor until it fits.
    let [fx, fy] = factors(levels, resolution);
    for (let i = 0; i < 8 && !fits(box); i++) {
      const k = Math.max((box.x1 - box.x0) / width, (box.y1 - box.y0) / height) * (1 + 1e-9 + i * 1e-3);
      fx *= k;
      fy *= k;
      resolution = resolutionAtFactor(levels, fx, fy, mpp?.x, mpp?.y);
      box = boxAt(levels, resolution, usable);
    }
    placement = 'downscaled';
  }
  let offsetX = box.x0 - Math.floor((width - (box.x1 - box.x0)) / 2);
  let offsetY = box.y0 - Math.floor((height - (box.y1 - box.y0)) / 2);
  if (!fits(box)) {
    placement = 'cropped';
    if (usable !== undefined) {
      const [fx, fy] = factors(levels, resolution);
      const sx = fx / usable.downsampleX; // mask pixels per output pixel
      const sy = fy / usable.downsampleY;
      const inMask = usable.mask.box as Box;
      const best = densestWindow(usable.mask, inMask, width * sx, height * sy);
      if (box.x1 - box.x0 > width) offsetX = Math.round(best.x / sx);
      if (box.y1 - box.y0 > height) offsetY = Math.round(best.y / sy);
    }
    if (box.x1 - box.x0 > width) offsetX = Math.min(Math.max(offsetX, box.x0), box.x1 - width);
    if (box.y1 - box.y0 > height) offsetY = Math.min(Math.max(offsetY, box.y0), box.y1 - height);
  }
  const visible = intersect(box, { x0: offsetX, y0: offsetY, x1: offsetX + width, y1: offsetY + height });
  return { resolution, offsetX, offsetY, tissueBox: box, visible, placement, tissue };
}
