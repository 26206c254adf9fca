// `tilestream setup tensorflow`: what a user sees when a build tool is missing, that a failed step
// leaves nothing behind, that a warm run is a no-op, and what decides whether a build is reused.
// The cold build itself runs in test/prepare.ts before the suites (its smoke check loads the
// backend and runs a conv), and every tensorflow suite then runs on its result.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import util from 'node:util';
import {
  buildKey,
  CACHE_ENV,
  cacheRoot,
  locateBuild,
  NATIVE_BUILDS,
} from '../../trainer/backend/native/builds.ts';
import { EXIT_PREREQUISITES } from '../../trainer/backend/native/cli.ts';
import { restoreRemovedUtilHelpers } from '../../trainer/backend/native/load.ts';
import { SetupError, setupTensorflow } from '../../trainer/backend/native/setup.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

const root = join(import.meta.dirname, '..', '..');
const cli = join(root, 'bin', 'tilestream.js');

function which(cmd: string): string {
  if (cmd === 'python3') {
    // The interpreter itself, not a version-manager shim that needs its own PATH.
    return spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], {
      encoding: 'utf8',
    }).stdout.trim();
  }
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} is needed by this test`);
  return r.stdout.trim();
}

/** A PATH holding only the named commands (as links to the real ones). */
function pathWith(dir: string, commands: string[]): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const c of commands) symlinkSync(which(c), join(bin, c));
  return bin;
}

describe('tilestream setup tensorflow', () => {
  it('names every missing prerequisite, exits 2 and leaves the cache untouched', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'setup-prereq-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cache = join(dir, 'cache');
    // python3 with pip and npm are there; make and the C++ compiler are not.
    const bin = pathWith(dir, ['python3', 'npm', 'sh']);
    const r = spawnSync(process.execPath, [cli, 'setup', 'tensorflow'], {
      env: { ...process.env, PATH: bin, CXX: '', [CACHE_ENV]: cache },
      encoding: 'utf8',
    });
    assert.equal(r.status, EXIT_PREREQUISITES, r.stderr);
    assert.match(r.stderr, /missing: make; a C\+\+ compiler \(g\+\+, or set CXX\)/);
    assert.match(r.stderr, /apt-get install python3 python3-pip make g\+\+/);
    assert.equal(existsSync(cache), false, 'nothing was created');
  });

  it('removes its staging folder when a step fails, so nothing looks built', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'setup-fail-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // A python3 that answers `-m pip --version` but whose downloads fail, as behind a refusing index.
    const fake = join(dir, 'fakebin');
    mkdirSync(fake);
    const real = which('python3');
    writeFileSync(
      join(fake, 'python3'),
      `#!/bin/sh\ncase "$*" in *"pip download"*) echo "ERROR: index refused" >&2; exit 1;; esac\nexec ${real} "$@"\n`,
      { mode: 0o755 },
    );
    const cache = join(dir, 'cache');
    const env = { ...process.env, PATH: `${fake}:${process.env.PATH}`, [CACHE_ENV]: cache };
    await assert.rejects(
      setupTensorflow({ variant: 'cpu', env }),
      (err: Error) =>
        err instanceof SetupError && /pip download .* failed .*index refused/s.test(err.message),
    );
    assert.deepEqual(readdirSync(cache), [], 'no staging folder and no build left behind');
    assert.equal(locateBuild('cpu', env), undefined);
  });

  it('is a quick no-op when the build is present', { skip: tensorflowSkip() }, (t) => {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [cli, 'setup', 'tensorflow', '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      status: string;
      dir: string;
      tensorflowVersion: string;
      bytes: number;
    };
    assert.equal(out.status, 'present');
    assert.equal(out.tensorflowVersion, '2.21.0');
    assert.equal(out.dir, locateBuild('cpu')?.dir);
    assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
    t.diagnostic(`cpu build: ${(out.bytes / 2 ** 20).toFixed(0)} MiB in ${out.dir}`);
  });
});

describe('native builds', () => {
  it('keys a build by its pins: changing a pin file gives a new folder', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'setup-key-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const spec = NATIVE_BUILDS.cpu;
    cpSync(spec.pinDir, dir, { recursive: true });
    const copy = { ...spec, pinDir: dir };
    assert.equal(buildKey(copy), buildKey(spec), 'same pins, same key');
    assert.match(buildKey(spec), /^cpu-tf2\.21\.0-tfjs4\.22\.0-[0-9a-f]{12}$/);
    writeFileSync(join(dir, 'requirements.txt'), 'tensorflow-cpu==2.22.0 --hash=sha256:00\n');
    assert.notEqual(buildKey(copy), buildKey(spec));
    assert.notEqual(buildKey(NATIVE_BUILDS.gpu), buildKey(spec));
  });

  it('takes the cache folder from TILESTREAM_TENSORFLOW_CACHE, else XDG_CACHE_HOME, else ~/.cache', () => {
    assert.equal(cacheRoot({ [CACHE_ENV]: '/opt/tf' }), '/opt/tf');
    assert.equal(cacheRoot({ XDG_CACHE_HOME: '/x' }), '/x/tilestream/tensorflow');
    assert.match(cacheRoot({}), /\/\.cache\/tilestream\/tensorflow$/);
  });

  it('pins every wheel by sha256 and every npm package by the lock file', () => {
    for (const spec of Object.values(NATIVE_BUILDS)) {
      const req = readFileSync(join(spec.pinDir, 'requirements.txt'), 'utf8');
      const lines = req.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
      assert.ok(lines.length >= 1);
      for (const l of lines) assert.match(l, /^[a-z0-9-]+==[0-9.]+ --hash=sha256:[0-9a-f]{64}$/, l);
      assert.ok(lines.some((l) => l.startsWith(`${spec.wheelProject}==2.21.0 `)));
    }
  });

  it("restores Node 23's removed util.isNullOrUndefined (tfjs-node 4.22 calls it in every conv)", () => {
    restoreRemovedUtilHelpers();
    const u = util as unknown as { isNullOrUndefined: (v: unknown) => boolean };
    assert.equal(u.isNullOrUndefined(null), true);
    assert.equal(u.isNullOrUndefined(undefined), true);
    assert.equal(u.isNullOrUndefined(0), false);
  });
});
