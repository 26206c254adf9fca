// Backend selection for the trainer: TensorFlow (libtensorflow through tfjs-node-gpu or
// tfjs-node) when installed, else wasm (XNNPACK, SIMD, one thread in Node), else the pure-JS cpu
// backend. Importing this module initialises nothing; `initBackend` does all the work.
import * as tf from '@tensorflow/tfjs-core';
import { activeProjectKernels, registerProjectKernels } from './kernels/registry.ts';
import { type LocatedBuild, locateBuild, NATIVE_BUILDS, type NativeVariant } from './native/builds.ts';
import {
  activeTensorflowFacts,
  loadBuild,
  type NativeBackendFacts,
  restoreRemovedUtilHelpers,
} from './native/load.ts';
import { ensureGradientsRegistered } from './tfjs-gradients.ts';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendName = Exclude<BackendChoice, 'auto'>;

/** The environment variable that picks the backend when the caller asks for 'auto' or nothing. */
export const BACKEND_ENV = 'TILESTREAM_BACKEND';

/** The wasm backend's heap size now (it only grows), or undefined on another backend. */
export function wasmHeapBytes(): number | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return backend.wasm?.HEAPU8?.buffer.byteLength;
}

/** Packages that provide the 'tensorflow' backend, in order of preference. */
export const TENSORFLOW_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

export interface BackendInfo {
  /** The backend that now runs. */
  name: BackendName;
  /** What was asked for, after applying TILESTREAM_BACKEND. */
  requested: BackendChoice;
  /** One sentence: why this backend, and why not the ones before it. */
  reason: string;
  /** Kernels the project registered on this backend (see kernels/registry.ts). */
  projectKernels: string[];
  /** On the tensorflow backend from a `tilestream setup tensorflow` build: which build, what it sees. */
  tensorflow?: NativeBackendFacts;
}

export type BackendLogger = (message: string, fields: Record<string, unknown>) => void;

export interface InitBackendOptions {
  /** Defaults to process.env; only TILESTREAM_BACKEND is read. */
  env?: Record<string, string | undefined>;
  log?: BackendLogger;
  /** Module loader for the optional packages; tests substitute it. Defaults to dynamic import. */
  importModule?: (specifier: string) => Promise<unknown>;
}

export function parseBackendChoice(value: string, source: string): BackendChoice {
  const v = value.trim().toLowerCase();
  if ((BACKEND_CHOICES as readonly string[]).includes(v)) return v as BackendChoice;
  throw new Error(`${source}: unknown backend '${value}'; expected one of ${BACKEND_CHOICES.join(', ')}`);
}

/**
 * Resolves the request: an explicit backend argument wins; 'auto' or no argument defers to
 * TILESTREAM_BACKEND, and that to 'auto'. So the env var refines a default without overriding
 * what a manifest or flag spelled out.
 */
export function resolveBackendChoice(
  requested: BackendChoice | undefined,
  env: Record<string, string | undefined>,
): { choice: BackendChoice; source: string } {
  if (requested !== undefined && requested !== 'auto') {
    return { choice: parseBackendChoice(requested, 'backend argument'), source: 'argument' };
  }
  const fromEnv = env[BACKEND_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    return { choice: parseBackendChoice(fromEnv, BACKEND_ENV), source: BACKEND_ENV };
  }
  return { choice: 'auto', source: requested === 'auto' ? 'argument' : 'default' };
}

class BackendUnavailable extends Error {}

/** The build the default loader loaded, with its thread settings, for the log. */
let loadedBuild: { build: LocatedBuild; threads: NativeBackendFacts['threads'] } | undefined;

const VARIANT_OF_PACKAGE: Record<string, NativeVariant> = Object.fromEntries(
  Object.values(NATIVE_BUILDS).map((b) => [b.npmPackage, b.variant]),
);

/**
 * Loads a module; the tensorflow packages come from a `tilestream setup tensorflow` build when one
 * exists (they are never in the project's node_modules: their installer downloads libtensorflow),
 * else from wherever Node resolves them, with Node 24's missing util helpers restored.
 */
const defaultImport = async (specifier: string): Promise<unknown> => {
  const variant = VARIANT_OF_PACKAGE[specifier];
  if (variant === undefined) return import(specifier);
  const build = locateBuild(variant);
  if (build !== undefined) {
    loadedBuild = { build, threads: loadBuild(build).threads };
    return {};
  }
  restoreRemovedUtilHelpers();
  try {
    return await import(specifier);
  } catch (err) {
    if (!isModuleNotFound(err, specifier)) throw err;
    throw Object.assign(
      new Error(
        `${specifier} is not built (run 'tilestream setup tensorflow${variant === 'gpu' ? ' --gpu' : ''}')`,
      ),
      { code: 'ERR_MODULE_NOT_FOUND' },
    );
  }
};

function isModuleNotFound(err: unknown, specifier: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    (e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND') &&
    typeof e.message === 'string' &&
    e.message.includes(specifier)
  );
}

