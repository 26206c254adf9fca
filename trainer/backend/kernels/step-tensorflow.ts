// The mask of every ReLU and ReLU6 gradient (tfjs-core's Step, alpha 0) on the native 'tensorflow'
// backend as two TensorFlow ops, Sign(Relu(x)): 1 where x > 0, 0 elsewhere, NaN stays NaN.
// tfjs-node composes it from six JavaScript-level ops (isNaN, greater, ones, fill, where, Select),
// which held about 4.5 tensors of x's size at once and took 13–21% of a ResNet step on the CPU
// build; this holds two. Other alphas (no op of this project uses them) go to the stock kernel.
import * as tf from '@tensorflow/tfjs-core';
import { stockKernel } from './stock-kernels.ts';
import type { NodeBackend } from './tensorflow-explicit-padding.ts';

export const stepTensorflowKernel: tf.KernelFunc = (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { alpha } = args.attrs as unknown as { alpha: number };
  if (alpha !== 0 || x.dtype !== 'float32') {
    const stock = stockKernel('tensorflow', tf.Step);
    if (stock === undefined) throw new Error('tensorflow Step: the stock kernel was not remembered');
    return stock.kernelFunc(args);
  }
  const nb = args.backend as unknown as NodeBackend;
  const T = [{ name: 'T', type: nb.binding.TF_ATTR_TYPE, value: nb.binding.TF_FLOAT }];
  const relu = nb.executeSingleOutput('Relu', T, [x]);
  try {
    return nb.executeSingleOutput('Sign', T, [relu]);
  } finally {
    tf.dispose(relu as tf.Tensor);
  }
};
