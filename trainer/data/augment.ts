// Augmentations that keep streaming exact, and their per-image random draw.
//
// Streaming is exact when every tile the engine reads equals the same window of the (augmented)
// whole image. Two kinds of augmentation have that property:
//   - Flips and 90° rotations permute the pixel grid, and they map an axis-aligned rectangle onto an
//     axis-aligned rectangle. A tile of the augmented image is therefore the flipped/rotated copy of
//     one source rectangle: we read that rectangle and permute it. No pixel is interpolated and no
//     pixel outside the source rectangle is involved.
//   - Colour jitter here is a pointwise function of one pixel with constants drawn once per image
//     (brightness and contrast factors, a saturation factor that mixes only that pixel's channels).
//     Its value at a pixel does not depend on where the tile starts. (A contrast about the *image*
//     mean, as torchvision does it, would need the whole image, so the pivot is the fixed mid-grey 0.5.)
// Random crops, rescaling, blur or elastic deformation with per-tile parameters would not be exact,
// and are not offered.

/** Per-image colour changes on the [0, 1] scale; factors, 1 = unchanged. */
export interface ColorJitter {
  /** v → v·brightness */
  brightness: number;
  /** v → (v − 0.5)·contrast + 0.5 */
  contrast: number;
  /** RGB only: v → g + (v − g)·saturation, g the pixel's luma. */
  saturation?: number;
}

/**
 * The augmentation of one image. The augmented image is rot90^k(flip(source)): first the flips, then
 * `rot90` counter-clockwise quarter turns (as numpy.rot90 and tf.image.rot90), then the colour jitter,
 * clipped to [0, 1], then the normalisation.
 */
export interface Augmentation {
  /** Mirror left ↔ right. */
  flipH?: boolean;
  /** Mirror top ↔ bottom. */
  flipV?: boolean;
  /** Counter-clockwise quarter turns; odd values swap height and width. */
  rot90?: 0 | 1 | 2 | 3;
  jitter?: ColorJitter;
}

/** Which augmentations to draw (the `spec.data.augmentation` block of a job). */
export interface AugmentationPolicy {
  /** Random horizontal and vertical flips, each with probability 1/2. */
  flips?: boolean;
  /** Random quarter turns: 0–3 for square images, 0 or 2 otherwise (so the size stays). */
  rotate90?: boolean;
  /** Strength s in [0, 1]: brightness, contrast and saturation factors uniform in [1 − s, 1 + s]. */
  colorJitter?: number;
}

/**
 * Draws one image's augmentation. Always consumes the same six numbers from `rand`, so the draw of
 * one image does not depend on the policy of another.
 */
export function drawAugmentation(
  policy: AugmentationPolicy,
  rand: () => number,
  size: { height: number; width: number },
): Augmentation {
  const u = [rand(), rand(), rand(), rand(), rand(), rand()] as const;
  const aug: Augmentation = {};
  if (policy.flips) {
    aug.flipH = u[0] < 0.5;
    aug.flipV = u[1] < 0.5;
  }
  if (policy.rotate90) {
    const k = Math.min(3, Math.floor(u[2] * 4)) as 0 | 1 | 2 | 3;
    aug.rot90 = size.height === size.width ? k : (((k & 1) === 1 ? k - 1 : k) as 0 | 2);
  }
  const s = policy.colorJitter ?? 0;
  if (s > 0) {
    aug.jitter = {
      brightness: 1 + s * (2 * u[3] - 1),
      contrast: 1 + s * (2 * u[4] - 1),
      saturation: 1 + s * (2 * u[5] - 1),
    };
  }
  return aug;
}

/** Size of the augmented image. */
export function augmentedSize(
  height: number,
  width: number,
  aug: Augmentation | undefined,
): { height: number; width: number } {
  return ((aug?.rot90 ?? 0) & 1) === 1 ? { height: width, width: height } : { height, width };
}

