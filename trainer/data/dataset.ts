// Iterating a manifest for training: a seeded shuffle per epoch, images opened lazily, bad images
// reported and skipped, and a position that a checkpoint can save and a restart restore.
//
// Randomness is counter-based (random.ts): the order of epoch e is a function of (seed, e), and the
// augmentation of the item at position i of epoch e is a function of (seed, e, i). A position is
// therefore just (epoch, index) plus the bad-image count of the epoch so far; there is no generator
// state to save, and a resumed run draws exactly what the uninterrupted run would have drawn.

import { createHash } from 'node:crypto';
import { type Augmentation, type AugmentationPolicy, drawAugmentation } from './augment.ts';
import { type ImageOptions, type ImageSource, openImage } from './image.ts';
import { ImageError, type ImageErrorReason } from './image-error.ts';
import type { ManifestEntry } from './manifest.ts';
import { deriveSeed, mulberry32, permutation } from './random.ts';

/** Default `spec.data.maxBadImageFraction`. */
export const DEFAULT_MAX_BAD_FRACTION = 0.1;

export interface DatasetOptions {
  entries: readonly ManifestEntry[];
  /** Size, channels and normalisation of every image (augmentation comes from `augmentation`). */
  image: Omit<ImageOptions, 'augmentation'>;
  seed: number;
  /** Shuffle each epoch (default true; false for validation: manifest order). */
  shuffle?: boolean;
  /** Augmentations drawn per image (default none). */
  augmentation?: AugmentationPolicy;
  /** Fail when more than this fraction of an epoch's images is bad (default 0.1). */
  maxBadFraction?: number;
  /** Called for every skipped image; the trainer logs it and counts it in a metric. */
  onBadImage?: (bad: BadImage) => void;
  /** Name used in errors, e.g. 'training' or 'validation'. */
  name?: string;
  /**
   * Open the next image while the current one is used (default false): one more decoded image (or
   * open slide) in memory, which the plan's memory request already allows for.
   */
  openAhead?: boolean;
}

/** An image being opened, with what `items` yields beside it. */
interface Opening {
  index: number;
  entry: ManifestEntry;
  augmentation: Augmentation;
  image: Promise<ImageSource>;
}

export interface BadImage {
  path: string;
  relativePath: string;
  /** Manifest line of the image. */
  line: number;
  reason: ImageErrorReason;
  message: string;
  epoch: number;
  /** Position in the epoch's order. */
  index: number;
}

/** Where iteration stands: the next item to yield is at `index` of epoch `epoch`'s order. */
export interface DataPosition {
  epoch: number;
  index: number;
  /** Bad images met in this epoch before `index` (they count towards the threshold after a resume). */
  badInEpoch: number;
  /** The dataset's seed and a hash of its entries: a position only resumes the same data. */
  seed: number;
  fingerprint: string;
}

export interface DatasetItem {
  entry: ManifestEntry;
  label: number;
  epoch: number;
  /** Position in the epoch's order. */
  index: number;
  augmentation: Augmentation;
  /** The opened image; the consumer closes it. */
  image: ImageSource;
  /**
   * The position just after this item: save it once the item's work is done. A method, because a
   * later `reportBad` for this item changes the bad count it carries.
   */
  positionAfter(): DataPosition;
}

/** Too many bad images in one epoch. */
export class TooManyBadImagesError extends Error {
  readonly bad: number;
  readonly total: number;
  constructor(message: string, bad: number, total: number) {
    super(message);
    this.name = 'TooManyBadImagesError';
    this.bad = bad;
    this.total = total;
  }
}

export class Dataset {
  readonly size: number;
  readonly #o: DatasetOptions;
  readonly #maxBad: number;
  readonly #fingerprint: string;
  #epoch = 0;
  #index = 0;
  /** Bad images of this epoch before a restored position (only their count is saved)... */
  #badBeforeRestore = 0;
  /** ...and the positions found bad since. */
  #badIndices = new Set<number>();
  #recentBad: BadImage[] = [];
  #order: { epoch: number; perm: Uint32Array } | undefined;

