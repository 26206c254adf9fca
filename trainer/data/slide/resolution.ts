// Which pyramid level a slide is read from and how much it is resampled, from the slide's
// resolution metadata and spec.data.slides (micronsPerPixel or level). Pure.
import type { SlideLevel } from './openslide.ts';

/** What spec.data.slides asks for. micronsPerPixel wins; level serves slides without a resolution. */
export interface ResolutionRequest {
  micronsPerPixel?: number;
  level?: number;
}

/** Where a slide's pixels come from. */
export interface ResolutionChoice {
  level: number;
  /** Level pixels per output pixel along x and y (≥ 1; exactly 1 means no resampling). */
  scaleX: number;
  scaleY: number;
  /** µm per output pixel, when the slide has a resolution. */
  micronsPerPixelX?: number;
  micronsPerPixelY?: number;
  /** Size of the whole slide at the output resolution. */
  width: number;
  height: number;
}

/**
 * Microscopy resolutions lie far below this; a larger value is a default written by a tool that
 * knew no resolution (libvips writes 1 px/mm, i.e. 1000 µm/px), so it is treated as missing.
 */
export const MAX_PLAUSIBLE_MPP = 100;

/** A scale this close to 1 is 1: a level downsample of 2.0000001 must not resample the whole image. */
const SCALE_EPSILON = 1e-6;

export class ResolutionError extends Error {
  override name = 'ResolutionError';
}

/** openslide.mpp-x/y as numbers, or undefined when missing or implausible. */
export function parseMpp(x: string | undefined, y: string | undefined): { x: number; y: number } | undefined {
  const mx = Number(x);
  const my = Number(y ?? x);
  const ok = (v: number): boolean => Number.isFinite(v) && v > 0 && v <= MAX_PLAUSIBLE_MPP;
  return x !== undefined && ok(mx) && ok(my) ? { x: mx, y: my } : undefined;
}

const snap = (s: number): number => (Math.abs(s - 1) < SCALE_EPSILON ? 1 : s);

/**
 * The level and scale for a request: with micronsPerPixel, the coarsest level whose resolution is
 * at least the target (its µm/px ≤ target), resampled by target / level µm/px; with level alone,
 * that level as it is. Throws ResolutionError naming what is missing.
 */
export function chooseResolution(
  levels: readonly SlideLevel[],
  mpp: { x: number; y: number } | undefined,
  req: ResolutionRequest,
): ResolutionChoice {
  const base = levels[0];
  if (base === undefined) throw new ResolutionError('the slide has no levels');
  if (req.micronsPerPixel !== undefined && mpp !== undefined) {
    const t = req.micronsPerPixel;
    let level = -1;
    for (let i = 0; i < levels.length; i++) {
      const d = (levels[i] as SlideLevel).downsample;
      if (Math.max(mpp.x, mpp.y) * d <= t * (1 + SCALE_EPSILON)) level = i;
    }
    if (level < 0) {
      throw new ResolutionError(
        `the finest level is ${fmt(mpp.x)}×${fmt(mpp.y)} µm/px, coarser than the requested ${fmt(t)} µm/px ` +
          '(tilestream does not upsample); raise spec.data.slides.micronsPerPixel',
      );
    }
    const l = levels[level] as SlideLevel;
    const scaleX = snap(t / (mpp.x * l.downsample));
    const scaleY = snap(t / (mpp.y * l.downsample));
    return {
      level,
      scaleX,
      scaleY,
      micronsPerPixelX: t,
      micronsPerPixelY: t,
      width: Math.floor(l.width / scaleX),
      height: Math.floor(l.height / scaleY),
    };
  }
  if (req.level !== undefined) {
    const l = levels[req.level];
    if (l === undefined) {
      throw new ResolutionError(
        `spec.data.slides.level ${req.level} does not exist; the slide has levels 0–${levels.length - 1}`,
      );
    }
    const choice: ResolutionChoice = {
      level: req.level,
      scaleX: 1,
      scaleY: 1,
      width: l.width,
      height: l.height,
    };
    if (mpp !== undefined) {
      choice.micronsPerPixelX = mpp.x * l.downsample;
      choice.micronsPerPixelY = mpp.y * l.downsample;
    }
    return choice;
  }
  throw new ResolutionError(
    req.micronsPerPixel === undefined
      ? 'spec.data.slides needs micronsPerPixel or level'
      : 'the slide has no usable resolution (openslide.mpp-x/y missing or implausible); ' +
          'set spec.data.slides.level to read such slides at a pyramid level',
  );
}

const fmt = (v: number): string => String(Number(v.toPrecision(4)));
