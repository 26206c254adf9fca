// The kernels tilestream registers on top of the stock tfjs backends, and their idempotent
// registration. Each entry says why it exists; the measurements are in the module of the kernel
// and in test/backend.
import * as tf from '@tensorflow/tfjs-core';
import { COMPOSED_KERNELS, type ComposedBackend, type ComposedKernel } from '../../kernels/composed.ts';
import { FUSED_GELU } from '../../kernels/gelu.ts';
import { FUSED_LAYER_NORM } from '../../kernels/layer-norm.ts';
import { conv2dBackpropFilterLoopKernel } from './conv2d-backprop-filter-loop.ts';
import {
  depthwiseBackpropFilterLoopKernel,
  depthwiseBackpropInputLoopKernel,
} from './depthwise-backprop-loop.ts';
import { engineKernel } from './engine-kernel.ts';
import { registerFusedGradients } from './fused-gradients.ts';
import { identityWasmKernel } from './identity-wasm.ts';
import { maxPoolGradLoopKernel } from './max-pool-grad-loop.ts';
import { sliceWasmKernel } from './slice-wasm.ts';
import { rememberStockKernel, stockKernel } from './stock-kernels.ts';
import { sumLeadingAxesKernel } from './sum-leading-axes.ts';

export interface ProjectKernel {
  readonly kernelName: string;
  readonly backendName: 'cpu' | 'wasm' | 'tensorflow';
  readonly kernelFunc: tf.KernelFunc;
  /** The composed source this kernel runs (the planner runs the same one); absent for loops. */
  readonly composed?: ComposedKernel;
  readonly why: string;
}

/** A kernel of trainer/kernels/composed.ts, run on tfjs tensors. */
function composed(backendName: ComposedBackend, kernelName: string, why: string): ProjectKernel {
  const k = COMPOSED_KERNELS[backendName][kernelName];
  if (k === undefined) throw new Error(`internal: no composed ${backendName} kernel ${kernelName}`);
  return { kernelName, backendName, kernelFunc: engineKernel(k, kernelName, backendName), composed: k, why };
}

const GELU_WHY =
  'exact GELU as one kernel with its own gradient: the tape keeps its input only, where the tfjs-op composition kept five tensors of its size';
const LAYER_NORM_WHY =
  'channel layer norm as one kernel with its own gradient: the tape keeps its input (the gradient recomputes the statistics), where the composition kept five tensors of its size';