  constructor(options: DatasetOptions) {
    if (options.entries.length === 0) {
      throw new Error(`the ${options.name ? `${options.name} ` : ''}dataset has no images`);
    }
    if (!Number.isSafeInteger(options.seed) || options.seed < 0) {
      throw new RangeError(`the dataset seed must be a non-negative integer, got ${options.seed}`);
    }
    const maxBad = options.maxBadFraction ?? DEFAULT_MAX_BAD_FRACTION;
    if (!(maxBad >= 0 && maxBad <= 1))
      throw new RangeError(`maxBadFraction must be in [0, 1], got ${maxBad}`);
    this.#o = options;
    this.#maxBad = maxBad;
    this.size = options.entries.length;
    this.#fingerprint = fingerprint(options.entries);
  }

  /** Where the next item comes from. */
  position(): DataPosition {
    return this.#positionAt(this.#epoch, this.#index);
  }

  /** Continues from a saved position. Refuses a position taken on other data or with another seed. */
  restore(p: DataPosition): void {
    if (p.seed !== this.#o.seed || p.fingerprint !== this.#fingerprint) {
      throw new Error(
        `the saved data position belongs to ${p.seed !== this.#o.seed ? `seed ${p.seed}, not ${this.#o.seed}` : 'another manifest (its entries differ)'}; ` +
          'resume with the same data and seed, or start from scratch',
      );
    }
    if (
      !Number.isSafeInteger(p.epoch) ||
      p.epoch < 0 ||
      !Number.isSafeInteger(p.index) ||
      p.index < 0 ||
      p.index > this.size
    ) {
      throw new RangeError(
        `invalid data position epoch ${p.epoch}, index ${p.index} (dataset of ${this.size})`,
      );
    }
    this.#epoch = p.epoch;
    this.#index = p.index;
    this.#badBeforeRestore = p.badInEpoch;
    this.#badIndices.clear();
  }

  /** The order of an epoch: entry indices. */
  order(epoch: number): Uint32Array {
    if (this.#order?.epoch !== epoch) {
      const n = this.size;
      let perm: Uint32Array;
      if (this.#o.shuffle === false) {
        perm = new Uint32Array(n);
        for (let i = 0; i < n; i++) perm[i] = i;
      } else {
        perm = permutation(n, mulberry32(deriveSeed(this.#o.seed, 'shuffle', epoch)));
      }
      this.#order = { epoch, perm };
    }
    return this.#order.perm;
  }

  /** The augmentation of position `index` of `epoch` (what `items` attaches). */
  augmentationAt(epoch: number, index: number): Augmentation {
    const policy = this.#o.augmentation;
    if (!policy) return {};
    return drawAugmentation(
      policy,
      mulberry32(deriveSeed(this.#o.seed, 'augment', epoch, index)),
      this.#o.image,
    );
  }

  /**
   * The items of `epoch`, from the saved index when the position is in that epoch, else from its
   * start. Bad images are reported and skipped. When the epoch is done the position moves to the
   * start of the next one. With `openAhead`, the next image is opened (decoded, or a slide's
   * thumbnail and tissue read) while the consumer works on the current one; the position, the
   * order and the bad-image reports are the same, since an image is only taken — or found bad —
   * when iteration reaches it. An image opened ahead and never reached is closed. With `take`, only
   * the positions it accepts are opened and yielded (a rank's share of every batch); the others are
   * passed over unopened, and the position still moves through them.
   */
  async *items(epoch: number, take?: (index: number) => boolean): AsyncGenerator<DatasetItem> {
    if (epoch !== this.#epoch) this.#startEpoch(epoch);
    const order = this.order(epoch);
    const open = (index: number): Opening => {
      const entry = this.#o.entries[order[index] as number] as ManifestEntry;
      const augmentation = this.augmentationAt(epoch, index);
      const image = openImage(entry.path, { ...this.#o.image, augmentation });
      image.catch(() => {}); // reported when iteration reaches it
      return { index, entry, augmentation, image };
    };
    let ahead: Opening | undefined;
    const next = (from: number): number => {
      let i = from;
      while (take && i < this.size && !take(i)) i++;
      return i;
    };
    try {
      for (;;) {
        this.#index = next(this.#index);
        if (this.#index >= this.size) break;
        const index = this.#index;
        const current = ahead?.index === index ? ahead : open(index);
        ahead = undefined;
        let image: ImageSource;
        try {
          image = await current.image;
        } catch (e) {
          if (!(e instanceof ImageError)) throw e;
          this.#index++;
          this.#skip(current.entry, e, epoch, index);
          continue;
        }
        this.#index++;
        if (this.#o.openAhead === true && next(this.#index) < this.size) ahead = open(next(this.#index));
        yield {
          entry: current.entry,
          label: current.entry.label,
          epoch,
          index,
          augmentation: current.augmentation,
          image,
          positionAfter: () => this.#positionAt(epoch, index + 1),
        };
      }
    } finally {
      ahead?.image.then(
        (img) => img.close(),
        () => {},
      );
    }
    this.#startEpoch(epoch + 1);
  }

  #startEpoch(epoch: number): void {
    this.#epoch = epoch;
    this.#index = 0;
    this.#badBeforeRestore = 0;
    this.#badIndices.clear();
  }

  /** Bad images of the current epoch at positions before `index`. */
  #badBefore(index: number): number {
    let n = this.#badBeforeRestore;
    for (const i of this.#badIndices) if (i < index) n++;
    return n;
  }

  /**
   * Reports an image that failed after it was opened (a TIFF tile that does not decode): counted
   * like a bad image at open. The caller drops the work done on it.
   */
  reportBad(item: DatasetItem, error: ImageError): void {
    this.#skip(item.entry, error, item.epoch, item.index);
  }

  /** Bad images reported in the current epoch (the latest 100). */
  badImages(): readonly BadImage[] {
    return this.#recentBad;
  }

  #skip(entry: ManifestEntry, e: ImageError, epoch: number, index: number): void {
    const bad: BadImage = {
      path: entry.path,
      relativePath: entry.relativePath,
      line: entry.line,
      reason: e.reason,
      message: e.message,
      epoch,
      index,
    };
    if (epoch !== this.#epoch || this.#badIndices.has(index)) return;
    this.#badIndices.add(index);
    this.#recentBad.push(bad);
    if (this.#recentBad.length > 100) this.#recentBad.shift();
    this.#o.onBadImage?.(bad);
    // The small epsilon keeps "exactly 10 % bad" within a 0.1 threshold despite rounding.
    const badCount = this.#badBeforeRestore + this.#badIndices.size;
    if (badCount > this.#maxBad * this.size + 1e-9) {
      const name = this.#o.name ? `${this.#o.name} ` : '';
      const reasons = new Map<string, number>();
      for (const b of this.#recentBad)
        if (b.epoch === epoch) reasons.set(b.reason, (reasons.get(b.reason) ?? 0) + 1);
      const summary = [...reasons].map(([r, n]) => `${n} ${r}`).join(', ');
      throw new TooManyBadImagesError(
        `${badCount} of the ${this.size} ${name}images are bad in epoch ${epoch} (${summary}; latest: ${e.message}), ` +
          `more than the allowed fraction ${this.#maxBad}. Fix or remove them from the manifest, ` +
          'or raise spec.data.maxBadImageFraction.',
        badCount,
        this.size,
      );
    }
  }

  #positionAt(epoch: number, index: number): DataPosition {
    const badInEpoch = epoch === this.#epoch ? this.#badBefore(index) : 0;
    return { epoch, index, badInEpoch, seed: this.#o.seed, fingerprint: this.#fingerprint };
  }
}

/** A short hash of the entries (paths and labels in order). */
function fingerprint(entries: readonly ManifestEntry[]): string {
  const h = createHash('sha256');
  for (const e of entries) h.update(`${e.relativePath}\t${e.label}\n`);
  return h.digest('hex').slice(0, 16);
}
