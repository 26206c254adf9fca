// SGD with momentum and Adam over named parameters, with weight decay. The state is plain named
// tensors so checkpoints can save and restore it exactly.

import * as tf from '@tensorflow/tfjs-core';

export type OptimizerConfig =
  | { type: 'sgd'; momentum: number; weightDecay: number; nesterov?: boolean }
  | { type: 'adam'; beta1?: number; beta2?: number; epsilon?: number; weightDecay: number };

export interface Optimizer {
  readonly config: OptimizerConfig;
  /** Applies one update with the given (already averaged) gradients and learning rate. */
  apply(params: ReadonlyMap<string, tf.Variable>, grads: ReadonlyMap<string, tf.Tensor>, lr: number): void;
  /** Named state tensors (momentum buffers, Adam moments) and scalars (Adam's step) for checkpoints. */
  state(): { tensors: Map<string, tf.Tensor>; scalars: Record<string, number> };
  restore(tensors: ReadonlyMap<string, tf.Tensor>, scalars: Record<string, number>): void;
  dispose(): void;
}

export function createOptimizer(config: OptimizerConfig): Optimizer {
  const slots = new Map<string, tf.Variable>();
  let steps = 0;
  const slot = (name: string, like: tf.Tensor): tf.Variable => {
    let v = slots.get(name);
    if (!v) {
      v = tf.variable(tf.zerosLike(like), false);
      slots.set(name, v);
    }
    return v;
  };
  const assign = (v: tf.Variable, t: tf.Tensor): void => {
    v.assign(t);
  };
  return {
    config,
    apply(params, grads, lr) {
      steps++;
      tf.tidy(() => {
        for (const [name, p] of params) {
          const g0 = grads.get(name);
          if (!g0) continue;
          // Weight decay as L2 on SGD (PyTorch's convention); decoupled for Adam (AdamW).
          if (config.type === 'sgd') {
            const g = config.weightDecay > 0 ? tf.add(g0, tf.mul(p, config.weightDecay)) : g0;
            if (config.momentum > 0) {
              const m = slot(`${name}/momentum`, p);
              const next = tf.add(tf.mul(m, config.momentum), g);
              assign(m, next);
              const step = config.nesterov ? tf.add(g, tf.mul(next, config.momentum)) : next;
              assign(p, tf.sub(p, tf.mul(step, lr)));
            } else {
              assign(p, tf.sub(p, tf.mul(g, lr)));
            }
          } else {
            const b1 = config.beta1 ?? 0.9;
            const b2 = config.beta2 ?? 0.999;
            const eps = config.epsilon ?? 1e-8;
            const m = slot(`${name}/m`, p);
            const v = slot(`${name}/v`, p);
            assign(m, tf.add(tf.mul(m, b1), tf.mul(g0, 1 - b1)));
            assign(v, tf.add(tf.mul(v, b2), tf.mul(tf.square(g0), 1 - b2)));
            const mHat = tf.div(m, 1 - b1 ** steps);
            const vHat = tf.div(v, 1 - b2 ** steps);
            let update = tf.div(mHat, tf.add(tf.sqrt(vHat), eps));
            if (config.weightDecay > 0) update = tf.add(update, tf.mul(p, config.weightDecay));
            assign(p, tf.sub(p, tf.mul(update, lr)));
          }
        }
      });
    },
    state() {
      return { tensors: new Map([...slots].map(([n, v]) => [n, v as tf.Tensor])), scalars: { steps } };
    },
    restore(tensors, scalars) {
      for (const v of slots.values()) v.dispose();
      slots.clear();
      // A variable shares t's reference-counted data, so the caller may dispose t (a clone leaked).
      for (const [n, t] of tensors) slots.set(n, tf.variable(t, false));
      steps = scalars.steps ?? 0;
    },
    dispose() {
      for (const v of slots.values()) v.dispose();
      slots.clear();
    },
  };
}
