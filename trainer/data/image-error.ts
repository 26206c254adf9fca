// Why an image could not be used. The dataset skips such images and counts them by reason, so the
// reasons are a small closed set (they become a metric label).

export const IMAGE_ERROR_REASONS = [
  'missing',
  'unreadable',
  'truncated',
  'wrong-size',
  'wrong-channels',
  'wrong-resolution',
] as const;

/**
 * - missing: no file at the path.
 * - unreadable: not a PNG, JPEG or TIFF (or, for slides, not a format OpenSlide reads), corrupt data,
 *   missing companion files (.mrxs), no permission, an unsupported pixel type.
 * - truncated: the file ends before its image data does (an interrupted copy or download).
 * - wrong-size: no image (pyramid level) of the requested height × width.
 * - wrong-channels: channels that cannot be converted to the requested ones.
 * - wrong-resolution: a slide without usable µm/px metadata (and no spec.data.slides.level), or one
 *   coarser than the requested µm/px.
 */
export type ImageErrorReason = (typeof IMAGE_ERROR_REASONS)[number];

export class ImageError extends Error {
  readonly path: string;
  readonly reason: ImageErrorReason;
  constructor(path: string, reason: ImageErrorReason, detail: string, options?: { cause?: unknown }) {
    super(`${path}: ${reason}: ${detail}`, options);
    this.name = 'ImageError';
    this.path = path;
    this.reason = reason;
  }
}
