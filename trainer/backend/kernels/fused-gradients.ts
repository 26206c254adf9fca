// The fused ops' gradients (trainer/kernels/fused-gradients.ts) as tfjs gradient configs, on the
// tensors of whichever backend is active when backprop runs. The planner runs the same source.
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_GRADIENTS } from '../../kernels/fused-gradients.ts';
import { tfOps } from './tf-ops.ts';

/** Registers each fused op's gradient once per process (tfjs's gradient registry is global). */
export function registerFusedGradients(): void {
  for (const [kernelName, g] of Object.entries(FUSED_GRADIENTS)) {
    if (tf.getGradient(kernelName) !== undefined) continue;
    tf.registerGradient({
      kernelName,
      inputsToSave: [...g.inputsToSave],
      gradFunc: (dy, saved, attrs) => {
        if (Array.isArray(dy)) throw new Error(`${kernelName}: one output, got ${dy.length} gradients`);
        return g.grads(tfOps(tf.backend(), tf.getBackend()), dy, saved, attrs as Record<string, unknown>);
      },
    });
  }
}
