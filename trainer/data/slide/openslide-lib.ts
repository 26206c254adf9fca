// Where the OpenSlide C library comes from and where it lives: the pinned PyPI wheel
// `openslide-bin` (a self-contained OpenSlide 4 build: its libopenslide.so.1 bundles libtiff,
// libjpeg, OpenJPEG, libdicom, sqlite…, so it needs nothing from the system but glibc ≥ 2.28).
// Debian ships OpenSlide 3.4.1, which reads no DICOM WSI; OpenSlide has no npm package. Pure path
// logic plus one small read of the stamp: the reader finds the library here, the setup command
// (openslide-setup.ts) places it. Nothing here downloads.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The pinned wheel, per CPU architecture (hashes from PyPI; pip checks them with --require-hashes). */
export const OPENSLIDE_BIN = {
  project: 'openslide-bin',
  version: '4.0.1.2',
  /** OpenSlide release inside the wheel, as openslide_get_version() reports it. */
  openslideVersion: '4.0.1',
  wheels: {
    x64: {
      platform: 'manylinux_2_28_x86_64',
      sha256: '8ac4aa3a2277ed5e218ca0019db65bdd6e853f865eb4edd3da00e2f4acf0c923',
    },
  } as Partial<Record<NodeJS.Architecture, { platform: string; sha256: string }>>,
  /** Path of the library inside the wheel. */
  member: 'openslide_bin/libopenslide.so.1',
} as const;

/** Overrides the cache root (the trainer images set it to a folder inside the image). */
export const OPENSLIDE_CACHE_ENV = 'TILESTREAM_OPENSLIDE_CACHE';
/** Uses this libopenslide instead of the cached one (e.g. a site build); version 4 is expected. */
export const OPENSLIDE_LIB_ENV = 'TILESTREAM_OPENSLIDE_LIB';

export const OPENSLIDE_STAMP_FILE = 'tilestream-openslide.json';

export interface OpenslideStamp {
  project: string;
  version: string;
  wheelSha256: string;
  /** What the library itself reported when the setup loaded it. */
  openslideVersion: string;
  installedAt: string;
}

/** $TILESTREAM_OPENSLIDE_CACHE, else <XDG cache or ~/.cache>/tilestream/openslide. */
export function openslideCacheRoot(env: Record<string, string | undefined> = process.env): string {
  const explicit = env[OPENSLIDE_CACHE_ENV];
  if (explicit !== undefined && explicit.trim() !== '') return explicit;
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg !== undefined && xdg.trim() !== '' ? xdg : join(homedir(), '.cache');
  return join(base, 'tilestream', 'openslide');
}

/** The folder of the pinned version: a new pin never reuses an old library. */
export function openslideDir(env: Record<string, string | undefined> = process.env): string {
  const wheel = OPENSLIDE_BIN.wheels[process.arch];
  const tag = wheel === undefined ? 'unsupported' : wheel.sha256.slice(0, 12);
  return join(
    openslideCacheRoot(env),
    `${OPENSLIDE_BIN.project}-${OPENSLIDE_BIN.version}-${process.arch}-${tag}`,
  );
}

export interface LocatedOpenslide {
  library: string;
  /** Undefined when the library came from $TILESTREAM_OPENSLIDE_LIB. */
  stamp?: OpenslideStamp;
}

/** The library to load, or undefined when `tilestream setup openslide` has not run. */
export function locateOpenslide(
  env: Record<string, string | undefined> = process.env,
): LocatedOpenslide | undefined {
  const explicit = env[OPENSLIDE_LIB_ENV];
  if (explicit !== undefined && explicit.trim() !== '') return { library: explicit };
  const dir = openslideDir(env);
  const stampPath = join(dir, OPENSLIDE_STAMP_FILE);
  if (!existsSync(stampPath)) return undefined;
  const stamp = JSON.parse(readFileSync(stampPath, 'utf8')) as OpenslideStamp;
  return { library: join(dir, 'libopenslide.so.1'), stamp };
}
