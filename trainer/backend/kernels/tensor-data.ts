// Typed-array access to tensor data from inside a kernel, for the cpu and the wasm backend.
// On wasm the kernel works on views of the wasm heap (no copies in or out); on cpu it works on
// the backend's own arrays. Both paths hand `compute` float32 arrays of the inputs and of the
// output, and `compute` must write every element of the output (wasm memory is not zeroed).
import type * as tf from '@tensorflow/tfjs-core';

interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

function isWasmHeap(b: object): b is WasmHeapBackend {
  const w = b as Partial<WasmHeapBackend>;
  return typeof w.makeOutput === 'function' && typeof w.typedArrayFromHeap === 'function';
}

function checkFloat32(kernel: string, t: tf.TensorInfo): void {
  if (t.dtype !== 'float32') {
    throw new Error(`${kernel}: the project kernel expects float32 tensors, got ${t.dtype}; cast the input`);
  }
}

export function float32Kernel(
  kernel: string,
  backend: object,
  inputs: readonly tf.TensorInfo[],
  outShape: readonly number[],
  compute: (ins: Float32Array[], out: Float32Array) => void,
): tf.TensorInfo {
  for (const t of inputs) checkFloat32(kernel, t);
  const shape = [...outShape];
  if (isWasmHeap(backend)) {
    const out = backend.makeOutput(shape, 'float32');
    // Views are taken after makeOutput: an allocation may grow the heap and detach older views.
    // `compute` allocates nothing on the wasm heap, so they stay valid while it runs.
    const ins = inputs.map((t) => backend.typedArrayFromHeap(t) as Float32Array);
    compute(ins, backend.typedArrayFromHeap(out) as Float32Array);
    return out;
  }
  const be = backend as tf.KernelBackend;
  const ins = inputs.map((t) => {
    const v = be.readSync(t.dataId);
    if (!(v instanceof Float32Array))
      throw new Error(`${kernel}: backend returned ${v.constructor.name} for float32`);
    return v;
  });
  const out = new Float32Array(shape.reduce((p, n) => p * n, 1));
  compute(ins, out);
  return { dataId: be.write(out, shape, 'float32'), shape, dtype: 'float32' };
}
