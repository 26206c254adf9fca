// Sum over the leading axes of a float32 tensor (the bias, shift and scale gradients: a sum of an
// NHWC gradient over N, H and W). Both stock kernels first transpose the reduced axes to the end;
// on wasm that made the bias gradient of a [1,256,256,16] conv cost ~10 ms, on cpu ~80 ms. A
// single pass that adds rows into a float64 accumulator needs no transpose. Other reductions go
// to the stock kernel.
import * as tf from '@tensorflow/tfjs-core';
import { stockKernel } from './stock-kernels.ts';
import { float32Kernel } from './tensor-data.ts';

/** out[c] = Σ_r x[r·cols + c], accumulated in float64. */
export function sumRows(x: Float32Array, rows: number, cols: number, out: Float32Array): void {
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let c = 0; c < cols; c++) acc[c]! += x[off + c] as number;
  }
  for (let c = 0; c < cols; c++) out[c] = acc[c] as number;
}

export function sumLeadingAxesKernel(backendName: string): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as unknown as tf.SumAttrs;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
    const k = axes.length;
    const leading = k > 0 && k < x.shape.length && axes.every((a, i) => a === i);
    if (!leading || x.dtype !== 'float32') {
      const original = stockKernel(backendName, tf.Sum);
      if (original === undefined) throw new Error(`Sum: no stock ${backendName} kernel for axes [${axes}]`);
      return original.kernelFunc(args);
    }
    const rows = x.shape.slice(0, k).reduce((p, n) => p * n, 1);
    const cols = x.shape.slice(k).reduce((p, n) => p * n, 1);
    const outShape = keepDims ? [...new Array<number>(k).fill(1), ...x.shape.slice(k)] : x.shape.slice(k);
    return float32Kernel(tf.Sum, args.backend, [x], outShape, ([xv], out) => sumRows(xv!, rows, cols, out));
  };
}