/**
 * Where augmented pixel (r, c) comes from in the source:
 *   row = r0 + rr·r + rc·c,   col = c0 + cr·r + cc·c   (coefficients in {−1, 0, 1}).
 */
export interface GridMap {
  r0: number;
  rr: number;
  rc: number;
  c0: number;
  cr: number;
  cc: number;
}

/** The grid map of an augmentation of a source image of height × width. */
export function gridMap(height: number, width: number, aug: Augmentation | undefined): GridMap {
  // First undo the rotation: (r, c) in the rotated image → (r1, c1) in the flipped image.
  let m: GridMap;
  switch (aug?.rot90 ?? 0) {
    case 1: // out[r][c] = in[c][W−1−r]
      m = { r0: 0, rr: 0, rc: 1, c0: width - 1, cr: -1, cc: 0 };
      break;
    case 2: // out[r][c] = in[H−1−r][W−1−c]
      m = { r0: height - 1, rr: -1, rc: 0, c0: width - 1, cr: 0, cc: -1 };
      break;
    case 3: // out[r][c] = in[H−1−c][r]
      m = { r0: height - 1, rr: 0, rc: -1, c0: 0, cr: 1, cc: 0 };
      break;
    default:
      m = { r0: 0, rr: 1, rc: 0, c0: 0, cr: 0, cc: 1 };
  }
  // Then undo the flips: row → H−1−row, col → W−1−col.
  if (aug?.flipV) m = { ...m, r0: height - 1 - m.r0, rr: -m.rr, rc: -m.rc };
  if (aug?.flipH) m = { ...m, c0: width - 1 - m.c0, cr: -m.cr, cc: -m.cc };
  return m;
}

export interface Rect {
  top: number;
  left: number;
  rows: number;
  cols: number;
}

/** The source rectangle that holds exactly the pixels of an augmented rectangle. */
export function sourceRect(m: GridMap, r: Rect): Rect {
  const r1 = r.top + r.rows - 1;
  const c1 = r.left + r.cols - 1;
  const rowA = m.r0 + m.rr * r.top + m.rc * r.left;
  const rowB = m.r0 + m.rr * r1 + m.rc * c1;
  const colA = m.c0 + m.cr * r.top + m.cc * r.left;
  const colB = m.c0 + m.cr * r1 + m.cc * c1;
  return {
    top: Math.min(rowA, rowB),
    left: Math.min(colA, colB),
    rows: Math.abs(rowB - rowA) + 1,
    cols: Math.abs(colB - colA) + 1,
  };
}

/**
 * Copies the augmented rectangle `out` from `src`, the uint8 pixels (HWC) of source rectangle
 * `srcRect` (as returned by `sourceRect`). Channels are unchanged.
 */
export function remapRegion(
  src: Uint8Array,
  srcRect: Rect,
  channels: number,
  m: GridMap,
  out: Rect,
): Uint8Array {
  // Without flips or rotation the source rectangle already is the region.
  if (m.rr === 1 && m.cc === 1 && m.r0 === 0 && m.c0 === 0) return src;
  const dst = new Uint8Array(out.rows * out.cols * channels);
  // Source offset of augmented pixel (r, c), stepped incrementally along c and r.
  const stepC = (m.rc * srcRect.cols + m.cc) * channels;
  const stepR = (m.rr * srcRect.cols + m.cr) * channels;
  let rowStart =
    ((m.r0 + m.rr * out.top + m.rc * out.left - srcRect.top) * srcRect.cols +
      (m.c0 + m.cr * out.top + m.cc * out.left - srcRect.left)) *
    channels;
  let d = 0;
  for (let r = 0; r < out.rows; r++) {
    let s = rowStart;
    for (let c = 0; c < out.cols; c++) {
      for (let k = 0; k < channels; k++) dst[d++] = src[s + k] as number;
      s += stepC;
    }
    rowStart += stepR;
  }
  return dst;
}
