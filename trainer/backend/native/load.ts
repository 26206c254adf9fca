// Loads a built tfjs-node(-gpu) package (builds.ts) into this process, after the two things it
// needs from its host: the util helpers Node 23 removed, and thread counts from the CPU allowance.
import { createRequire } from 'node:module';
import util from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { cpuAllowance } from '../cpu-allowance.ts';
import type { LocatedBuild } from './builds.ts';

/**
 * tfjs-node 4.22.0 (dist/nodejs_kernel_backend.js, dist/kernels/TopK.js) calls
 * util.isNullOrUndefined, which Node 23 removed: every Conv2D then fails with "isNullOrUndefined is
 * not a function". Putting the function back on the shared util module before the package loads
 * fixes it without editing installed files; it is a no-op on a Node that still has it.
 */
export function restoreRemovedUtilHelpers(): void {
  const u = util as unknown as Record<string, unknown>;
  if (typeof u.isNullOrUndefined !== 'function') {
    u.isNullOrUndefined = (v: unknown): boolean => v === null || v === undefined;
  }
  // Still there but deprecated: each call from the package prints DEP0044 into the training log.
  if (u.isArray !== Array.isArray) u.isArray = Array.isArray;
}

/**
 * TensorFlow sizes its thread pools from the machine's cores unless TF_NUM_INTRAOP_THREADS /
 * TF_NUM_INTEROP_THREADS are set when the context is created (it reads them then). Sets them from
 * the CPU allowance unless the user set them. Returns what TensorFlow will use.
 */
export function setTensorflowThreads(env: NodeJS.ProcessEnv = process.env): {
  intraOp: number;
  interOp: number;
  source: string;
} {
  const allowance = cpuAllowance();
  let source = allowance.source;
  if (env.TF_NUM_INTRAOP_THREADS === undefined) env.TF_NUM_INTRAOP_THREADS = String(allowance.cpus);
  else source = 'TF_NUM_INTRAOP_THREADS';
  // Eager ops run one at a time from JavaScript, so a small inter-op pool is enough.
  env.TF_NUM_INTEROP_THREADS ??= String(Math.min(2, allowance.cpus));
  // TensorFlow's INFO lines (CPU features, oneDNN notes) would fill every training log; warnings stay.
  env.TF_CPP_MIN_LOG_LEVEL ??= '1';
  return {
    intraOp: Number(env.TF_NUM_INTRAOP_THREADS),
    interOp: Number(env.TF_NUM_INTEROP_THREADS),
    source,
  };
}

export interface NativeBackendFacts {
  variant: LocatedBuild['spec']['variant'];
  tensorflowVersion: string;
  /** True when TensorFlow placed the context on a GPU (tfjs-node picks the first GPU it lists). */
  gpu: boolean;
  threads: { intraOp: number; interOp: number; source: string };
  dir: string;
}

/**
 * Loads the build's package (which registers the 'tensorflow' backend factory on tfjs-core's
 * global registry, shared with this project's tfjs-core copy).
 */
export function loadBuild(build: Pick<LocatedBuild, 'dir' | 'spec'>): {
  threads: NativeBackendFacts['threads'];
} {
  restoreRemovedUtilHelpers();
  const threads = setTensorflowThreads();
  // The package is CommonJS under the build folder, outside this project's node_modules.
  createRequire(`${build.dir}/package.json`)(build.spec.npmPackage);
  return { threads };
}

/** What the active 'tensorflow' backend reports about itself (call after setBackend). */
export function activeTensorflowFacts(
  build: LocatedBuild,
  threads: NativeBackendFacts['threads'],
): NativeBackendFacts {
  // The backend object is tfjs-node's NodeJSKernelBackend; only these two fields are read.
  const backend = tf.backend() as unknown as {
    isUsingGpuDevice?: boolean;
    binding?: { TF_Version?: string };
  };
  return {
    variant: build.spec.variant,
    tensorflowVersion: backend.binding?.TF_Version ?? build.stamp.tensorflowVersion,
    gpu: backend.isUsingGpuDevice === true,
    threads,
    dir: build.dir,
  };
}