async function startTensorflow(load: (s: string) => Promise<unknown>): Promise<string> {
  const missing: string[] = [];
  for (const pkg of TENSORFLOW_PACKAGES) {
    try {
      // A variable specifier keeps tsc and npm from needing the package (it is absent here).
      await load(pkg);
    } catch (err) {
      if (isModuleNotFound(err, pkg)) {
        missing.push(pkg);
        continue;
      }
      throw new BackendUnavailable(`${pkg} is installed but failed to load: ${String(err)}`);
    }
    if (tf.findBackendFactory('tensorflow') === null) {
      throw new BackendUnavailable(
        `${pkg} loaded but registered no 'tensorflow' backend with this @tensorflow/tfjs-core`,
      );
    }
    if (!(await tf.setBackend('tensorflow'))) {
      throw new BackendUnavailable(`${pkg} loaded but the 'tensorflow' backend failed to initialise`);
    }
    timeKernelsSynchronously(tf.backend());
    if (loadedBuild === undefined) return `${pkg} loaded`;
    const f = activeTensorflowFacts(loadedBuild.build, loadedBuild.threads);
    return (
      `${pkg} loaded (${f.variant} build, TensorFlow ${f.tensorflowVersion}, ` +
      `${f.gpu ? 'on a GPU' : 'on the CPU: TensorFlow sees no GPU'}, ${f.threads.intraOp} compute threads ` +
      `from ${f.threads.source}; ${f.dir})`
    );
  }
  throw new BackendUnavailable(
    `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not built (tilestream setup tensorflow [--gpu])`,
  );
}

/**
 * tfjs-node's backend.time() is async, so under tf.profile (the trainer profiles the first image of
 * each epoch) a kernel that throws, such as a TensorFlow OOM, only rejects a promise nobody awaits:
 * the process dies of an unhandled rejection, and the engine first fails on the outputs that never
 * came ("Cannot read properties of undefined (reading 'map')"), so the trainer exited 1, not 3.
 * Calling the kernel synchronously lets its own error propagate; the timing is the same.
 */
function timeKernelsSynchronously(backend: tf.KernelBackend): void {
  backend.time = (f: () => void): Promise<tf.BackendTimingInfo> => {
    const start = performance.now();
    f();
    return Promise.resolve({ kernelMs: performance.now() - start });
  };
}

async function startWasm(load: (s: string) => Promise<unknown>): Promise<string> {
  try {
    await load('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('setBackend returned false');
  } catch (err) {
    throw new BackendUnavailable(`the wasm backend failed to initialise: ${String(err)}`);
  }
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  return `wasm initialised (SIMD ${simd ? 'on' : 'off'}, ${threads ? 'multi-threaded' : 'one thread'})`;
}

async function startCpu(load: (s: string) => Promise<unknown>): Promise<string> {
  await load('@tensorflow/tfjs-backend-cpu');
  if (!(await tf.setBackend('cpu'))) throw new Error("the 'cpu' backend failed to initialise");
  return 'cpu initialised (pure JavaScript, slowest)';
}

const starters: Record<BackendName, (load: (s: string) => Promise<unknown>) => Promise<string>> = {
  tensorflow: startTensorflow,
  wasm: startWasm,
  cpu: startCpu,
};

let queue: Promise<unknown> = Promise.resolve();

/**
 * Picks, initialises and activates a TensorFlow.js backend, registers tfjs-core's gradients and
 * the project's kernels for it, and turns on production mode. Calls are serialised; calling again
 * with another backend switches (the tensors of the previous backend stay valid).
 */
export function initBackend(
  requested?: BackendChoice,
  options: InitBackendOptions = {},
): Promise<BackendInfo> {
  const run = queue.then(() => doInit(requested, options));
  queue = run.catch(() => undefined);
  return run;
}

async function doInit(
  requested: BackendChoice | undefined,
  options: InitBackendOptions,
): Promise<BackendInfo> {
  const { choice, source } = resolveBackendChoice(requested, options.env ?? process.env);
  const load = options.importModule ?? defaultImport;
  tf.enableProdMode(); // also suppresses the cpu backend's "use tfjs-node" banner
  await ensureGradientsRegistered();

  let name: BackendName;
  let reason: string;
  if (choice === 'auto') {
    const skipped: string[] = [];
    let picked: { name: BackendName; why: string } | undefined;
    for (const candidate of ['tensorflow', 'wasm', 'cpu'] as const) {
      try {
        picked = { name: candidate, why: await starters[candidate](load) };
        break;
      } catch (err) {
        if (!(err instanceof BackendUnavailable) || candidate === 'cpu') throw err;
        skipped.push(`${candidate}: ${err.message}`);
      }
    }
    if (picked === undefined) throw new Error('unreachable: the cpu backend neither started nor failed');
    name = picked.name;
    reason =
      `auto (${source}): ${picked.why}` + (skipped.length > 0 ? `; skipped ${skipped.join('; ')}` : '');
  } else {
    try {
      reason = `${choice} requested by ${source}: ${await starters[choice](load)}`;
    } catch (err) {
      if (!(err instanceof BackendUnavailable)) throw err;
      const hint =
        choice === 'tensorflow'
          ? `run 'tilestream setup tensorflow' (or 'setup tensorflow --gpu'; the trainer images have it), or set ${BACKEND_ENV}=wasm or cpu`
          : `set ${BACKEND_ENV}=cpu or pass another backend`;
      throw new Error(`backend '${choice}' requested by ${source} is unavailable: ${err.message}; ${hint}`);
    }
    name = choice;
  }
  registerProjectKernels(name);
  const info: BackendInfo = { name, requested: choice, reason, projectKernels: activeProjectKernels(name) };
  if (name === 'tensorflow' && loadedBuild !== undefined) {
    info.tensorflow = activeTensorflowFacts(loadedBuild.build, loadedBuild.threads);
  }
  options.log?.(`tensorflow.js backend: ${name}`, { ...info });
  return info;
}
