// DICOM WSI for the slide tests: PyPI's wsidicomizer (with wsidicom, tiffslide and their wheels) in a
// virtualenv under the tools cache, made by test/prepare.ts (`node test/wsidicomizer.ts`), and a
// conversion of an .svs into a DICOM WSI series with lossless JPEG 2000 (RGB, so pixels survive
// exactly): the script of trainer/data/slide/dicom-writer.ts, which `tilestream synth --format
// dicom` runs with this virtualenv's python when it finds it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WSIDICOMIZER_CONVERT, WSIDICOMIZER_VERSION } from '../trainer/data/slide/dicom-writer.ts';
import { TOOLS_CACHE } from './tools.ts';

export const WSIDICOMIZER = {
  version: WSIDICOMIZER_VERSION,
  dir: join(TOOLS_CACHE, `wsidicomizer-${WSIDICOMIZER_VERSION}`),
} as const;
const python = join(WSIDICOMIZER.dir, 'venv', 'bin', 'python');
const stamp = join(WSIDICOMIZER.dir, 'ready');

/** Exit code of `node test/wsidicomizer.ts` when python3 with venv and pip is missing. */
export const EXIT_NO_PYTHON = 2;

/** Why DICOM WSI cannot be made here, or undefined when it can. */
export function wsidicomizerMissing(): string | undefined {
  return existsSync(stamp)
    ? undefined
    : `wsidicomizer is not set up in ${WSIDICOMIZER.dir} (test/prepare.ts does it)`;
}

/**
 * Converts `svs` into a DICOM WSI series in `outDir` (created; must not exist). OpenSlide wants full
 * tiles, so every level's sides should be multiples of `tileSize`.
 */
export function convertToDicom(svs: string, outDir: string, tileSize = 256): void {
  const r = spawnSync(python, ['-c', WSIDICOMIZER_CONVERT, svs, outDir, String(tileSize)], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`wsidicomizer failed on ${svs}: ${r.stderr.slice(-2000)}`);
}

function setup(): number {
  if (existsSync(stamp)) return 0;
  const probe = spawnSync('python3', ['-c', 'import venv, ensurepip'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    process.stderr.write(
      'wsidicomizer: python3 with venv and ensurepip is needed (apt-get install python3-venv)\n',
    );
    return EXIT_NO_PYTHON;
  }
  rmSync(WSIDICOMIZER.dir, { recursive: true, force: true });
  mkdirSync(WSIDICOMIZER.dir, { recursive: true });
  const venv = spawnSync('python3', ['-m', 'venv', join(WSIDICOMIZER.dir, 'venv')], { stdio: 'inherit' });
  const pip =
    venv.status === 0 &&
    spawnSync(python, ['-m', 'pip', 'install', '--quiet', `wsidicomizer==${WSIDICOMIZER.version}`], {
      stdio: 'inherit',
    }).status === 0;
  if (!pip) {
    rmSync(WSIDICOMIZER.dir, { recursive: true, force: true });
    process.stderr.write(
      'wsidicomizer: creating the virtualenv or installing from PyPI failed (see above)\n',
    );
    return 1;
  }
  writeFileSync(stamp, `wsidicomizer ${WSIDICOMIZER.version}\n`);
  return 0;
}

if (import.meta.main) process.exitCode = setup();
