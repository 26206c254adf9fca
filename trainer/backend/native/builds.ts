// The native TensorFlow builds tilestream provides (`tilestream setup tensorflow [--gpu]`) and where
// they live. Pure path and key logic plus one small read of the pin files: the trainer uses it to
// find a build at start-up, the setup command to place one. Nothing here downloads or compiles.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type NativeVariant = 'cpu' | 'gpu';

/** TensorFlow release whose C API the addon links; the wheels are pinned in <variant>/requirements.txt. */
export const TENSORFLOW_VERSION = '2.21.0';
/** tfjs-node(-gpu) release whose addon sources and JavaScript are built (pinned in <variant>/package-lock.json). */
export const TFJS_NODE_VERSION = '4.22.0';

export interface NativeBuildSpec {
  readonly variant: NativeVariant;
  /** The npm package that provides the 'tensorflow' backend. */
  readonly npmPackage: '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu';
  /** The PyPI project whose wheel carries libtensorflow_cc.so.2 and the C API headers. */
  readonly wheelProject: 'tensorflow-cpu' | 'tensorflow';
  /** Folder in the repository with package.json, package-lock.json and requirements.txt. */
  readonly pinDir: string;
}

const HERE = import.meta.dirname;

export const NATIVE_BUILDS: Record<NativeVariant, NativeBuildSpec> = {
  cpu: {
    variant: 'cpu',
    npmPackage: '@tensorflow/tfjs-node',
    wheelProject: 'tensorflow-cpu',
    pinDir: join(HERE, 'cpu'),
  },
  gpu: {
    variant: 'gpu',
    npmPackage: '@tensorflow/tfjs-node-gpu',
    wheelProject: 'tensorflow',
    pinDir: join(HERE, 'gpu'),
  },
};

/** Preference order when both are built: a GPU build runs on CPU too, but is only built for GPU nodes. */
export const VARIANT_PREFERENCE: readonly NativeVariant[] = ['gpu', 'cpu'];

/** Overrides the cache root (the images set it to a folder inside the image). */
export const CACHE_ENV = 'TILESTREAM_TENSORFLOW_CACHE';

/** The folder holding the builds: $TILESTREAM_TENSORFLOW_CACHE, else the user's cache folder. */
export function cacheRoot(env: Record<string, string | undefined> = process.env): string {
  const explicit = env[CACHE_ENV];
  if (explicit !== undefined && explicit.trim() !== '') return explicit;
  const xdg = env.XDG_CACHE_HOME;
  const base = xdg !== undefined && xdg.trim() !== '' ? xdg : join(homedir(), '.cache');
  return join(base, 'tilestream', 'tensorflow');
}

/** Files whose content decides a build: change a pin and the key (so the folder) changes. */
export const PIN_FILES = ['package.json', 'package-lock.json', 'requirements.txt'] as const;

/**
 * The folder name of a build: variant, versions and a digest of the pin files, so a new pin never
 * reuses an old build and two checkouts with the same pins share one.
 */
export function buildKey(spec: NativeBuildSpec): string {
  const h = createHash('sha256');
  for (const f of PIN_FILES) h.update(readFileSync(join(spec.pinDir, f)));
  return `${spec.variant}-tf${TENSORFLOW_VERSION}-tfjs${TFJS_NODE_VERSION}-${h.digest('hex').slice(0, 12)}`;
}

/** Written last into a finished build: its presence is what "built" means. */
export const STAMP_FILE = 'tilestream-build.json';

export interface BuildStamp {
  variant: NativeVariant;
  key: string;
  tensorflowVersion: string;
  tfjsNodeVersion: string;
  npmPackage: string;
  wheel: string;
  wheelSha256: string;
  node: string;
  builtAt: string;
  buildSeconds: number;
  /** Bytes on disk of the build folder. */
  bytes: number;
}

export interface LocatedBuild {
  dir: string;
  spec: NativeBuildSpec;
  stamp: BuildStamp;
}

/** The finished build of `variant` under the cache root, or undefined when it was never built. */
export function locateBuild(
  variant: NativeVariant,
  env: Record<string, string | undefined> = process.env,
): LocatedBuild | undefined {
  const spec = NATIVE_BUILDS[variant];
  const dir = join(cacheRoot(env), buildKey(spec));
  const stampPath = join(dir, STAMP_FILE);
  if (!existsSync(stampPath)) return undefined;
  const stamp = JSON.parse(readFileSync(stampPath, 'utf8')) as BuildStamp;
  return { dir, spec, stamp };
}

/** The builds present, most preferred first. */
export function locateBuilds(env: Record<string, string | undefined> = process.env): LocatedBuild[] {
  return VARIANT_PREFERENCE.map((v) => locateBuild(v, env)).filter((b) => b !== undefined);
}
