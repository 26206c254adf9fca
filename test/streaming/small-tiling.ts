// The tile and image a random-body equivalence property compares a body at: `extra` strides over
// the body's minimum tile, an image one and two strides larger, kept small enough for a test.

import { axisProfile, minimumTile } from '../../trainer/streaming/geometry.ts';
import type { Body } from '../../trainer/streaming/graph.ts';

/** undefined when the layers vanish at every size or the image would exceed maxArea pixels. */
export function smallTiling(
  body: Body,
  extra: number,
  maxArea = 160 * 160,
): { tile: number; image: [number, number] } | undefined {
  let t0: number;
  let S: number;
  try {
    t0 = Math.max(minimumTile(body, 0), minimumTile(body, 1));
    S = axisProfile(body, 0).totalStride;
  } catch {
    return undefined;
  }
  const tile = t0 + extra * S;
  const image: [number, number] = [tile + S, tile + 2 * S];
  return image[0] * image[1] > maxArea ? undefined : { tile, image };
}
