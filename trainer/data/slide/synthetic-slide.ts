// A synthetic whole slide with known content: pale glass, one piece of H&E-coloured tissue at a
// known place carrying the lesion texture of lesions.ts (so positive slides have the checkerboard
// lesions at known positions), and a few small specks of dust that tissue detection must ignore.
// Pure; for the tests, `tilestream bench slides` and `tilestream synth --format svs|dicom`.
import { generateLesionImage, LESION_TASK, type Lesion, type LesionImage } from '../lesions.ts';
import { mulberry32 } from '../random.ts';
import type { Box } from './tissue.ts';

/** Glass: unsaturated and bright, as a scanner's background. */
export const GLASS_RGB = [236, 234, 238] as const;

/** Resolution of the slides `tilestream synth --format svs|dicom` writes: 20×. */
export const SYNTHETIC_SLIDE_MPP = 0.5;

const SPECK = 16;

/** The stain map v → a + b·v per channel (v the grey texture, 0–255): pink-purple and saturated. */
const STAIN = [
  [60, 0.75],
  [20, 0.45],
  [90, 0.6],
] as const;

/**
 * spec.data.normalization for synthetic slides: the lesion task's grey normalisation (mean 0.5,
 * std 0.05 of the texture) carried through the stain map, so the network sees the same scale.
 */
export const SYNTHETIC_SLIDE_NORMALIZATION = {
  mean: STAIN.map(([a, b]) => Number(((a + b * 255 * LESION_TASK.normalization.mean[0]) / 255).toFixed(6))),
  std: STAIN.map(([, b]) => Number((b * LESION_TASK.normalization.std[0]).toFixed(6))),
};

export interface SyntheticSlide {
  /** RGB, row-major. */
  data: Uint8Array;
  height: number;
  width: number;
  channels: 3;
  /** Bounding box of the tissue, level-0 pixels. */
  tissue: Box;
  /** Lesion centres in level-0 pixels (empty for a negative slide). */
  lesions: Lesion[];
  /** Boxes of the dust specks. */
  specks: Box[];
}

function stain(g: number): [number, number, number] {
  return STAIN.map(([a, b]) => Math.round(a + b * g)) as [number, number, number];
}

/** Tissue outline: an ellipse, or a rectangle with rounded corners of this radius. */
export type TissueShape = { kind: 'ellipse' } | { kind: 'rounded'; radius: number };

function inside(shape: TissueShape, x: number, y: number, w: number, h: number): boolean {
  if (shape.kind === 'ellipse') {
    return ((x - (w - 1) / 2) / (w / 2)) ** 2 + ((y - (h - 1) / 2) / (h / 2)) ** 2 <= 1;
  }
  const r = shape.radius;
  const dx = Math.max(0, r - x - 0.5, x + 0.5 - (w - r));
  const dy = Math.max(0, r - y - 0.5, y + 0.5 - (h - r));
  return dx * dx + dy * dy <= r * r;
}

/** Paints `texture` as stained tissue of `shape` into a glass slide, with dust in three corners (unless `dust` is false). */
export function paintSlide(
  height: number,
  width: number,
  tissue: Box,
  texture: LesionImage,
  shape: TissueShape,
  seed: number,
  dust = true,
): SyntheticSlide {
  const th = tissue.y1 - tissue.y0;
  const tw = tissue.x1 - tissue.x0;
  if (texture.height !== th || texture.width !== tw) {
    throw new RangeError(`the texture is ${texture.height}×${texture.width}, the tissue box ${th}×${tw}`);
  }
  const data = new Uint8Array(height * width * 3);
  const rand = mulberry32(seed ^ 0x5a5a5a5a);
  for (let p = 0; p < height * width; p++) {
    const n = Math.round((rand() - 0.5) * 4); // sensor noise on glass: ±2
    data[p * 3] = GLASS_RGB[0] + n;
    data[p * 3 + 1] = GLASS_RGB[1] + n;
    data[p * 3 + 2] = GLASS_RGB[2] + n;
  }
  const lesions: Lesion[] = [];
  for (const l of texture.lesions) {
    // A lesion counts when its whole disc lies in the tissue.
    const edge = [0, Math.PI / 2, Math.PI, (3 * Math.PI) / 2].every((a) =>
      inside(shape, l.x + Math.cos(a) * l.radius, l.y + Math.sin(a) * l.radius, tw, th),
    );
    if (edge) lesions.push({ x: l.x + tissue.x0, y: l.y + tissue.y0, radius: l.radius });
  }
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      if (!inside(shape, x, y, tw, th)) continue;
      data.set(stain(texture.pixels[y * tw + x] as number), ((tissue.y0 + y) * width + tissue.x0 + x) * 3);
    }
  }
  const specks: Box[] = [];
  for (const [sx, sy] of [
    [8, 8],
    [width - 8 - SPECK, 8],
    [8, height - 8 - SPECK],
  ] as const) {
    const box = { x0: sx, y0: sy, x1: sx + SPECK, y1: sy + SPECK };
    const overlaps = box.x1 > tissue.x0 && box.x0 < tissue.x1 && box.y1 > tissue.y0 && box.y0 < tissue.y1;
    if (!dust || overlaps || sx < 0 || sy < 0) continue;
    for (let y = box.y0; y < box.y1; y++) {
      for (let x = box.x0; x < box.x1; x++) data.set([90, 40, 110], (y * width + x) * 3);
    }
    specks.push(box);
  }
  return { data, height, width, channels: 3, tissue, lesions, specks };
}

/** A `height` × `width` slide whose tissue ellipse fills `tissue` (level-0 box). Deterministic in seed. */
export function generateSyntheticSlide(
  height: number,
  width: number,
  tissue: Box,
  seed: number,
  positive: boolean,
): SyntheticSlide {
  const texture = generateLesionImage(tissue.y1 - tissue.y0, tissue.x1 - tissue.x0, seed, positive);
  return paintSlide(height, width, tissue, texture, { kind: 'ellipse' }, seed);
}

/**
 * The slide `tilestream synth --format svs` writes for one synthetic image: the image as tissue with
 * rounded corners (radius 8 px: every lesion lies inside, so the label holds), on glass 1.5× its
 * size at a seeded position, without dust (on a slide this small a speck would pass the area filter
 * and widen the crop). Read at SYNTHETIC_SLIDE_MPP with imageSize = the image size, the crop is the
 * image again, coloured.
 */
export function slideOfImage(
  texture: LesionImage,
  seed: number,
  /** Square glass of this side instead (at least 1.5× the image's longer side), e.g. for DICOM's tile multiples. */
  glassSide?: number,
): SyntheticSlide {
  const height = glassSide ?? Math.round(texture.height * 1.5);
  const width = glassSide ?? Math.round(texture.width * 1.5);
  const rand = mulberry32(seed ^ 0x13579bdf);
  const y0 = Math.floor(rand() * (height - texture.height));
  const x0 = Math.floor(rand() * (width - texture.width));
  const tissue = { x0, y0, x1: x0 + texture.width, y1: y0 + texture.height };
  return paintSlide(height, width, tissue, texture, { kind: 'rounded', radius: 8 }, seed, false);
}

/**
 * The glass side of a synthetic DICOM slide for a `height` × `width` image: the smallest
 * `tile`·2^k at least 1.5× the longer side, so every level of the halving pyramid is whole tiles
 * (OpenSlide refuses DICOM edge tiles stored smaller than the tile size).
 */
export function dicomGlassSide(height: number, width: number, tile: number): number {
  let side = tile;
  while (side < 1.5 * Math.max(height, width)) side *= 2;
  return side;
}
