// Pictures of what tissue detection found, for a person to check: the thumbnail with the tissue
// outline (green) and the crop that is read (red), and the mask itself. Written by `tilestream
// slides inspect` and, per slide, by training (spec.data.slides: into <checkpoint.path>/tissue/).
import sharp from 'sharp';
import type { SlideLevel } from './openslide.ts';
import type { SlideGeometry } from './slide-geometry.ts';
import type { Box, Thumbnail, TissueMask } from './tissue.ts';

/** The pixels a geometry reads (its visible box), in level-0 coordinates. */
export function cropLevel0(levels: readonly SlideLevel[], g: SlideGeometry): Box {
  const d = (levels[g.resolution.level] as SlideLevel).downsample;
  const fx = d * g.resolution.scaleX;
  const fy = d * g.resolution.scaleY;
  const v = g.visible;
  return {
    x0: Math.round(v.x0 * fx),
    y0: Math.round(v.y0 * fy),
    x1: Math.round(v.x1 * fx),
    y1: Math.round(v.y1 * fy),
  };
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

/** Writes the thumbnail with outline and crop (`crop` in level-0 pixels) and the mask as PNGs. */
export async function writeTissueImages(
  t: Thumbnail,
  mask: TissueMask,
  crop: Box | undefined,
  thumbnailPath: string,
  maskPath: string,
): Promise<void> {
  const overlay = t.rgb.slice();
  const inThumbnail = crop && {
    x0: crop.x0 / t.downsampleX,
    y0: crop.y0 / t.downsampleY,
    x1: crop.x1 / t.downsampleX,
    y1: crop.y1 / t.downsampleY,
  };
  drawOverlay(overlay, t.width, t.height, mask.mask, inThumbnail);
  await sharp(overlay, { raw: { width: t.width, height: t.height, channels: 3 } })
    .png()
    .toFile(thumbnailPath);
  const maskPx = Uint8Array.from(mask.mask, (v) => v * 255);
  await sharp(maskPx, { raw: { width: t.width, height: t.height, channels: 1 } })
    .png()
    .toFile(maskPath);
}
