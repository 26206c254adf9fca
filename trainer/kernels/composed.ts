// The project's composed kernels by backend and kernel name (tfjs's kernel names verbatim): the
// one table that the engine registers (backend/kernels/registry.ts, through engine-kernel.ts)
// and that the planner runs symbolically (plan/sim-backends.ts BACKENDS). A composed kernel is a
// function of KernelOps, so both run the same code; each entry says how its inputs are read.
import { conv2dBackpropFilterConv } from './conv2d-backprop-filter-conv.ts';
import { conv2dBackpropInputConv } from './conv2d-backprop-input-conv.ts';
import { depthwiseBackpropInputViaConv } from './depthwise-backprop-input-conv.ts';
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
  | { readonly kind: 'step'; run<T>(ops: NativeOps<T>, x: T, alpha: number): T };

export type ComposedBackend = 'wasm' | 'tensorflow';

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
  wasm: {
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
    Conv2DBackpropInput: tensorflowInput('Conv2DBackpropInput', false),
    Conv2DBackpropFilter: tensorflowFilter('Conv2DBackpropFilter', false),
    DepthwiseConv2dNativeBackpropInput: tensorflowInput('DepthwiseConv2dNativeBackpropInput', true),
    DepthwiseConv2dNativeBackpropFilter: tensorflowFilter('DepthwiseConv2dNativeBackpropFilter', true),
    Step: { kind: 'step', run: stepTensorflow },
  },
};
