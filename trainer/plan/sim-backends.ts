// What each backend does with the kernels a training step runs, for the simulated engine: which
// kernels hand out their input's buffer, which the backend composes from other ops, and how the
// planner models every kernel the project registers (trainer/backend/kernels/registry.ts). The
// project's composed kernels are not copied here: the planner runs their one source
// (trainer/kernels/composed.ts) on shapes through simOps, so it takes every path the engine takes.

import type { ComposedKernel } from '../kernels/composed.ts';
import { COMPOSED_KERNELS } from '../kernels/composed.ts';
import { explicitConvInfo } from '../kernels/conv-geometry.ts';
import { FUSED_GRADIENTS } from '../kernels/fused-gradients.ts';
import type { NativeOps, Pad4, Pair } from '../kernels/ops.ts';
import {
  type Attrs,
  type BackendModel,
  type CompositeKernel,
  type GradConfig,
  SimEngine,
  type SimTensor,
} from './sim-engine.ts';
import {
  add,
  cast,
  compare,
  conv2d,
  depthwiseConv2d,
  erf,
  GRADIENTS,
  mean,
  mul,
  ones,
  pad,
  reduceShape,
  reshape,
  rsqrt,
  slice,
  square,
  stack,
  stridedSlice,
  sub,
  sum,
  transpose,
  unary,
  where,
} from './sim-ops.ts';

type T = SimTensor;

export type BackendName = 'cpu' | 'wasm' | 'tensorflow';
export const BACKEND_NAMES: readonly BackendName[] = ['cpu', 'wasm', 'tensorflow'];

/**
 * Models of stock kernels that a backend composes in JavaScript, by backend and name. A project
 * kernel that hands a case back to the stock one (NativeOps.stock) runs these too.
 */
const STOCK_COMPOSITES: Readonly<Record<BackendName, Readonly<Record<string, CompositeKernel>>>> = {
  cpu: {},
  wasm: {},
  tensorflow: {
    /**
     * tfjs-node's Step for alphas other than 0 (the project's kernel takes alpha 0): isNaN(x),
     * greater(x, 0), ones and a fill of x's shape, a where of them, then Select(nans, x, mask) —
     * about 4.5 tensors of x's size at its end.
     */
    Step: (sim, inputs) => {
      const x = inputs.x as T;
      return sim.tidy(() => {
        sim.kernel('IsNan', { x }, x.shape, {}, 'bool');
        const positive = compare(sim, 'Greater', x, sim.make([]));
        where(sim, positive, ones(sim, x.shape), sim.kernel('Fill', {}, x.shape));
        return sim.make(x.shape);
      });
    },
    /**
     * tfjs-node's Mean makes its axes as an int32 tensor, casts its input to float32 (a copy on
     * this backend), then runs TF's Mean directly.
     */
    Mean: (sim, inputs, attrs) => {
      const x = inputs.x as T;
      const axes = attrs.axes as number[];
      const axesTensor = sim.make([axes.length], 'int32');
      const asFloat = cast(sim, x, 'float32');
      const out = sim.make(reduceShape(x.shape, axes));
      sim.dispose(asFloat);
      sim.dispose(axesTensor);
      return out;
    },
  },
};

/**
 * The composed kernels' operations on a simulated engine: each is the simulated tfjs op of the
 * same name (sim-ops.ts); tensors made in JavaScript and TensorFlow ops run outside the engine
 * take memory but record no kernel (tf.profile samples nothing there).
 */
