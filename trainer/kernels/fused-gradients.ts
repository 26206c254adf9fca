// The gradients of the project's fused kernels (gelu.ts, layer-norm.ts), as tfjs gradient configs
// written against KernelOps: the engine registers them with tf.registerGradient
// (backend/kernels/fused-gradients.ts), the planner runs them on shapes (plan/sim-backends.ts), so
// both save the same tensors on the tape and run the same backward ops.
import { FUSED_GELU, geluGradient } from './gelu.ts';
import {
  FUSED_LAYER_NORM,
  layerNormBetaGradient,
  layerNormGammaGradient,
  layerNormInputGradient,
} from './layer-norm.ts';
import type { KernelOps } from './ops.ts';

export interface FusedGradient {
  /** The inputs the tape keeps (tfjs's inputsToSave); `saved` holds them in this order. */
  readonly inputsToSave: readonly string[];
  /**
   * One thunk per input, as tfjs's gradFunc returns: backprop runs only the thunks of inputs that
   * need a gradient, each in a tidy of its own, so nothing is computed before a thunk runs.
   */
  grads<T>(
    ops: KernelOps<T>,
    dy: T,
    saved: readonly T[],
    attrs: Readonly<Record<string, unknown>>,
  ): Record<string, () => T>;
}

const epsilonOf = (attrs: Readonly<Record<string, unknown>>): number => {
  const e = attrs.epsilon;
  if (typeof e !== 'number') throw new Error(`${FUSED_LAYER_NORM}: missing the epsilon attribute`);
  return e;
};

export const FUSED_GRADIENTS: Readonly<Record<string, FusedGradient>> = {
  [FUSED_GELU]: {
    inputsToSave: ['x'],
    grads<T>(ops: KernelOps<T>, dy: T, saved: readonly T[]) {
      const x = saved[0] as T;
      return { x: () => geluGradient(ops, x, dy) };
    },
  },
  [FUSED_LAYER_NORM]: {
    inputsToSave: ['x', 'gamma'],
    grads<T>(ops: KernelOps<T>, dy: T, saved: readonly T[], attrs: Readonly<Record<string, unknown>>) {
      const [x, gamma] = saved as [T, T];
      const eps = epsilonOf(attrs);
      return {
        x: () => layerNormInputGradient(ops, x, gamma, dy, eps),
        gamma: () => layerNormGammaGradient(ops, x, gamma, dy, eps),
        beta: () => layerNormBetaGradient(ops, gamma, dy),
      };
    },
  },
};
