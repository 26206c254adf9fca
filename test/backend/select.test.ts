import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { cpuAllowance } from '../../trainer/backend/cpu-allowance.ts';
import {
  PROJECT_KERNELS,
  registerProjectKernels,
  restoreStockKernels,
} from '../../trainer/backend/kernels/registry.ts';
import { locateBuilds, TENSORFLOW_VERSION } from '../../trainer/backend/native/builds.ts';
import {
  BACKEND_ENV,
  type BackendInfo,
  initBackend,
  parseBackendChoice,
  resolveBackendChoice,
} from '../../trainer/backend/select.ts';
import { gradientsRegistered } from '../../trainer/backend/tfjs-gradients.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

// Runs first (node:test keeps file order): nothing may be set up by importing the modules.
describe('importing trainer/backend', () => {
  it('initialises no backend and registers no kernel or gradient', () => {
    assert.deepEqual(Object.keys(tf.engine().registry), []);
    assert.equal(gradientsRegistered(), false);
    assert.equal(tf.getKernel('Conv2DBackpropFilter', 'wasm'), undefined);
  });
});

function notFound(specifier: string): Error {
  return Object.assign(new Error(`Cannot find package '${specifier}' imported from /x.ts`), {
    code: 'ERR_MODULE_NOT_FOUND',
  });
}

/** A loader where the tensorflow packages behave as given and everything else loads for real. */
function loader(tfjsNode: 'absent' | 'present' | 'broken', log: string[] = []) {
  return async (specifier: string): Promise<unknown> => {
    log.push(specifier);
    if (specifier === '@tensorflow/tfjs-node-gpu') throw notFound(specifier);
    if (specifier === '@tensorflow/tfjs-node') {
      if (tfjsNode === 'absent') throw notFound(specifier);
      if (tfjsNode === 'broken') throw new Error('libtensorflow.so.2: cannot open shared object file');
      // Stands in for tfjs-node: registers a backend named 'tensorflow' (here the cpu backend).
      const { MathBackendCPU } = await import('@tensorflow/tfjs-backend-cpu');
      if (tf.findBackendFactory('tensorflow') === null)
        tf.registerBackend('tensorflow', () => new MathBackendCPU());
      return {};
    }
    return import(specifier);
  };
}

describe('resolveBackendChoice', () => {
  it('lets an explicit argument win over TILESTREAM_BACKEND', () => {
    assert.deepEqual(resolveBackendChoice('cpu', { [BACKEND_ENV]: 'wasm' }), {
      choice: 'cpu',
      source: 'argument',
    });
  });
  it('lets TILESTREAM_BACKEND refine auto or no argument', () => {
    assert.equal(resolveBackendChoice('auto', { [BACKEND_ENV]: 'wasm' }).choice, 'wasm');
    assert.equal(resolveBackendChoice(undefined, { [BACKEND_ENV]: ' CPU ' }).choice, 'cpu');
    assert.deepEqual(resolveBackendChoice(undefined, {}), { choice: 'auto', source: 'default' });
  });
  it('names the variable and the allowed values for a bad value', () => {
    assert.throws(
      () => resolveBackendChoice(undefined, { [BACKEND_ENV]: 'webgl' }),
      /TILESTREAM_BACKEND: unknown backend 'webgl'; expected one of auto, tensorflow, wasm, cpu/,
    );
    assert.throws(() => parseBackendChoice('gpu', 'spec.training.backend'), /spec\.training\.backend/);
  });
});

