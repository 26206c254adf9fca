// The OpenSlide C library (version 4) through koffi: open a slide, its levels and properties, and
// regions read into RGB on the slide's background. The library comes from `tilestream setup
// openslide` (openslide-lib.ts); it is loaded on first use, so a run without slides never loads it.
// Errors are OpenslideError with the C library's own message; the reader turns them into
// ImageError naming the slide.
import koffi, { type LibraryHandle } from 'koffi';
import { locateOpenslide, OPENSLIDE_LIB_ENV } from './openslide-lib.ts';

/** The library is missing or unusable: a setup problem, not a bad slide. */
export class OpenslideUnavailableError extends Error {
  override name = 'OpenslideUnavailableError';
}

/** OpenSlide refused a file or failed while reading it. */
export class OpenslideError extends Error {
  override name = 'OpenslideError';
  /** True when OpenSlide does not recognise the format at all (openslide_detect_vendor is NULL). */
  readonly unsupported: boolean;
  constructor(message: string, unsupported = false) {
    super(message);
    this.unsupported = unsupported;
  }
}

type Fn = ReturnType<LibraryHandle['func']>;
interface Api {
  version: Fn;
  detectVendor: Fn;
  open: Fn;
  close: Fn;
  getError: Fn;
  levelCount: Fn;
  levelDimensions: Fn;
  levelDownsample: Fn;
  propertyNames: Fn;
  propertyValue: Fn;
  readRegion: Fn;
}

const apis = new Map<string, Api>();

function bind(library: string): Api {
  const known = apis.get(library);
  if (known) return known;
  let lib: LibraryHandle;
  try {
    lib = koffi.load(library);
  } catch (e) {
    throw new OpenslideUnavailableError(
      `cannot load the OpenSlide library ${library}: ${(e as Error).message}. ` +
        `Run 'tilestream setup openslide' again, or point ${OPENSLIDE_LIB_ENV} at a libopenslide 4.`,
      { cause: e },
    );
  }
  // One opaque type per process: koffi refuses a second definition of the same name.
  const handle = koffi.pointer(apis.size === 0 ? koffi.opaque('openslide_t') : koffi.opaque());
  const api: Api = {
    version: lib.func('const char *openslide_get_version()'),
    detectVendor: lib.func('const char *openslide_detect_vendor(const char *filename)'),
    open: lib.func('openslide_open', handle, ['const char *']),
    close: lib.func('openslide_close', 'void', [handle]),
    getError: lib.func('openslide_get_error', 'const char *', [handle]),
    levelCount: lib.func('openslide_get_level_count', 'int32_t', [handle]),
    levelDimensions: lib.func('openslide_get_level_dimensions', 'void', [
      handle,
      'int32_t',
      koffi.out(koffi.pointer('int64_t')),
      koffi.out(koffi.pointer('int64_t')),
    ]),
    levelDownsample: lib.func('openslide_get_level_downsample', 'double', [handle, 'int32_t']),
    propertyNames: lib.func('openslide_get_property_names', 'void *', [handle]),
    propertyValue: lib.func('openslide_get_property_value', 'const char *', [handle, 'const char *']),
    readRegion: lib.func('openslide_read_region', 'void', [
      handle,
      koffi.out(koffi.pointer('uint32_t')),
      'int64_t',
      'int64_t',
      'int32_t',
      'int64_t',
      'int64_t',
    ]),
  };
  apis.set(library, api);
  return api;
}

/** The library located by openslide-lib.ts, bound. */
function api(): Api {
  const located = locateOpenslide();
  if (located === undefined) {
    throw new OpenslideUnavailableError(
      "the OpenSlide library is not set up; run 'tilestream setup openslide' (it fetches the pinned " +
        `openslide-bin wheel from PyPI into a cache folder), or point ${OPENSLIDE_LIB_ENV} at a libopenslide 4`,
    );
  }
  return bind(located.library);
}

/** The version string the library at `library` reports (the setup's check that it loads). */
export function openslideVersionOf(library: string): string {
  return bind(library).version() as string;
}

