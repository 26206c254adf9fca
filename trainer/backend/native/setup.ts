// `tilestream setup tensorflow [--gpu]`: builds @tensorflow/tfjs-node(-gpu)'s addon against the
// libraries of a pinned PyPI TensorFlow wheel, into the cache folder of builds.ts. The npm part is
// installed from this folder's lock file with scripts off (the package's own install script would
// download libtensorflow 2.9.1 from a bucket), the wheel by pip with --require-hashes, and the addon
// compiled by node-gyp against the headers of the Node that runs this. Everything happens in a
// staging folder renamed into place at the end, so a failed or interrupted run leaves nothing that
// looks built. Facts behind each step: /work/shared/docs/tensorflow-native.md.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import {
  type BuildStamp,
  buildKey,
  cacheRoot,
  type LocatedBuild,
  locateBuild,
  NATIVE_BUILDS,
  type NativeVariant,
  STAMP_FILE,
  TENSORFLOW_VERSION,
  TFJS_NODE_VERSION,
} from './builds.ts';

/** The wheel tags to fetch: any cp312 manylinux x86_64 file; only selects files, no Python runs. */
const WHEEL_PLATFORM_ARGS = [
  '--only-binary=:all:',
  '--python-version',
  '3.12',
  '--implementation',
  'cp',
  '--abi',
  'cp312',
  ...[
    'manylinux_2_27_x86_64',
    'manylinux_2_17_x86_64',
    'manylinux2014_x86_64',
    'manylinux_2_12_x86_64',
  ].flatMap((p) => ['--platform', p]),
];

/** N-API version the addon is built for: the highest tfjs-node 4.22 lists. */
const NAPI_VERSION = 8;

export class SetupPrerequisiteError extends Error {
  override name = 'SetupPrerequisiteError';
  readonly missing: string[];
  constructor(missing: string[]) {
    super(
      `cannot build the native TensorFlow backend here; missing: ${missing.join('; ')}. ` +
        `On Debian/Ubuntu: apt-get install python3 python3-pip make g++ (pip may also come from pyenv or a venv)`,
    );
    this.missing = missing;
  }
}

export class SetupError extends Error {
  override name = 'SetupError';
}

export interface SetupOptions {
  variant: NativeVariant;
  env?: Record<string, string | undefined>;
  /** Rebuild even when a finished build is present. */
  force?: boolean;
  /** Progress lines ("downloading …", "compiling …"). */
  progress?: (line: string) => void;
}

export type SetupResult =
  | { status: 'present'; build: LocatedBuild }
  | { status: 'built'; build: LocatedBuild; seconds: number };

function which(cmd: string, env: Record<string, string | undefined>): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { env: env as NodeJS.ProcessEnv }).status === 0;
}

/**
 * The Node installation whose headers (include/node/common.gypi) the addon compiles against: the
 * running Node's own (an official binary distribution ships them), else the npm package `node` that
 * pins the project's runtime (its node-<os>-<arch> package is that distribution, with a hard-linked
 * binary, so execPath does not lead there). node-gyp would otherwise download headers from nodejs.org.
 */
export function nodeDirOf(execPath: string): string | undefined {
  const pinned = join(
    import.meta.dirname,
    '..',
    '..',
    '..',
    'node_modules',
    'node',
    'node_modules',
    `node-${process.platform}-${process.arch}`,
  );
  const candidates = [dirname(dirname(realpathSync(execPath))), pinned];
  return candidates.find((dir) => {
    if (!existsSync(join(dir, 'include', 'node', 'common.gypi'))) return false;
    if (dir !== pinned) return true;
    const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
    return `v${version}` === process.version;
  });
}

/** Every missing prerequisite at once, so a user installs them in one go. */
export function missingPrerequisites(env: Record<string, string | undefined>): string[] {
  const missing: string[] = [];
  const pip = spawnSync('python3', ['-m', 'pip', '--version'], { env: env as NodeJS.ProcessEnv });
  if (pip.error !== undefined) missing.push('python3 (node-gyp and pip run on it)');
  else if (pip.status !== 0)
    missing.push('pip for python3 (python3 -m pip fails; it fetches the TensorFlow wheel)');
  if (!which('make', env)) missing.push('make');
  const cxx = env.CXX;
  if (cxx !== undefined && cxx !== '' ? !which(cxx, env) : !which('g++', env) && !which('c++', env)) {
    missing.push('a C++ compiler (g++, or set CXX)');
  }
  if (!which('npm', env)) missing.push('npm');
  if (nodeDirOf(process.execPath) === undefined) {
    missing.push(
      `the Node headers (include/node/common.gypi) beside ${process.execPath}; run with the Node of an ` +
        'official binary distribution, e.g. through npx or the project npm scripts',
    );
  }
  return missing;
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env: Record<string, string | undefined>; what: string },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const keep = (d: Buffer): void => {
      out = (out + d.toString()).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) =>
      reject(new SetupError(`${opts.what}: could not start ${cmd}: ${err.message}`)),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new SetupError(
            `${opts.what} failed (${cmd} ${signal ? `killed by ${signal}` : `exit ${code}`}); its last output:\n${out}`,
          ),
        );
    });
  });
}