describe('initBackend', () => {
  it('auto picks wasm when no tensorflow package is installed, and says why', async () => {
    const logged: Array<[string, Record<string, unknown>]> = [];
    const tried: string[] = [];
    const info = await initBackend(undefined, {
      env: {},
      importModule: loader('absent', tried),
      log: (m, f) => logged.push([m, f]),
    });
    assert.equal(info.name, 'wasm');
    assert.equal(info.requested, 'auto');
    assert.equal(tf.getBackend(), 'wasm');
    assert.match(
      info.reason,
      /tfjs-node-gpu and @tensorflow\/tfjs-node are not built \(tilestream setup tensorflow \[--gpu\]\)/,
    );
    assert.match(info.reason, /SIMD on/);
    assert.deepEqual(tried.slice(0, 3), [
      '@tensorflow/tfjs-node-gpu',
      '@tensorflow/tfjs-node',
      '@tensorflow/tfjs-backend-wasm',
    ]);
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.[1].name, 'wasm');
    assert.ok(gradientsRegistered(), 'tfjs-core gradients are registered');
    assert.ok(tf.env().getBool('PROD'), 'production mode is on');
  });

  it('honours TILESTREAM_BACKEND when the argument is auto', async () => {
    const info = await initBackend('auto', { env: { [BACKEND_ENV]: 'cpu' }, importModule: loader('absent') });
    assert.equal(info.name, 'cpu');
    assert.match(info.reason, /cpu requested by TILESTREAM_BACKEND/);
    assert.equal(tf.getBackend(), 'cpu');
  });

  it("auto prefers 'tensorflow' when tfjs-node loads", async () => {
    const info = await initBackend('auto', { env: {}, importModule: loader('present') });
    assert.equal(info.name, 'tensorflow');
    assert.match(info.reason, /@tensorflow\/tfjs-node loaded/);
    assert.equal(tf.getBackend(), 'tensorflow');
    // The four convolution gradients that tfjs-node gets wrong and the two-op ReLU gradient mask
    // (trainer/kernels/tensorflow-explicit-padding.ts), and the fused ops every backend gets.
    assert.deepEqual(info.projectKernels, [
      'Conv2DBackpropFilter',
      'Conv2DBackpropInput',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
      'Step',
      'TilestreamGelu',
      'TilestreamLayerNorm',
    ]);
    tf.removeBackend('tensorflow');
  });

  it("refuses an explicit 'tensorflow' without the package, naming what to install", async () => {
    await assert.rejects(
      initBackend('tensorflow', { env: {}, importModule: loader('absent') }),
      /backend 'tensorflow' requested by argument is unavailable: .*not built .*; run 'tilestream setup tensorflow'/,
    );
  });

  it('reports an installed tensorflow package that fails to load, and auto moves on', async () => {
    await assert.rejects(
      initBackend('tensorflow', { env: {}, importModule: loader('broken') }),
      /@tensorflow\/tfjs-node is installed but failed to load: .*libtensorflow/,
    );
    const info = await initBackend('auto', { env: {}, importModule: loader('broken') });
    assert.equal(info.name, 'wasm');
    assert.match(info.reason, /skipped tensorflow: @tensorflow\/tfjs-node is installed but failed to load/);
  });

  it('auto falls back to cpu when wasm cannot start, and an explicit wasm request says what to do', async () => {
    const noWasm = async (specifier: string): Promise<unknown> => {
      if (specifier === '@tensorflow/tfjs-backend-wasm')
        throw new Error('WebAssembly.instantiate(): out of memory');
      return loader('absent')(specifier);
    };
    const info = await initBackend('auto', { env: {}, importModule: noWasm });
    assert.equal(info.name, 'cpu');
    assert.match(info.reason, /skipped .*wasm: the wasm backend failed to initialise: .*out of memory/);
    await assert.rejects(
      initBackend('wasm', { env: {}, importModule: noWasm }),
      /backend 'wasm' requested by argument is unavailable: .*out of memory; set TILESTREAM_BACKEND=cpu/,
    );
  });

  it('is idempotent: a second call registers nothing new and keeps the same kernels', async () => {
    const first: BackendInfo = await initBackend('wasm', { env: {} });
    const funcs = PROJECT_KERNELS.filter((k) => k.backendName === 'wasm').map(
      (k) => tf.getKernel(k.kernelName, 'wasm')?.kernelFunc,
    );
    const second = await initBackend('wasm', { env: {} });
    assert.deepEqual(second.projectKernels, first.projectKernels);
    assert.deepEqual(registerProjectKernels('wasm'), []);
    assert.deepEqual(
      PROJECT_KERNELS.filter((k) => k.backendName === 'wasm').map(
        (k) => tf.getKernel(k.kernelName, 'wasm')?.kernelFunc,
      ),
      funcs,
    );
  });

  it('restoreStockKernels puts the replaced stock kernel back and removes added ones', async () => {
    await initBackend('wasm', { env: {} });
    const ours = tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc;
    restoreStockKernels('wasm');
    const stock = tf.getKernel('Conv2DBackpropInput', 'wasm');
    assert.ok(stock !== undefined && stock.kernelFunc !== ours, 'stock Conv2DBackpropInput is back');
    assert.equal(
      tf.getKernel('Conv2DBackpropFilter', 'wasm'),
      undefined,
      'wasm has no stock Conv2DBackpropFilter',
    );
    // The stock kernel still works (its wasm setup ran when the backend initialised).
    const dx = tf.tidy(() =>
      Array.from(
        tf
          .conv2dTranspose(
            tf.ones([1, 2, 2, 1]) as tf.Tensor4D,
            tf.ones([2, 2, 1, 1]) as tf.Tensor4D,
            [1, 3, 3, 1],
            1,
            'valid',
          )
          .dataSync(),
      ),
    );
    assert.deepEqual(dx, [1, 2, 1, 2, 4, 2, 1, 2, 1]);
    assert.deepEqual(registerProjectKernels('wasm').length, 10);
  });

  it('trains through a conv on both backends after switching back and forth', async () => {
    for (const name of ['cpu', 'wasm', 'cpu'] as const) {
      await initBackend(name, { env: {} });
      const g = tf.tidy(() => {
        const x = tf.ones([1, 4, 4, 1]) as tf.Tensor4D;
        const w = tf.ones([3, 3, 1, 1]) as tf.Tensor4D;
        const [, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'valid'),
        )([x, w]);
        return Array.from((dw as tf.Tensor).dataSync());
      });
      assert.deepEqual(g, [4, 4, 4, 4, 4, 4, 4, 4, 4], `dW of a 3x3 conv over ones on ${name}`);
    }
  });
});

