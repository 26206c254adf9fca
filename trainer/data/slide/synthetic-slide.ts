// A synthetic whole slide with known content: pale glass, one elliptical piece of H&E-coloured
// tissue at a known place (the lesion texture of lesions.ts, so positive slides carry the
// checkerboard lesions at known positions), and a few small specks of dust that tissue detection
// must ignore. Pure; for the tests and `tilestream synth --format svs|tiff-pyramid`.
import { generateLesionImage, type Lesion } from '../lesions.ts';
import { mulberry32 } from '../random.ts';
import type { Box } from './tissue.ts';

/** Glass: unsaturated and bright, as a scanner's background. */
export const GLASS_RGB = [236, 234, 238] as const;

const SPECK = 16;

export interface SyntheticSlide {
  /** RGB, row-major. */
  data: Uint8Array;
  height: number;
  width: number;
  channels: 3;
  /** Bounding box of the tissue ellipse, level-0 pixels. */
  tissue: Box;
  /** Lesion centres in level-0 pixels (empty for a negative slide). */
  lesions: Lesion[];
  /** Boxes of the dust specks. */
  specks: Box[];
}

/** Grey texture value g (0–255) as eosin-pink/haematoxylin-purple: saturated, and linear in g. */
function stain(g: number): [number, number, number] {
  return [Math.round(60 + 0.75 * g), Math.round(20 + 0.45 * g), Math.round(90 + 0.6 * g)];
}

/**
 * A `height` × `width` slide whose tissue ellipse fills `tissue` (level-0 box). Deterministic in seed.
 */
export function generateSyntheticSlide(
  height: number,
  width: number,
  tissue: Box,
  seed: number,
  positive: boolean,
): SyntheticSlide {
  const th = tissue.y1 - tissue.y0;
  const tw = tissue.x1 - tissue.x0;
  const texture = generateLesionImage(th, tw, seed, positive);
  const data = new Uint8Array(height * width * 3);
  const rand = mulberry32(seed ^ 0x5a5a5a5a);
  for (let p = 0; p < height * width; p++) {
    const n = Math.round((rand() - 0.5) * 4); // sensor noise on glass: ±2
    data[p * 3] = GLASS_RGB[0] + n;
    data[p * 3 + 1] = GLASS_RGB[1] + n;
    data[p * 3 + 2] = GLASS_RGB[2] + n;
  }
  const cx = (tw - 1) / 2;
  const cy = (th - 1) / 2;
  const lesions: Lesion[] = [];
  for (const l of texture.lesions) {
    // Only lesions inside the ellipse are visible.
    if (((l.x - cx) / (tw / 2)) ** 2 + ((l.y - cy) / (th / 2)) ** 2 <= 0.8) {
      lesions.push({ x: l.x + tissue.x0, y: l.y + tissue.y0, radius: l.radius });
    }
  }
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      if (((x - cx) / (tw / 2)) ** 2 + ((y - cy) / (th / 2)) ** 2 > 1) continue;
      const rgb = stain(texture.pixels[y * tw + x] as number);
      data.set(rgb, ((tissue.y0 + y) * width + tissue.x0 + x) * 3);
    }
  }
  // Dust: three 16×16 specks in the corners, away from the tissue (a few thumbnail pixels each).
  const specks: Box[] = [];
  for (const [sx, sy] of [
    [8, 8],
    [width - 24, 8],
    [8, height - 24],
  ] as const) {
    const box = { x0: sx, y0: sy, x1: sx + SPECK, y1: sy + SPECK };
    if (box.x1 > tissue.x0 && box.x0 < tissue.x1 && box.y1 > tissue.y0 && box.y0 < tissue.y1) continue;
    for (let y = box.y0; y < box.y1; y++)
      for (let x = box.x0; x < box.x1; x++) data.set([90, 40, 110], (y * width + x) * 3);
    specks.push(box);
  }
  return { data, height, width, channels: 3, tissue, lesions, specks };
}