/** Files of the wheel the addon needs: the two libraries and the C API headers (≈ 0.75 MB of them). */
const TENSORFLOW_MEMBERS = [
  'tensorflow/libtensorflow_cc.so.2',
  'tensorflow/libtensorflow_framework.so.2',
  'tensorflow/include/tensorflow/c/',
  'tensorflow/include/tensorflow/core/platform/ctstring',
  'tensorflow/include/tsl/platform/ctstring',
  'tensorflow/include/xla/tsl/c/',
];

// Extracts the named members (prefixes) of the wheels into site/, as pip would lay them out in
// site-packages, so TensorFlow's $ORIGIN/../nvidia/<lib>/lib search paths resolve. Python is already
// a prerequisite (pip, node-gyp), so its zipfile does the unpacking.
const UNZIP_PY = `
import sys, zipfile, os
dest, prefixes, wheels = sys.argv[1], sys.argv[2].split(','), sys.argv[3:]
n = 0
for w in wheels:
    with zipfile.ZipFile(w) as z:
        for m in z.namelist():
            if m.endswith('/') or not any(m.startswith(p) for p in prefixes):
                continue
            z.extract(m, dest)
            n += 1
print(n)
`;

/** Bytes on disk below `dir`, each file once (the deps/ links lead back into site/). */
function dirBytes(dir: string): number {
  let total = 0;
  const seen = new Set<string>();
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const st = statSync(join(e.parentPath, e.name));
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) continue;
    seen.add(id);
    total += st.size;
  }
  return total;
}

function wheelOf(downloads: string, project: string): string {
  const prefix = `${project.replaceAll('-', '_')}-${TENSORFLOW_VERSION}-`;
  const file = readdirSync(downloads).find((f) => f.startsWith(prefix) && f.endsWith('.whl'));
  if (file === undefined)
    throw new SetupError(`pip reported success but no ${prefix}*.whl is in ${downloads}`);
  return join(downloads, file);
}

function pinnedHash(requirements: string, project: string): string {
  const line = requirements.split('\n').find((l) => l.startsWith(`${project}==`));
  const m = line === undefined ? null : /--hash=sha256:([0-9a-f]{64})/.exec(line);
  if (m?.[1] === undefined) throw new SetupError(`requirements.txt pins no sha256 for ${project}`);
  return m[1];
}

/**
 * Builds the variant unless a finished build is present. Throws SetupPrerequisiteError (before
 * touching anything) when the machine lacks a tool, SetupError when a step fails; in both cases no
 * build folder is left behind.
 */
