// Typed-array access to tensor data from inside a kernel, for any backend. Both the cpu and the
// wasm backend implement KernelBackend.readSync/write; cpu hands out its own array (no copy), wasm
// copies out of its heap, which is cheap next to the loops that use these helpers.
import type * as tf from '@tensorflow/tfjs-core';

export function readFloat32(backend: tf.KernelBackend, t: tf.TensorInfo): Float32Array {
  if (t.dtype !== 'float32') {
    throw new Error(`project kernel expected a float32 tensor, got ${t.dtype}; cast the input to float32`);
  }
  const values = backend.readSync(t.dataId);
  if (!(values instanceof Float32Array)) {
    throw new Error(`backend returned ${values.constructor.name} for a float32 tensor`);
  }
  return values;
}

export function writeFloat32(
  backend: tf.KernelBackend,
  shape: readonly number[],
  values: Float32Array,
): tf.TensorInfo {
  return { dataId: backend.write(values, [...shape], 'float32'), shape: [...shape], dtype: 'float32' };
}
