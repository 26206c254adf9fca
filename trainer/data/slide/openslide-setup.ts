// `tilestream setup openslide`: fetches the pinned openslide-bin wheel from PyPI with pip
// (--require-hashes, no dependencies, binary only: no Python code runs), takes libopenslide.so.1
// out of it, checks that it loads and reports the pinned OpenSlide version, and renames the staging
// folder into place with a stamp. Warm, it only reads the stamp. A failed or interrupted run leaves
// nothing that looks installed.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openslideVersionOf } from './openslide.ts';
import {
  type LocatedOpenslide,
  locateOpenslide,
  OPENSLIDE_BIN,
  OPENSLIDE_LIB_ENV,
  OPENSLIDE_STAMP_FILE,
  type OpenslideStamp,
  openslideCacheRoot,
  openslideDir,
} from './openslide-lib.ts';

/** Exit code of `setup openslide` when a prerequisite is missing (as `setup tensorflow`: suites skip, CI fails). */
export const EXIT_PREREQUISITES = 2;

/** A tool the setup needs is missing (python3 with pip), or the CPU has no pinned wheel. */
export class OpenslidePrerequisiteError extends Error {
  override name = 'OpenslidePrerequisiteError';
}

export class OpenslideSetupError extends Error {
  override name = 'OpenslideSetupError';
}

export type OpenslideSetupResult =
  | { status: 'present'; located: LocatedOpenslide }
  | { status: 'installed'; located: LocatedOpenslide; seconds: number };

export interface OpenslideSetupOptions {
  env?: Record<string, string | undefined>;
  force?: boolean;
  progress?: (line: string) => void;
}

export function setupOpenslide(o: OpenslideSetupOptions = {}): OpenslideSetupResult {
  const env = o.env ?? process.env;
  const progress = o.progress ?? (() => {});
  if (env[OPENSLIDE_LIB_ENV]?.trim()) {
    throw new OpenslideSetupError(
      `${OPENSLIDE_LIB_ENV} is set (${env[OPENSLIDE_LIB_ENV]}), so the trainer uses that library and ` +
        'this setup would have no effect; unset it to use the pinned openslide-bin build',
    );
  }
  const present = locateOpenslide(env);
  if (present !== undefined && o.force !== true) return { status: 'present', located: present };
  const wheel = OPENSLIDE_BIN.wheels[process.arch];
  if (wheel === undefined) {
    throw new OpenslidePrerequisiteError(
      `no openslide-bin wheel is pinned for ${process.arch}; install OpenSlide 4 yourself and set ${OPENSLIDE_LIB_ENV}`,
    );
  }
  const pip = spawnSync('python3', ['-m', 'pip', '--version'], { env: env as NodeJS.ProcessEnv });
  if (pip.status !== 0) {
    throw new OpenslidePrerequisiteError(
      'python3 with pip is needed to fetch the openslide-bin wheel from PyPI; on Debian/Ubuntu: ' +
        'apt-get install python3 python3-pip',
    );
  }
  const t0 = Date.now();
  const root = openslideCacheRoot(env);
  mkdirSync(root, { recursive: true });
  const final = openslideDir(env);
  const stage = join(root, `.staging-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(stage);
  try {
    const requirements = join(stage, 'requirements.txt');
    writeFileSync(
      requirements,
      `${OPENSLIDE_BIN.project}==${OPENSLIDE_BIN.version} --hash=sha256:${wheel.sha256}\n`,
    );
    progress(`downloading ${OPENSLIDE_BIN.project} ${OPENSLIDE_BIN.version} (${wheel.platform}) from PyPI`);
    const download = spawnSync(
      'python3',
      [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--require-hashes',
        '--only-binary=:all:',
        '--platform',
        wheel.platform,
        '-r',
        requirements,
        '-d',
        stage,
      ],
      { env: env as NodeJS.ProcessEnv, encoding: 'utf8' },
    );
    if (download.status !== 0) {
      throw new OpenslideSetupError(`pip download failed: ${(download.stderr ?? '').trim().slice(-2000)}`);
    }
    const file = readdirSync(stage).find((f) => f.endsWith('.whl'));
    if (file === undefined) throw new OpenslideSetupError('pip reported success but left no wheel');
    // A wheel is a zip; Python's zipfile is the unzip that pip's presence guarantees.
    const unzip = spawnSync(
      'python3',
      [
        '-c',
        'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))',
        join(stage, file),
        OPENSLIDE_BIN.member,
        join(stage, 'libopenslide.so.1'),
      ],
      { encoding: 'utf8' },
    );
    if (unzip.status !== 0) {
      throw new OpenslideSetupError(`cannot take ${OPENSLIDE_BIN.member} out of ${file}: ${unzip.stderr}`);
    }
    rmSync(join(stage, file));
    rmSync(requirements);
    const version = openslideVersionOf(join(stage, 'libopenslide.so.1'));
    if (version !== OPENSLIDE_BIN.openslideVersion) {
      throw new OpenslideSetupError(
        `the library reports OpenSlide ${version}, the pin says ${OPENSLIDE_BIN.openslideVersion}`,
      );
    }
    const stamp: OpenslideStamp = {
      project: OPENSLIDE_BIN.project,
      version: OPENSLIDE_BIN.version,
      wheelSha256: wheel.sha256,
      openslideVersion: version,
      installedAt: new Date().toISOString(),
    };
    writeFileSync(join(stage, OPENSLIDE_STAMP_FILE), `${JSON.stringify(stamp, null, 2)}\n`);
    if (existsSync(final)) rmSync(final, { recursive: true, force: true });
    renameSync(stage, final);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  const located = locateOpenslide(env);
  if (located === undefined)
    throw new OpenslideSetupError(`installed into ${final} but its stamp is missing`);
  return { status: 'installed', located, seconds: (Date.now() - t0) / 1000 };
}
