// Layer normalisation over the channels of each pixel (streaming/graph.ts LayerNormOp) as one
// kernel with its own gradient: y = x̂·γ + β, x̂ = (x − μ)·r, r = 1/√(σ² + ε), with μ and σ² (biased)
// over the pixel's channels, as PyTorch's F.layer_norm. Composed of tfjs ops, the tape kept five
// tensors of the input's size per norm (and their gradients until the backward pass ended).
// Fused, the tape keeps x and γ; the gradient recomputes μ and r from x, exactly (the same ops on
// the same x). Keeping x̂ and r instead would keep a [n,h,w,1] tensor more, and they would have to
// be extra outputs of the kernel, for each of which tfjs's backprop makes a zero gradient that
// lives until the backward pass ends. The forward is the op sequence of the old composition.
import type { KernelOps } from './ops.ts';
import { consume, perPixelMean } from './pointwise-chain.ts';

/** The kernel's name. Inputs {x [n,h,w,C], gamma [C], beta [C]}; attribute epsilon. */
export const FUSED_LAYER_NORM = 'TilestreamLayerNorm';

/** x̂ and r [n,h,w,1] of x; intermediates freed as they go. */
function normalised<T>(ops: KernelOps<T>, x: T, epsilon: number): { xhat: T; r: T } {
  const mu = perPixelMean(ops, x);
  const d = ops.sub(x, mu);
  ops.dispose(mu);
  const sq = ops.square(d);
  const variance = perPixelMean(ops, sq);
  ops.dispose(sq);
  const shifted = ops.add(variance, epsilon);
  ops.dispose(variance);
  const r = ops.rsqrt(shifted);
  ops.dispose(shifted);
  const xhat = ops.mul(d, r);
  ops.dispose(d);
  return { xhat, r };
}

export function layerNormForward<T>(ops: KernelOps<T>, x: T, gamma: T, beta: T, epsilon: number): T {
  return ops.tidy(() => {
    const { xhat, r } = normalised(ops, x, epsilon);
    ops.dispose(r);
    const scaled = ops.mul(xhat, gamma);
    ops.dispose(xhat);
    const y = ops.add(scaled, beta);
    ops.dispose(scaled);
    return y;
  });
}

/**
 * dL/dx = r·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ, the means over each pixel's channels;
 * at most three temporaries of x's size alive.
 */
export function layerNormInputGradient<T>(ops: KernelOps<T>, x: T, gamma: T, dy: T, epsilon: number): T {
  return ops.tidy(() => {
    const { xhat, r } = normalised(ops, x, epsilon);
    const g = ops.mul(dy, gamma);
    const meanG = perPixelMean(ops, g);
    const gx = ops.mul(g, xhat);
    const meanGx = perPixelMean(ops, gx);
    ops.dispose(gx);
    const along = consume(ops, xhat, meanGx, (a, b) => ops.mul(a, b));
    const u = consume(ops, g, along, (a, b) => ops.sub(a, b));
    const centred = consume(ops, u, meanG, (a, b) => ops.sub(a, b));
    return consume(ops, centred, r, (a, b) => ops.mul(a, b));
  });
}

/** dL/dγ = Σ over pixels of dy·x̂, shaped as γ. */
export function layerNormGammaGradient<T>(ops: KernelOps<T>, x: T, gamma: T, dy: T, epsilon: number): T {
  return ops.tidy(() => {
    const { xhat, r } = normalised(ops, x, epsilon);
    ops.dispose(r);
    const p = ops.mul(dy, xhat);
    ops.dispose(xhat);
    const s = ops.sum(p, [0, 1, 2]);
    ops.dispose(p);
    return shapedAs(ops, s, gamma);
  });
}

/** dL/dβ = Σ over pixels of dy, shaped as β (whose shape is γ's). */
export const layerNormBetaGradient = <T>(ops: KernelOps<T>, gamma: T, dy: T): T =>
  ops.tidy(() => shapedAs(ops, ops.sum(dy, [0, 1, 2]), gamma));

/** `t` reshaped as `like` when the shapes differ (γ may be given as [1, 1, 1, C]). */
const shapedAs = <T>(ops: KernelOps<T>, t: T, like: T): T =>
  ops.shape(t).join() === ops.shape(like).join() ? t : ops.reshape(t, ops.shape(like));