/** Whether the located library can be used, with the reason when not. */
export function openslideAvailability(): { ok: true; version: string } | { ok: false; reason: string } {
  try {
    return { ok: true, version: api().version() as string };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

export interface SlideLevel {
  width: number;
  height: number;
  /** Level-0 pixels per pixel of this level, as OpenSlide reports it. */
  downsample: number;
}

/**
 * An open slide. Reads may overlap (OpenSlide handles are thread-safe); close() waits for the reads
 * in flight — freeing the handle under a read on koffi's thread would crash the process.
 */
export class Slide {
  readonly path: string;
  readonly vendor: string;
  readonly levels: readonly SlideLevel[];
  #api: Api;
  #osr: unknown;
  #inflight = 0;
  #closing = false;

  private constructor(path: string, vendor: string, a: Api, osr: unknown) {
    this.path = path;
    this.vendor = vendor;
    this.#api = a;
    this.#osr = osr;
    this.#check();
    const count = a.levelCount(osr) as number;
    const levels: SlideLevel[] = [];
    for (let i = 0; i < count; i++) {
      const w = [0];
      const h = [0];
      a.levelDimensions(osr, i, w, h);
      levels.push({
        width: Number(w[0]),
        height: Number(h[0]),
        downsample: a.levelDownsample(osr, i) as number,
      });
    }
    this.#check();
    if (levels.length === 0) throw new OpenslideError('the slide has no levels');
    this.levels = levels;
  }

  /** Opens a slide; throws OpenslideError (unsupported or broken) or OpenslideUnavailableError. */
  static open(path: string): Slide {
    const a = api();
    const vendor = a.detectVendor(path) as string | null;
    if (vendor === null) {
      // A 3DHISTECH slide is the .mrxs plus a folder of the same name (Slidedat.ini, Data*.dat);
      // without the folder OpenSlide does not recognise the .mrxs at all.
      const mirax = /\.mrxs$/i.test(path)
        ? `; a .mrxs slide needs its companion folder ${path.replace(/\.mrxs$/i, '')}/ (Slidedat.ini and the Data*.dat files) beside it`
        : '';
      throw new OpenslideError(`OpenSlide does not recognise the file format${mirax}`, true);
    }
    const osr = a.open(path);
    if (osr === null) throw new OpenslideError(`OpenSlide could not open the ${vendor} slide`);
    try {
      return new Slide(path, vendor, a, osr);
    } catch (e) {
      a.close(osr);
      throw e;
    }
  }

  /** A property (e.g. 'openslide.mpp-x'), or undefined. */
  property(name: string): string | undefined {
    const v = this.#api.propertyValue(this.#live(), name) as string | null;
    return v ?? undefined;
  }

  /** Every property name the slide has. */
  propertyNames(): string[] {
    const ptr = this.#api.propertyNames(this.#live());
    const names: string[] = [];
    if (ptr === null) return names;
    // A NULL-terminated array of C strings: decode one element at a time until NULL.
    for (let i = 0; i < 100_000; i++) {
      const item = koffi.decode(ptr, i * koffi.sizeof('void *'), 'const char *') as string | null;
      if (item === null) break;
      names.push(item);
    }
    return names;
  }

  /**
   * Premultiplied ARGB pixels (native-endian uint32, A in the top byte) of a `width` × `height`
   * region of `level` whose top-left is (x0, y0) in level-0 coordinates. Runs on koffi's worker
   * thread, so reads of several slides (or tiles) overlap with training.
   */
  readArgb(x0: number, y0: number, level: number, width: number, height: number): Promise<Uint32Array> {
    const osr = this.#live();
    const dest = new Uint32Array(width * height);
    this.#inflight++;
    return new Promise((resolve, reject) => {
      this.#api.readRegion.async(osr, dest, x0, y0, level, width, height, (err: unknown) => {
        this.#inflight--;
        if (this.#closing) {
          if (this.#inflight === 0) this.#release();
          reject(new Error(`${this.path}: slide closed during a read`));
          return;
        }
        if (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        try {
          this.#check();
          resolve(dest);
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  close(): void {
    if (this.#osr === undefined || this.#closing) return;
    this.#closing = true;
    if (this.#inflight === 0) this.#release();
  }

  #release(): void {
    if (this.#osr === undefined) return;
    this.#api.close(this.#osr);
    this.#osr = undefined;
  }

  #live(): unknown {
    if (this.#osr === undefined || this.#closing) throw new Error(`${this.path}: slide used after close()`);
    return this.#osr;
  }

  /** OpenSlide's error state is sticky: once set, the handle is unusable. */
  #check(): void {
    const err = this.#api.getError(this.#live()) as string | null;
    if (err !== null) throw new OpenslideError(err);
  }
}

/**
 * Composites premultiplied ARGB over an opaque background into RGB: out = C + bg·(255 − α)/255.
 * With premultiplied colour C = c·α/255 this is exactly "c over bg" (c·α + bg·(255 − α))/255,
 * without dividing by α first, which would round twice and is undefined at α = 0.
 */
export function compositeArgb(argb: Uint32Array, background: readonly [number, number, number]): Uint8Array {
  const out = new Uint8Array(argb.length * 3);
  const [br, bgc, bb] = background;
  for (let i = 0, o = 0; i < argb.length; i++, o += 3) {
    const p = argb[i] as number;
    const a = p >>> 24;
    const r = (p >>> 16) & 255;
    const g = (p >>> 8) & 255;
    const b = p & 255;
    if (a === 255) {
      out[o] = r;
      out[o + 1] = g;
      out[o + 2] = b;
    } else {
      const t = (255 - a) / 255;
      out[o] = Math.min(255, Math.round(r + br * t));
      out[o + 1] = Math.min(255, Math.round(g + bgc * t));
      out[o + 2] = Math.min(255, Math.round(b + bb * t));
    }
  }
  return out;
}
