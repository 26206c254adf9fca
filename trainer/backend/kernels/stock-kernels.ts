// Stock kernels that the project replaced, by backend and name, so that a project kernel can hand
// unusual cases back to the original, and benchmarks can restore it.
import type * as tf from '@tensorflow/tfjs-core';

const stock = new Map<string, tf.KernelConfig>();

const key = (backendName: string, kernelName: string) => `${backendName}/${kernelName}`;

export function rememberStockKernel(config: tf.KernelConfig): void {
  stock.set(key(config.backendName, config.kernelName), config);
}

export function stockKernel(backendName: string, kernelName: string): tf.KernelConfig | undefined {
  return stock.get(key(backendName, kernelName));
}
