// tfjs-core's Node entry (dist/tf-core.node.js, a CommonJS bundle) registers no gradients: the
// gradient configs exist only as ES modules under dist/gradients/, which the @tensorflow/tfjs
// union package imports for its users. Without them every tf.grads call fails with "gradient
// function not found". Those ES modules use extension-less relative imports ('../ops/pad'), which
// Node's ESM resolver refuses, so we load them through a resolve hook limited to files inside
// tfjs-core's dist folder and remove the hook straight afterwards.
//
// The loaded modules are a second copy of tfjs-core's ops, but tfjs keeps its engine, kernel
// registry and gradient registry on the global object, and Tensor's instanceof check is
// structural, so both copies act on the same engine and tensors.
import { registerHooks } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';

const CORE_DIST = '/@tensorflow/tfjs-core/dist/';

let loading: Promise<void> | undefined;

/** True when the gradient of a core op is registered (as after `ensureGradientsRegistered`). */
export function gradientsRegistered(): boolean {
  // Conv2D and Relu stand for the whole set: register_all_gradients registers them together.
  return tf.getGradient('Conv2D') !== undefined && tf.getGradient('Relu') !== undefined;
}

/**
 * Registers tfjs-core's gradient functions once per process. Safe to call many times and when
 * another package (e.g. @tensorflow/tfjs-node through @tensorflow/tfjs) has registered them.
 */
export function ensureGradientsRegistered(): Promise<void> {
  if (gradientsRegistered()) return Promise.resolve();
  loading ??= loadCoreGradients().catch((err: unknown) => {
    loading = undefined;
    throw new Error(
      `could not register the tfjs-core gradients from @tensorflow/tfjs-core/dist/register_all_gradients.js ` +
        `(is @tensorflow/tfjs-core installed completely?): ${String(err)}`,
    );
  });
  return loading;
}

async function loadCoreGradients(): Promise<void> {
  const hooks = registerHooks({
    resolve(specifier, context, nextResolve) {
      const fromCore = context.parentURL?.includes(CORE_DIST) === true;
      if (fromCore && specifier.startsWith('.') && !specifier.endsWith('.js')) {
        try {
          return nextResolve(`${specifier}.js`, context);
        } catch {
          return nextResolve(`${specifier}/index.js`, context);
        }
      }
      return nextResolve(specifier, context);
    },
  });
  try {
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  } finally {
    hooks.deregister();
  }
  if (!gradientsRegistered()) {
    throw new Error('register_all_gradients.js loaded but the Conv2D gradient is still missing');
  }
}