export function simOps(sim: SimEngine, backend: BackendName): NativeOps<T> {
  return {
    shape: (x) => x.shape,
    dtype: (x) => x.dtype,
    tidy: (fn) => sim.tidy(fn),
    dispose: (x) => sim.dispose(x),
    slice: (x, begin, size) => slice(sim, x, begin, size),
    pad: (x, paddings) => pad(sim, x, paddings),
    reshape: (x, shape) => reshape(sim, x, shape),
    transpose: (x, perm) => transpose(sim, x, perm),
    stack: (xs, axis) => stack(sim, xs, axis),
    stridedSlice: (x, begin, end, strides) => stridedSlice(sim, x, begin, end, strides),
    sum: (x, axes) => sum(sim, x, typeof axes === 'number' ? [axes] : axes),
    mean: (x, axis) => mean(sim, x, [axis]),
    zeros: (shape) => sim.make(shape),
    add: (a, b) => add(sim, a, b),
    sub: (a, b) => sub(sim, a, b),
    mul: (a, b) => mul(sim, a, b),
    erf: (x) => erf(sim, x),
    exp: (x) => unary(sim, 'Exp', x),
    square: (x) => square(sim, x),
    rsqrt: (x) => rsqrt(sim, x),
    conv2d: (x, filter, p, dilations) => conv2d(sim, x, filter, { strides: [1, 1], pad: p, dilations }),
    depthwiseConv2d: (x, filter, dilations) =>
      depthwiseConv2d(sim, x, filter, { strides: [1, 1], pad: [0, 0, 0, 0], dilations }),
    fromHost: (shape) => sim.make(shape),
    convBackprop: (_name, inputs, outShape) => {
      // The shape input is an int32 vector made before the op and freed after it.
      const sizes = inputs
        .filter((i) => Array.isArray(i))
        .map((i) => sim.make([(i as number[]).length], 'int32'));
      const out = sim.make(outShape);
      for (const s of sizes) sim.dispose(s);
      return out;
    },
    unary: (_name, x) => sim.make(x.shape),
    stock: (kernelName, inputs, attrs) => {
      const model = STOCK_COMPOSITES[backend][kernelName];
      if (model === undefined)
        throw new Error(`internal: no planner model of ${backend}'s stock ${kernelName}`);
      return model(sim, inputs, attrs);
    },
  };
}

/** The planner's attributes of a convolution and its gradients (sim-ops.ts GRADIENTS). */
interface GradAttrs {
  readonly strides: Pair;
  readonly pad: Pad4;
  readonly dilations: Pair;
  readonly inputShape?: readonly number[];
  readonly filterShape?: readonly number[];
}

/** A composed kernel run on the simulated engine: geometry from the planner's explicit attributes. */
function simComposite(k: ComposedKernel, backend: BackendName): CompositeKernel {
  return (sim, inputs, attrs: Attrs) => {
    const ops = simOps(sim, backend);
    const a = attrs as unknown as GradAttrs;
    const info = (inShape: readonly number[], filterShape: readonly number[]) =>
      explicitConvInfo(
        inShape,
        filterShape,
        a.strides,
        a.pad,
        a.dilations,
        (k.kind === 'backprop-input' || k.kind === 'backprop-filter') && k.depthwise,
      );
    switch (k.kind) {
      case 'backprop-input': {
        const filter = inputs.filter as T;
        return k.run(ops, inputs.dy as T, filter, info(a.inputShape as number[], filter.shape));
      }
      case 'backprop-filter': {
        const x = inputs.x as T;
        const fs = a.filterShape as number[];
        return k.run(ops, x, inputs.dy as T, fs, info(x.shape, fs));
      }
      case 'step':
        return k.run(ops, inputs.x as T, (attrs.alpha as number | undefined) ?? 0);
      case 'gelu':
        return k.run(ops, inputs.x as T);
      case 'layer-norm':
        return k.run(ops, inputs.x as T, inputs.gamma as T, inputs.beta as T, attrs.epsilon as number);
    }
  };
}

/**
 * How the planner models a kernel the project registers: by running its composed source, as a
 * kernel that allocates its output and nothing else (a typed-array loop, like the stock kernel it
 * replaces), or as one that hands out its input's buffer.
 */
export type ProjectKernelModel =
  | { readonly kind: 'composed'; readonly kernel: ComposedKernel }
  | { readonly kind: 'output only' }
  | { readonly kind: 'alias' };

const OUTPUT_ONLY: ProjectKernelModel = { kind: 'output only' };

const composedModels = (backend: BackendName): Record<string, ProjectKernelModel> =>
  Object.fromEntries(
    Object.entries(COMPOSED_KERNELS[backend]).map(([name, kernel]) => [name, { kind: 'composed', kernel }]),
  );

/** Every kernel of trainer/backend/kernels/registry.ts, by backend; test/plan/kernel-models.test.ts keeps the two in step. */
export const PROJECT_KERNEL_MODELS: Readonly<
  Record<BackendName, Readonly<Record<string, ProjectKernelModel>>>
