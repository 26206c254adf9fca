// The contract between the image readers (one module per format: image-tiff.ts, image-decoded.ts)
// and their users: what a caller asks for, what an opened image offers, and the pixel store each
// reader hands to image-source.ts. Types only.

import type * as tf from '@tensorflow/tfjs-core';
import type { TileSource } from '../streaming/executor.ts';
import type { Augmentation, Rect } from './augment.ts';
import type { ImageFormat } from './file-format.ts';
import type { ChannelConversion, Normalization } from './pixels.ts';
import type { SlideRequest } from './slide/slide-geometry.ts';
import type { Box } from './slide/tissue.ts';

export interface ImageOptions {
  /** Height × width the image must have (before augmentation); for a pyramid, the level to use. */
  height: number;
  width: number;
  /** Channels the network sees: 1 (grey) or 3 (RGB); other sources are converted (pixels.ts). */
  channels: 1 | 3;
  /** x → (x/255 − mean)/std per channel. Default: mean 0, std 1 (pixels scaled to [0, 1]). */
  normalization?: Normalization;
  augmentation?: Augmentation;
  /**
   * Read every image as a whole slide through OpenSlide (spec.data.slides): resolution by µm/px or
   * level, tissue crop, placement into height × width (slide/slide-geometry.ts).
   */
  slide?: SlideOptions;
}

/** spec.data.slides, plus where training saves each slide's tissue pictures. */
export interface SlideOptions extends SlideRequest {
  /**
   * Folder for `<slide>-<hash>.tissue.png` (thumbnail, tissue outline, crop), `.mask.png` and
   * `.json` (level, scale, placement, crop), written when a slide is first opened in a process.
   */
  reportDir?: string;
}

/** How a whole slide is read (spec.data.slides); for logs and `tilestream slides inspect`. */
export interface SlideDescription {
  /** OpenSlide's vendor: aperio, generic-tiff, dicom, hamamatsu, mirax, … */
  vendor: string;
  levels: { width: number; height: number; downsample: number }[];
  /** µm per level-0 pixel, when the slide says. */
  slideMicronsPerPixel?: { x: number; y: number };
  /** The level read, and level pixels per output pixel (1: no resampling). */
  level: number;
  scaleX: number;
  scaleY: number;
  /** µm per output pixel, when known. */
  micronsPerPixel?: number;
  placement: 'centred' | 'cropped' | 'downscaled';
  tissue: 'found' | 'none-found' | 'off';
  /** The tissue box at the output resolution, and where output pixel (0, 0) lies at that resolution. */
  tissueBox: Box;
  offsetX: number;
  offsetY: number;
  /** RGB that fills everything outside the tissue box and the slide. */
  background: number[];
}

export interface ImageLevel {
  page: number;
  width: number;
  height: number;
  tileWidth?: number;
  tileHeight?: number;
}

/** What was opened and how it is read; for logs. */
export interface ImageDescription {
  path: string;
  format: ImageFormat;
  /** 'regions': each read decodes only its rectangle (TIFF, slides); 'decoded': decoded once at open (PNG, JPEG). */
  access: 'regions' | 'decoded';
  /** TIFF: every page of the main chain, with tile sizes where tiled. */
  levels: ImageLevel[];
  /** TIFF: the page that is read (the one of the requested size). */
  page?: number;
  sourceChannels: number;
  channels: number;
  conversion: ChannelConversion;
  /** Size after augmentation (what reads address). */
  height: number;
  width: number;
  augmentation: Augmentation;
  /** Whole slides (format 'openslide'): level, resolution, tissue and placement. */
  slide?: SlideDescription;
}

/** A decoded or downsampled picture: HWC uint8. */
export interface Uint8Image {
  data: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

export interface ImageSource extends TileSource {
  readonly path: string;
  /** Size of the augmented image (height and width swap under an odd rot90). */
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  /** The normalised float32 region [1, rows, cols, C] of the augmented image; the caller disposes it. */
  read(top: number, left: number, rows: number, cols: number): Promise<tf.Tensor4D>;
  /** The same values as `read`, as a plain HWC array. */
  readFloat32(top: number, left: number, rows: number, cols: number): Promise<Float32Array>;
  /**
   * uint8 HWC pixels of a region of the augmented image, in the requested channels, before jitter
   * and normalisation: for saliency overlays and thumbnails.
   */
  readUint8Region(top: number, left: number, rows: number, cols: number): Promise<Uint8Array>;
  /** The augmented image box-downsampled by `factor`, read in bands of rows to keep memory flat. */
  readDownsampled(factor: number): Promise<Uint8Image>;
  describe(): ImageDescription;
  /** Frees the decoded pixels (PNG, JPEG). Reads after close throw. */
  close(): void;
}

/** Source pixels of the chosen image: HWC uint8 in the requested channels. */
export interface PixelStore {
  readRect(r: Rect): Promise<Uint8Array>;
  close(): void;
}

/** What a reader found out about a file, for makeSource and describe(). */
export interface SourceFacts {
  format: ImageFormat;
  access: 'regions' | 'decoded';
  levels: ImageLevel[];
  page?: number;
  sourceChannels: number;
  conversion: ChannelConversion;
  sourceHeight: number;
  sourceWidth: number;
  slide?: SlideDescription;
}
