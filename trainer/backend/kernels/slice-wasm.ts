// Slice for the wasm backend. The stock kernel copies the whole input out of the wasm heap and
// then allocates a subarray per innermost row: slicing [16,256,256,1] took 220 ms (1M rows of one
// element) and [1,256,256,16] 13 ms. Slices are everywhere in streaming: tile crops, the gradient
// of every pad, the crop of the composed conv gradients. This one reads and writes the heap in
// place, merges the trailing axes that are taken whole into one contiguous run, and copies short
// runs with a plain loop.
import * as tf from '@tensorflow/tfjs-core';
import { stockKernel } from './stock-kernels.ts';

type Heap = Float32Array | Int32Array | Uint8Array;

interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Heap;
}

/** Copies the block `begin`/`size` of an array of shape `shape` into `out` (row-major). */
export function sliceInto(
  x: Heap,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  out: Heap,
): void {
  const rank = shape.length;
  if (rank === 0 || size.some((s) => s === 0)) return;
  const strides = new Array<number>(rank);
  let acc = 1;
  for (let a = rank - 1; a >= 0; a--) {
    strides[a] = acc;
    acc *= shape[a] as number;
  }
  // Axes after `inner` are taken whole, so axis `inner` and everything after it is one run.
  let inner = rank - 1;
  while (inner > 0 && size[inner] === shape[inner]) inner--;
  const run = (size[inner] as number) * (strides[inner] as number);
  let base = 0;
  for (let a = 0; a <= inner; a++) base += (begin[a] as number) * (strides[a] as number);
  const idx = new Array<number>(inner).fill(0); // odometer over the axes before `inner`
  let src = base;
  let dst = 0;
  for (;;) {
    if (run >= 64) {
      out.set(x.subarray(src, src + run), dst);
    } else {
      for (let i = 0; i < run; i++) out[dst + i] = x[src + i] as number;
    }
    dst += run;
    let a = inner - 1;
    while (a >= 0) {
      idx[a]!++;
      src += strides[a] as number;
      if ((idx[a] as number) < (size[a] as number)) break;
      src -= (size[a] as number) * (strides[a] as number);
      idx[a] = 0;
      a--;
    }
    if (a < 0) return;
  }
}

export const sliceWasmKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args;
  const x = inputs.x as tf.TensorInfo;
  if (x.dtype === 'string' || x.dtype === 'complex64') {
    const original = stockKernel('wasm', tf.Slice);
    if (original === undefined) throw new Error(`Slice: no stock wasm kernel to handle dtype ${x.dtype}`);
    return original.kernelFunc(args);
  }
  const backend = args.backend as WasmHeapBackend;
  const a = attrs as unknown as tf.SliceAttrs;
  const [begin, size] = tf.slice_util.parseSliceParams(x, a.begin, a.size) as [number[], number[]];
  const out = backend.makeOutput(size, x.dtype);
  // Views after makeOutput: allocating may grow the heap, which detaches older views.
  sliceInto(backend.typedArrayFromHeap(x), x.shape, begin, size, backend.typedArrayFromHeap(out));
  return out;
};
