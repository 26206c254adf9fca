// The project's composed kernels by backend and kernel name (tfjs's kernel names verbatim, and the
// fused ops' own names, whose gradients are in fused-gradients.ts): the
// one table that the engine registers (backend/kernels/registry.ts, through engine-kernel.ts)
// and that the planner runs symbolically (plan/sim-backends.ts BACKENDS). A composed kernel is a
// function of KernelOps, so both run the same code; each entry says how its inputs are read.
import { conv2dBackpropFilterConv } from './conv2d-backprop-filter-conv.ts';
import { conv2dBackpropInputConv } from './conv2d-backprop-input-conv.ts';
import { depthwiseBackpropInputViaConv } from './depthwise-backprop-input-conv.ts';
import { FUSED_GELU, geluForward } from './gelu.ts';
import { FUSED_LAYER_NORM, layerNormForward } from './layer-norm.ts';
import type { ConvInfo, NativeOps } from './ops.ts';
import {
  backpropFilterTensorflow,
  backpropInputTensorflow,
  stepTensorflow,
} from './tensorflow-explicit-padding.ts';

export type ComposedKernel =
  /** inputs {dy, filter}; attributes give the input's shape. */
  | {
      readonly kind: 'backprop-input';
      readonly depthwise: boolean;
      run<T>(ops: NativeOps<T>, dy: T, filter: T, info: ConvInfo): T;
    }
  /** inputs {x, dy}; attributes give the filter's shape. */
  | {
      readonly kind: 'backprop-filter';
      readonly depthwise: boolean;
      run<T>(ops: NativeOps<T>, x: T, dy: T, filterShape: readonly number[], info: ConvInfo): T;
    }
  /** input {x}, attribute alpha. */
  | { readonly kind: 'step'; run<T>(ops: NativeOps<T>, x: T, alpha: number): T }
  /** A fused op of the project's own (no tfjs kernel of that name): input {x}; gradient in fused-gradients.ts. */
  | { readonly kind: 'gelu'; run<T>(ops: NativeOps<T>, x: T): T }
  /** A fused op: inputs {x, gamma, beta}, attribute epsilon; gradient in fused-gradients.ts. */
  | { readonly kind: 'layer-norm'; run<T>(ops: NativeOps<T>, x: T, gamma: T, beta: T, epsilon: number): T };

export type ComposedBackend = 'cpu' | 'wasm' | 'tensorflow';

/**
 * The fused ops, the same on every backend: tfjs has no GELU or layer-norm kernel, and composed
 * of tfjs ops each would put every intermediate on the tape.
 */
const FUSED: Readonly<Record<string, ComposedKernel>> = {
  [FUSED_GELU]: { kind: 'gelu', run: geluForward },
  [FUSED_LAYER_NORM]: { kind: 'layer-norm', run: layerNormForward },
};

const tensorflowInput = (name: string, depthwise: boolean): ComposedKernel => ({
  kind: 'backprop-input',
  depthwise,
  run: (ops, dy, filter, info) => backpropInputTensorflow(ops, name, depthwise, dy, filter, info),
});

const tensorflowFilter = (name: string, depthwise: boolean): ComposedKernel => ({
  kind: 'backprop-filter',
  depthwise,
  run: (ops, x, dy, filterShape, info) =>
    backpropFilterTensorflow(ops, name, depthwise, x, dy, filterShape, info),
});

export const COMPOSED_KERNELS: Readonly<Record<ComposedBackend, Readonly<Record<string, ComposedKernel>>>> = {
  cpu: FUSED,
  wasm: {
    ...FUSED,
    Conv2DBackpropFilter: {
      kind: 'backprop-filter',
      depthwise: false,
      run: (ops, x, dy, _filterShape, info) => conv2dBackpropFilterConv(ops, x, dy, info),
    },
    Conv2DBackpropInput: { kind: 'backprop-input', depthwise: false, run: conv2dBackpropInputConv },
    DepthwiseConv2dNativeBackpropInput: {
      kind: 'backprop-input',
      depthwise: true,
      run: depthwiseBackpropInputViaConv,
    },
  },
  tensorflow: {
    ...FUSED,
    Conv2DBackpropInput: tensorflowInput('Conv2DBackpropInput', false),
    Conv2DBackpropFilter: tensorflowFilter('Conv2DBackpropFilter', false),
    DepthwiseConv2dNativeBackpropInput: tensorflowInput('DepthwiseConv2dNativeBackpropInput', true),
    DepthwiseConv2dNativeBackpropFilter: tensorflowFilter('DepthwiseConv2dNativeBackpropFilter', true),
    Step: { kind: 'step', run: stepTensorflow },
  },
};