interface ChildResult {
  info: BackendInfo;
  tensorflowRegistered: boolean;
  /** Threads TensorFlow started, counted in /proc (select-child.ts). */
  pools?: { intraOp: number; interOp: number };
  profiledError?: string | null;
}

const CHILD = fileURLToPath(new URL('./select-child.ts', import.meta.url));

/** initBackend() in a fresh process (one TensorFlow context per process), optionally under taskset. */
async function inChild(env: Record<string, string>, taskset?: string): Promise<ChildResult> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => k !== BACKEND_ENV && k !== 'TF_NUM_INTRAOP_THREADS' && k !== 'TF_NUM_INTEROP_THREADS',
    ),
  );
  const [cmd, args] =
    taskset === undefined
      ? [process.execPath, [CHILD]]
      : ['taskset', ['--cpu-list', taskset, process.execPath, CHILD]];
  const { stdout } = await promisify(execFile)(cmd, args, { env: { ...clean, ...env }, timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as ChildResult;
}

/** The first CPU this process may run on (for taskset), from /proc/self/status. */
function firstAllowedCpu(): string {
  const list = /^Cpus_allowed_list:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return list?.[1] ?? '0';
}

const hasTaskset = spawnSync('taskset', ['--version']).status === 0;

describe('initBackend with the real TensorFlow build', { skip: tensorflowSkip() }, () => {
  const build = locateBuilds()[0];
  const allowance = cpuAllowance();
  let auto: ChildResult;
  let wasm: ChildResult;
  let fixedThreads: ChildResult;
  let oneCpu: ChildResult | undefined;

  before(async () => {
    // In parallel: each child mostly waits for TensorFlow to load.
    [auto, wasm, fixedThreads, oneCpu] = await Promise.all([
      inChild({}),
      inChild({ [BACKEND_ENV]: 'wasm' }),
      inChild({ TF_NUM_INTRAOP_THREADS: '3' }),
      hasTaskset ? inChild({}, firstAllowedCpu()) : undefined,
    ]);
  });

  it('auto picks tensorflow, and the reason names the build: variant, TensorFlow version, threads, folder', () => {
    assert.ok(build, 'a build is present (the suite would have skipped)');
    const { info } = auto;
    assert.equal(info.name, 'tensorflow');
    assert.equal(info.requested, 'auto');
    assert.equal(
      info.reason,
      `auto (default): ${build.spec.npmPackage} loaded (${build.spec.variant} build, TensorFlow ${TENSORFLOW_VERSION}, ` +
        `on the CPU: TensorFlow sees no GPU, ${allowance.cpus} compute threads from ${allowance.source}; ${build.dir})`,
    );
    assert.deepEqual(info.tensorflow, {
      variant: build.spec.variant,
      tensorflowVersion: TENSORFLOW_VERSION,
      gpu: false,
      threads: { intraOp: allowance.cpus, interOp: Math.min(2, allowance.cpus), source: allowance.source },
      dir: build.dir,
    });
  });

  it('TensorFlow starts as many compute threads as the CPU allowance', () => {
    assert.deepEqual(auto.pools, { intraOp: allowance.cpus, interOp: Math.min(2, allowance.cpus) });
  });

  it('follows the CPU affinity: one CPU (taskset), one compute thread', {
    skip: skipUnlessRequired(hasTaskset ? undefined : 'taskset (util-linux) is not installed'),
  }, () => {
    assert.deepEqual(oneCpu?.info.tensorflow?.threads, {
      intraOp: 1,
      interOp: 1,
      source: 'CPU affinity (1 CPUs)',
    });
    assert.deepEqual(oneCpu?.pools, { intraOp: 1, interOp: 1 });
  });

  it('TF_NUM_INTRAOP_THREADS overrides the CPU allowance, and TensorFlow uses it', () => {
    assert.equal(fixedThreads.info.tensorflow?.threads.intraOp, 3);
    assert.equal(fixedThreads.info.tensorflow?.threads.source, 'TF_NUM_INTRAOP_THREADS');
    assert.match(fixedThreads.info.reason, /3 compute threads from TF_NUM_INTRAOP_THREADS/);
    assert.equal(fixedThreads.pools?.intraOp, 3);
  });

  it('TILESTREAM_BACKEND=wasm still wins over a present build, which is then not even loaded', () => {
    assert.equal(wasm.info.name, 'wasm');
    assert.match(wasm.info.reason, /^wasm requested by TILESTREAM_BACKEND: wasm initialised/);
    assert.equal(wasm.info.tensorflow, undefined);
    assert.equal(wasm.tensorflowRegistered, false);
  });

  it("a kernel TensorFlow fails under tf.profile rejects with TensorFlow's own error", () => {
    assert.match(String(auto.profiledError), /input depth must be evenly divisible by filter depth: 4 vs 3/);
  });
});
