// Writes a DICOM WSI series from an .svs through PyPI's wsidicomizer, run as a Python subprocess:
// no npm package or C library here writes DICOM WSI. Lossless RGB JPEG 2000, one instance per level
// (OpenSlide 4.0.1 reads JPEG and JPEG 2000 DICOM, not JPEG-lossless); tiffslide is the source
// (opentile's would need the system's libturbojpeg). For `tilestream synth --format dicom` and the
// tests. wsidicomizer is found, never installed, here: TILESTREAM_WSIDICOMIZER_PYTHON, else the
// virtualenv test/prepare.ts makes in the tools cache, else the system's python3.
import { execFile, spawnSync } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/** The version the tests pin and the conversion was checked with. */
export const WSIDICOMIZER_VERSION = '0.26.1';
/** A python interpreter that can `import wsidicomizer`. */
export const WSIDICOMIZER_PYTHON_ENV = 'TILESTREAM_WSIDICOMIZER_PYTHON';
/** DICOM tiles: OpenSlide refuses edge tiles stored smaller, so every level's sides must be multiples. */
export const DICOM_TILE_SIZE = 256;

/** Where test/prepare.ts puts its virtualenv (the tools cache of test/tools.ts). */
export function toolsCacheWsidicomizerPython(env: Record<string, string | undefined> = process.env): string {
  const cache = env.TILESTREAM_TOOLS_CACHE ?? join(homedir(), '.cache', 'tilestream', 'tools');
  return join(cache, `wsidicomizer-${WSIDICOMIZER_VERSION}`, 'venv', 'bin', 'python');
}

/** The pythons to try, in order. */
export function wsidicomizerCandidates(env: Record<string, string | undefined> = process.env): string[] {
  const explicit = env[WSIDICOMIZER_PYTHON_ENV];
  if (explicit !== undefined && explicit.trim() !== '') return [explicit];
  return [toolsCacheWsidicomizerPython(env), 'python3'];
}

/** The first candidate python that imports wsidicomizer, or undefined. */
export function findWsidicomizer(env: Record<string, string | undefined> = process.env): string | undefined {
  return wsidicomizerCandidates(env).find(
    (python) => spawnSync(python, ['-c', 'import wsidicomizer'], { stdio: 'ignore' }).status === 0,
  );
}

/** What to tell a user without wsidicomizer. */
export const WSIDICOMIZER_MISSING =
  `DICOM WSI is written by PyPI's wsidicomizer, which no python here imports: ` +
  `'python3 -m venv V && V/bin/pip install wsidicomizer==${WSIDICOMIZER_VERSION}', then set ` +
  `${WSIDICOMIZER_PYTHON_ENV}=V/bin/python (or run 'node test/prepare.ts' in a checkout)`;

/** The conversion, as `python -c` text: argv svs, output folder, tile size. */
export const WSIDICOMIZER_CONVERT = `
import sys
from wsidicom.codec import Jpeg2kSettings
from wsidicom.codec.settings import Channels
from wsidicomizer import WsiDicomizer
from wsidicomizer.sources import TiffSlideSource
WsiDicomizer.convert(sys.argv[1], sys.argv[2], preferred_source=TiffSlideSource,
    encoding=Jpeg2kSettings(levels=[0], channels=Channels.RGB), tile_size=int(sys.argv[3]),
    add_missing_levels=True, include_label=False, include_overview=False, workers=1)
`;

/**
 * Converts `svs` into a DICOM WSI series in `outDir` (created; must not exist) with `python`.
 * Every level's sides should be multiples of `tileSize` (OpenSlide wants full tiles).
 */
export async function convertSvsToDicom(
  python: string,
  svs: string,
  outDir: string,
  tileSize = DICOM_TILE_SIZE,
): Promise<void> {
  try {
    await promisify(execFile)(python, ['-c', WSIDICOMIZER_CONVERT, svs, outDir, String(tileSize)], {
      maxBuffer: 16 * 2 ** 20,
    });
  } catch (e) {
    const stderr = String((e as { stderr?: unknown }).stderr ?? (e as Error).message);
    throw new Error(`wsidicomizer failed on ${svs}: ${stderr.slice(-2000)}`);
  }
}
