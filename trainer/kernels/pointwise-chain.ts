// Building blocks of the fused pointwise kernels (gelu.ts, layer-norm.ts): a tidy frees its
// temporaries only when it ends, so a chain of n elementwise ops would hold n tensors of the
// input's size at once; these free each intermediate as soon as the next one exists.
import type { KernelOps } from './ops.ts';

/**
 * Applies `steps` in turn starting from `x`, freeing each intermediate once the next is made: at
 * most two tensors of the chain are alive at a time. `x` itself stays (the caller owns it).
 */
export function chain<T>(ops: KernelOps<T>, x: T, ...steps: readonly ((t: T) => T)[]): T {
  let current = x;
  for (const step of steps) {
    const next = step(current);
    if (current !== x) ops.dispose(current);
    current = next;
  }
  return current;
}

/** `f(a, b)`, then frees `a` and `b` (both temporaries of the caller). */
export function consume<T>(ops: KernelOps<T>, a: T, b: T, f: (a: T, b: T) => T): T {
  const out = f(a, b);
  ops.dispose(a);
  ops.dispose(b);
  return out;
}

/**
 * The mean over the channels of each pixel of an NHWC tensor, shaped [n, h, w, 1] to broadcast
 * against it. The reduction drops the axis and a reshape puts it back: tf.mean's keepDims path
 * allocates differently per backend.
 */
export function perPixelMean<T>(ops: KernelOps<T>, x: T): T {
  const [n, h, w] = ops.shape(x) as [number, number, number, number];
  const m = ops.mean(x, 3);
  const r = ops.reshape(m, [n, h, w, 1]);
  ops.dispose(m);
  return r;
}