export const PROJECT_KERNELS: readonly ProjectKernel[] = [
  composed(
    'wasm',
    tf.Conv2DBackpropFilter,
    'missing on wasm; one XNNPACK conv with batch and channels swapped (over 16x16 output blocks when both channel counts are >= 32)',
  ),
  composed(
    'wasm',
    tf.Conv2DBackpropInput,
    'stock wasm kernel is a naive loop; XNNPACK convs (sub-pixel phases when strided) are 2-15x faster',
  ),
  {
    kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
    backendName: 'wasm',
    kernelFunc: depthwiseBackpropFilterLoopKernel,
    why: 'missing on wasm; typed-array loop (a composed dilated depthwise conv was slower and float32-inexact)',
  },
  composed(
    'wasm',
    tf.DepthwiseConv2dNativeBackpropInput,
    'missing on wasm; one XNNPACK depthwise conv of the zero-spread dy',
  ),
  {
    kernelName: tf.MaxPoolGrad,
    backendName: 'wasm',
    kernelFunc: maxPoolGradLoopKernel,
    why: 'stock wasm kernel drops the gradient of windows whose maximum is <= 0 (float min() as -infinity)',
  },
  {
    kernelName: tf.Slice,
    backendName: 'wasm',
    kernelFunc: sliceWasmKernel,
    why: 'stock wasm kernel copies the input and allocates a subarray per row (220 ms for [16,256,256,1])',
  },
  {
    kernelName: tf.Identity,
    backendName: 'wasm',
    kernelFunc: identityWasmKernel,
    why: 'stock wasm kernel copies; the engine clones every tensor saved for the backward pass',
  },
  {
    kernelName: tf.Sum,
    backendName: 'wasm',
    kernelFunc: sumLeadingAxesKernel('wasm'),
    why: 'stock kernel transposes before a sum over N,H,W (bias gradients): one pass without it',
  },
  {
    kernelName: tf.Conv2DBackpropFilter,
    backendName: 'cpu',
    kernelFunc: conv2dBackpropFilterLoopKernel,
    why: 'stock cpu kernel calls TensorBuffer.get per multiply-add (~70x slower)',
  },
  {
    kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
    backendName: 'cpu',
    kernelFunc: depthwiseBackpropFilterLoopKernel,
    why: 'stock cpu kernel calls TensorBuffer.get per multiply-add (~100x slower)',
  },
  {
    kernelName: tf.DepthwiseConv2dNativeBackpropInput,
    backendName: 'cpu',
    kernelFunc: depthwiseBackpropInputLoopKernel,
    why: 'stock cpu kernel recomputes bounds per tap (~4x slower)',
  },
  {
    kernelName: tf.MaxPoolGrad,
    backendName: 'cpu',
    kernelFunc: maxPoolGradLoopKernel,
    why: 'stock cpu kernel calls TensorBuffer.get per tap',
  },
  {
    kernelName: tf.Sum,
    backendName: 'cpu',
    kernelFunc: sumLeadingAxesKernel('cpu'),
    why: 'stock kernel transposes before a sum over N,H,W (bias gradients): one pass without it',
  },
  composed(
    'tensorflow',
    tf.Conv2DBackpropFilter,
    "tfjs-node's kernel refuses explicit padding; and TensorFlow's oneDNN kernel corrupts the heap for a 1x1 stride-2 filter over an input with unread trailing cells, which this one trims",
  ),
  composed(
    'tensorflow',
    tf.Conv2DBackpropInput,
    "tfjs-node's kernel refuses explicit padding, which every streamed convolution uses",
  ),
  composed(
    'tensorflow',
    tf.DepthwiseConv2dNativeBackpropFilter,
    "tfjs-node's kernel sends padding EXPLICIT to TensorFlow without the paddings",
  ),
  composed(
    'tensorflow',
    tf.DepthwiseConv2dNativeBackpropInput,
    "tfjs-node's kernel sends padding EXPLICIT to TensorFlow without the paddings",
  ),
  composed(
    'tensorflow',
    tf.Step,
    "tfjs-node composes the ReLU gradient's mask from six ops (~4.5 activations held); Sign(Relu(x)) holds two",
  ),
  ...(['cpu', 'wasm', 'tensorflow'] as const).flatMap((b) => [
    composed(b, FUSED_GELU, GELU_WHY),
    composed(b, FUSED_LAYER_NORM, LAYER_NORM_WHY),
  ]),
];

/**
 * Registers the project's kernels for one backend, and the fused ops' gradients. Idempotent: a kernel already registered by us
 * is left alone. A stock kernel of the same name is replaced; its setupFunc/disposeFunc are kept
 * on our config so that the backend's own bookkeeping still runs. Returns the names registered now.
 */
export function registerProjectKernels(backendName: string): string[] {
  registerFusedGradients();
  const added: string[] = [];
  for (const k of PROJECT_KERNELS) {
    if (k.backendName !== backendName) continue;
    const current = tf.getKernel(k.kernelName, k.backendName);
    if (current?.kernelFunc === k.kernelFunc) continue;
    if (current !== undefined) {
      rememberStockKernel(current);
      tf.unregisterKernel(k.kernelName, k.backendName);
    }
    const config: tf.KernelConfig = {
      kernelName: k.kernelName,
      backendName: k.backendName,
      kernelFunc: k.kernelFunc,
    };
    if (current?.setupFunc !== undefined) config.setupFunc = current.setupFunc;
    if (current?.disposeFunc !== undefined) config.disposeFunc = current.disposeFunc;
    tf.registerKernel(config);
    added.push(k.kernelName);
  }
  return added;
}

/** Undoes `registerProjectKernels` for one backend (for benchmarks against the stock kernels). */
export function restoreStockKernels(backendName: string): void {
  for (const k of PROJECT_KERNELS) {
    if (k.backendName !== backendName) continue;
    if (tf.getKernel(k.kernelName, k.backendName)?.kernelFunc !== k.kernelFunc) continue;
    tf.unregisterKernel(k.kernelName, k.backendName);
    const stock = stockKernel(k.backendName, k.kernelName);
    if (stock !== undefined) tf.registerKernel(stock);
  }
}

/** The project kernels currently active on a backend. */
export function activeProjectKernels(backendName: string): string[] {
  return PROJECT_KERNELS.filter(
    (k) =>
      k.backendName === backendName && tf.getKernel(k.kernelName, k.backendName)?.kernelFunc === k.kernelFunc,
  ).map((k) => k.kernelName);
}
