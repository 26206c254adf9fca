// Exact GELU, x·Φ(x) = x·(½ + ½·erf(x/√2)), as one kernel with its own gradient: composed of
// tfjs ops, the tape kept every intermediate (five tensors of the input's size per GELU, and
// their gradients until the backward pass ended); fused, it keeps its input alone. The forward
// is the same op sequence as the composition it replaces, so its values are unchanged.
import type { KernelOps } from './ops.ts';
import { chain, consume } from './pointwise-chain.ts';

/** The kernel's name (tfjs's registry and tf.profile show it). Input {x}; no attributes. */
export const FUSED_GELU = 'TilestreamGelu';

/** Φ(x) = ½ + ½·erf(x/√2), the standard normal's distribution function. */
const normalCdf = <T>(ops: KernelOps<T>, x: T): T =>
  chain(
    ops,
    x,
    (t) => ops.mul(t, Math.SQRT1_2),
    (t) => ops.erf(t),
    (t) => ops.mul(t, 0.5),
    (t) => ops.add(t, 0.5),
  );

export function geluForward<T>(ops: KernelOps<T>, x: T): T {
  return ops.tidy(() => {
    const cdf = normalCdf(ops, x);
    const y = ops.mul(x, cdf);
    ops.dispose(cdf);
    return y;
  });
}

/** dL/dx = dy·(Φ(x) + x·φ(x)), with φ(x) = exp(−x²/2)/√(2π); at most three temporaries alive. */
export function geluGradient<T>(ops: KernelOps<T>, x: T, dy: T): T {
  return ops.tidy(() => {
    const cdf = normalCdf(ops, x);
    const xPdf = chain(
      ops,
      x,
      (t) => ops.square(t),
      (t) => ops.mul(t, -0.5),
      (t) => ops.exp(t),
      (t) => ops.mul(t, 1 / Math.sqrt(2 * Math.PI)),
      (t) => ops.mul(t, x),
    );
    const slope = consume(ops, cdf, xPdf, (a, b) => ops.add(a, b));
    const dx = ops.mul(dy, slope);
    ops.dispose(slope);
    return dx;
  });
}