export async function setupTensorflow(o: SetupOptions): Promise<SetupResult> {
  const env = o.env ?? process.env;
  const say = o.progress ?? (() => undefined);
  const present = locateBuild(o.variant, env);
  if (present !== undefined && o.force !== true) return { status: 'present', build: present };

  const missing = missingPrerequisites(env);
  if (missing.length > 0) throw new SetupPrerequisiteError(missing);
  const nodeDir = nodeDirOf(process.execPath) as string;

  const spec = NATIVE_BUILDS[o.variant];
  const key = buildKey(spec);
  const root = cacheRoot(env);
  const final = join(root, key);
  const stage = join(root, `.staging-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const t0 = Date.now();
  mkdirSync(stage, { recursive: true });
  try {
    // 1. The JavaScript packages and node-gyp, exactly as locked, with no install scripts.
    for (const f of ['package.json', 'package-lock.json']) copyFileSync(join(spec.pinDir, f), join(stage, f));
    say(`installing ${spec.npmPackage}@${TFJS_NODE_VERSION} and node-gyp from the lock file (scripts off)`);
    await run('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: stage,
      env,
      what: 'npm ci of the pinned tfjs-node packages',
    });

    // 2. The wheel(s), checked against the pinned hashes.
    const requirements = join(spec.pinDir, 'requirements.txt');
    const downloads = join(stage, 'downloads');
    say(
      `downloading ${spec.wheelProject}==${TENSORFLOW_VERSION}` +
        (o.variant === 'gpu' ? ' and the CUDA 12 user-space wheels (≈ 3.3 GB)' : ' (≈ 274 MB)') +
        ' from PyPI, hashes checked',
    );
    await run(
      'python3',
      [
        '-m',
        'pip',
        'download',
        '--no-deps',
        '--require-hashes',
        '--disable-pip-version-check',
        ...WHEEL_PLATFORM_ARGS,
        '-r',
        requirements,
        '-d',
        downloads,
      ],
      { env, what: `pip download of ${requirements}` },
    );
    const wheel = wheelOf(downloads, spec.wheelProject);
    const site = join(stage, 'site');
    const wheels = readdirSync(downloads)
      .filter((f) => f.endsWith('.whl'))
      .map((f) => join(downloads, f));
    say(`unpacking the libraries and C API headers of ${wheels.length} wheel(s)`);
    const prefixes = o.variant === 'gpu' ? [...TENSORFLOW_MEMBERS, 'nvidia/'] : TENSORFLOW_MEMBERS;
    await run('python3', ['-c', UNZIP_PY, site, prefixes.join(','), ...wheels], {
      env,
      what: 'unpacking the wheels',
    });
    rmSync(downloads, { recursive: true, force: true });
    const tfDir = join(site, 'tensorflow');
    for (const lib of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) {
      if (!existsSync(join(tfDir, lib))) throw new SetupError(`${lib} is not in ${wheel}`);
    }
    // Debug symbols are 220 MB of the 853; the stripped libraries pass the same checks.
    if (which('strip', env)) {
      say('stripping the libraries');
      await run('strip', ['--strip-unneeded', 'libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'], {
        cwd: tfDir,
        env,
        what: 'strip',
      });
    }
    // Linker names for binding.gyp's -ltensorflow -ltensorflow_framework; the addon then records
    // libtensorflow_cc.so.2 itself, which is found through its $ORIGIN/../../deps/lib rpath.
    symlinkSync('libtensorflow_cc.so.2', join(tfDir, 'libtensorflow.so'));
    symlinkSync('libtensorflow_framework.so.2', join(tfDir, 'libtensorflow_framework.so'));

    // 3. The addon. deps/ points at the unpacked wheel with relative links (the build folder is
    // renamed afterwards) to directories (the CUDA build finds its CUDA libraries relative to
    // the real location of libtensorflow_cc.so.2).
    const pkgDir = join(stage, 'node_modules', ...spec.npmPackage.split('/'));
    const deps = join(pkgDir, 'deps');
    rmSync(deps, { recursive: true, force: true });
    mkdirSync(deps);
    symlinkSync(relative(deps, tfDir), join(deps, 'lib'));
    symlinkSync(relative(deps, join(tfDir, 'include')), join(deps, 'include'));
    const jobs = Math.max(1, Math.min(availableParallelism(), 8));
    say(`compiling the addon against TensorFlow ${TENSORFLOW_VERSION} (≈ 1 minute on 2 cores)`);
    await run(
      process.execPath,
      [
        join(stage, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
        'rebuild',
        `--directory=${pkgDir}`,
        `--nodedir=${nodeDir}`,
        `--jobs=${jobs}`,
        `--napi_build_version=${NAPI_VERSION}`,
        '--module_name=tfjs_binding',
        `--module_path=${join(pkgDir, 'lib', `napi-v${NAPI_VERSION}`)}`,
      ],
      { env: { ...env, npm_config_nodedir: nodeDir }, what: 'node-gyp rebuild of the tfjs addon' },
    );
    const addon = join(pkgDir, 'lib', `napi-v${NAPI_VERSION}`, 'tfjs_binding.node');
    if (!existsSync(addon)) throw new SetupError(`node-gyp succeeded but ${addon} is missing`);
    rmSync(join(pkgDir, 'build'), { recursive: true, force: true });
    // node-gyp is a build tool: it does not belong in a trainer image (deletes only; no network).
    await run(
      'npm',
      ['prune', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
      {
        cwd: stage,
        env,
        what: 'npm prune of the build tools',
      },
    );

    // 4. Prove it loads before calling it built: a child process (a failed dlopen must not take
    // this process with it) runs one op and prints the TensorFlow version.
    say('checking that the built backend loads and runs an op');
    await run(process.execPath, [join(import.meta.dirname, 'smoke.ts'), stage, o.variant], {
      env,
      what: 'loading the built backend',
    });

    const stamp: BuildStamp = {
      variant: o.variant,
      key,
      tensorflowVersion: TENSORFLOW_VERSION,
      tfjsNodeVersion: TFJS_NODE_VERSION,
      npmPackage: spec.npmPackage,
      wheel: wheel.split('/').pop() as string,
      wheelSha256: pinnedHash(readFileSync(requirements, 'utf8'), spec.wheelProject),
      node: process.version,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - t0) / 1000),
      bytes: dirBytes(stage),
    };
    writeFileSync(join(stage, STAMP_FILE), `${JSON.stringify(stamp, null, 2)}\n`);
    if (existsSync(final)) rmSync(final, { recursive: true, force: true }); // --force, or a stampless leftover
    try {
      renameSync(stage, final);
    } catch (err) {
      // Another setup finished first: its build is as good as ours.
      const other = locateBuild(o.variant, env);
      if (other === undefined) throw err;
      rmSync(stage, { recursive: true, force: true });
      return { status: 'present', build: other };
    }
  } catch (err) {
    rmSync(stage, { recursive: true, force: true });
    throw err;
  }
  const build = locateBuild(o.variant, env);
  if (build === undefined) throw new SetupError(`the build was moved to ${final} but its stamp is missing`);
  // Builds of this variant from older pins are ≈ 0.9 GB (CPU) to 6 GB (GPU) each and nothing uses
  // them any more (a checkout still on the old pins builds again).
  for (const name of readdirSync(root)) {
    if (name.startsWith(`${o.variant}-`) && name !== key) {
      say(`removing the build of older pins ${join(root, name)}`);
      rmSync(join(root, name), { recursive: true, force: true });
    }
  }
  return { status: 'built', build, seconds: (Date.now() - t0) / 1000 };
}