> = {
  cpu: {
    ...composedModels('cpu'),
    Conv2DBackpropFilter: OUTPUT_ONLY,
    DepthwiseConv2dNativeBackpropFilter: OUTPUT_ONLY,
    DepthwiseConv2dNativeBackpropInput: OUTPUT_ONLY,
    MaxPoolGrad: OUTPUT_ONLY,
    Sum: OUTPUT_ONLY,
  },
  wasm: {
    ...composedModels('wasm'),
    DepthwiseConv2dNativeBackpropFilter: OUTPUT_ONLY,
    MaxPoolGrad: OUTPUT_ONLY,
    Slice: OUTPUT_ONLY,
    Sum: OUTPUT_ONLY,
    Identity: { kind: 'alias' },
  },
  tensorflow: composedModels('tensorflow'),
};

/** The composites of a backend: its stock ones, then the project's composed kernels over them. */
function composites(backend: BackendName): Record<string, CompositeKernel> {
  const out: Record<string, CompositeKernel> = { ...STOCK_COMPOSITES[backend] };
  for (const [name, m] of Object.entries(PROJECT_KERNEL_MODELS[backend])) {
    if (m.kind === 'composed') out[name] = simComposite(m.kernel, backend);
  }
  return out;
}

/** The kernels whose output shares the input's buffer: the stock ones, and the project's aliasing kernels. */
const aliasing = (backend: BackendName, stock: readonly string[]): ReadonlySet<string> =>
  new Set([
    ...stock,
    ...Object.entries(PROJECT_KERNEL_MODELS[backend])
      .filter(([, m]) => m.kind === 'alias')
      .map(([name]) => name),
  ]);

/**
 * cpu: Identity, Reshape and lossless Casts hand out the input's buffer (tfjs-backend-cpu
 * identity). wasm: Reshape, and Identity through the project's kernel (identity-wasm.ts; the
 * stock one copies); Cast copies on the heap. A one-input Pack (stack) is an expandDims, a view.
 * tensorflow (tfjs-node and tfjs-node-gpu, the same JavaScript): Identity shares the data id
 * (nodejs Identity kernel); Reshape and a Cast to the same type are new data ids that TensorFlow
 * backs with the input's buffer (forwarding); every other kernel is one TensorFlow op, except
 * Mean, which tfjs-node composes in JavaScript, and the project's composed kernels.
 * test/plan/calibration.test.ts compares the handle and buffer peaks (and on tensorflow,
 * TensorFlow's own allocations) with measurements.
 */
export const BACKENDS: Readonly<Record<BackendName, BackendModel>> = {
  cpu: {
    name: 'cpu',
    aliasing: aliasing('cpu', ['Identity', 'Reshape', 'Cast', 'Pack']),
    composites: composites('cpu'),
  },
  wasm: { name: 'wasm', aliasing: aliasing('wasm', ['Reshape', 'Pack']), composites: composites('wasm') },
  tensorflow: {
    name: 'tensorflow',
    aliasing: aliasing('tensorflow', ['Identity']),
    forwarding: new Set(['Reshape', 'Cast']),
    composites: composites('tensorflow'),
  },
};

/**
 * The fused ops' gradient configs (trainer/kernels/fused-gradients.ts, the source the engine
 * registers) on the simulated engine's own backend.
 */
const FUSED_GRADIENT_MODELS: ReadonlyMap<string, GradConfig> = new Map(
  Object.entries(FUSED_GRADIENTS).map(([name, g]): [string, GradConfig] => [
    name,
    {
      inputsToSave: g.inputsToSave,
      gradFunc: (sim, dys, saved, attrs) =>
        g.grads(simOps(sim, sim.backend.name as BackendName), dys[0] as T, saved, attrs),
    },
  ]),
);

/** tfjs-core's gradients and the fused ops'. */
const ALL_GRADIENTS: ReadonlyMap<string, GradConfig> = new Map([...GRADIENTS, ...FUSED_GRADIENT_MODELS]);

/** A simulated engine for `backend`; `countDataIds`: buffers are the engine's data ids, not memory. */
export function createEngine(backend: BackendName, floatBytes = 4, countDataIds = false): SimEngine {
  return new SimEngine(BACKENDS[backend], floatBytes, ALL_GRADIENTS, countDataIds);
}
