// Identity for the wasm backend that shares the input's memory, as tfjs-backend-cpu's does. The
// engine clones every tensor a gradient needs while it records the tape (engine.js
// saveTensorsForBackwardMode), and the stock wasm Identity copies the data: every saved
// activation existed twice in the wasm heap during training (and cost a copy). Reshape on wasm
// already shares memory the same way, through the backend's reference count.
import * as tf from '@tensorflow/tfjs-core';
import { stockKernel } from './stock-kernels.ts';

interface RefCountingBackend {
  incRef(dataId: tf.DataId): void;
}

export const identityWasmKernel: tf.KernelFunc = (args) => {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') {
    const original = stockKernel('wasm', tf.Identity);
    if (original === undefined) throw new Error('Identity: no stock wasm kernel for a string tensor');
    return original.kernelFunc(args);
  }
  (args.backend as RefCountingBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
};
