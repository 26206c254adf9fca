// A composed kernel (trainer/kernels/composed.ts) as a tfjs kernel function: reads the inputs and
// tfjs's attributes, computes the geometry with tfjs's own computeConv2DInfo, and runs the shared
// code on tfjs tensors (tf-ops.ts). The planner runs the same code on shapes (plan/sim-ops.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { ComposedKernel } from '../../kernels/composed.ts';
import { asTensor4D, convInfo } from './conv-geometry.ts';
import { tfOps } from './tf-ops.ts';

interface ConvGradAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: [number, number] | number;
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

function input(inputs: tf.NamedTensorInfoMap, name: string, kernelName: string): tf.Tensor {
  const t = inputs[name];
  if (!(t instanceof tf.Tensor)) throw new Error(`${kernelName}: expected a Tensor for input '${name}'`);
  return t;
}

export function engineKernel(k: ComposedKernel, kernelName: string, backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const ops = tfOps(backend, backendName);
    const a = attrs as unknown as ConvGradAttrs;
    switch (k.kind) {
      case 'backprop-input': {
        if (a.inputShape === undefined) throw new Error(`${kernelName}: missing the inputShape attribute`);
        const dy = asTensor4D(input(inputs, 'dy', kernelName), kernelName);
        const filter = asTensor4D(input(inputs, 'filter', kernelName), kernelName);
        const info = convInfo(kernelName, a.inputShape, filter.shape, a, a.dilations ?? 1, k.depthwise);
        return k.run(ops, dy, filter, info);
      }
      case 'backprop-filter': {
        if (a.filterShape === undefined) throw new Error(`${kernelName}: missing the filterShape attribute`);
        const x = asTensor4D(input(inputs, 'x', kernelName), kernelName);
        const dy = asTensor4D(input(inputs, 'dy', kernelName), kernelName);
        const info = convInfo(kernelName, x.shape, a.filterShape, a, a.dilations ?? 1, k.depthwise);
        return k.run(ops, x, dy, a.filterShape, info);
      }
      case 'step':
        return k.run(ops, input(inputs, 'x', kernelName), (attrs as { alpha?: number }).alpha ?? 0);
      case 'gelu':
        return k.run(ops, input(inputs, 'x', kernelName));
      case 'layer-norm': {
        const epsilon = (attrs as { epsilon?: unknown }).epsilon;
        if (typeof epsilon !== 'number') throw new Error(`${kernelName}: missing the epsilon attribute`);
        const [x, gamma, beta] = (['x', 'gamma', 'beta'] as const).map((n) => input(inputs, n, kernelName));
        return k.run(ops, x as tf.Tensor, gamma as tf.Tensor, beta as tf.Tensor, epsilon);
      }
    }
  };
}
