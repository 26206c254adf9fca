// Imported weights as TensorFlow.js tensors and trainable NetworkParams.

import * as tf from '@tensorflow/tfjs-core';
import { initParams, type Network, type NetworkParams } from '../network.ts';
import type { WeightArray } from './weights.ts';

/** The weights as tensors, by the same names; `scoped(result, 'body')` is runBody's params. The caller disposes them. */
export function weightTensors(weights: ReadonlyMap<string, WeightArray>): Map<string, tf.Tensor> {
  return new Map([...weights].map(([name, w]) => [name, tf.tensor(w.data, [...w.shape], 'float32')]));
}

export interface ImportedParams {
  readonly params: NetworkParams;
  /** Parameters that took the imported values. */
  readonly loaded: string[];
  /** Parameters the model has no weight for (or one of another shape, e.g. a head with other classes): freshly initialised. */
  readonly initialised: string[];
}

/**
 * Trainable parameters for `net` (e.g. from importedNetwork): seeded initialisation as initParams
 * does, then every parameter the import has a weight of the same shape for takes that weight.
 * Throws when an imported body or trunk weight has no parameter (the network is not the imported one).
 */
export function importedParams(
  net: Network,
  weights: ReadonlyMap<string, WeightArray>,
  seed: number,
): ImportedParams {
  const params = initParams(net, seed);
  const loaded: string[] = [];
  const initialised: string[] = [];
  for (const [name, v] of params) {
    const w = weights.get(name);
    if (w && w.shape.length === v.shape.length && w.shape.every((d, i) => d === v.shape[i])) {
      tf.tidy(() => v.assign(tf.tensor(w.data, v.shape, 'float32')));
      loaded.push(name);
    } else initialised.push(name);
  }
  const unused = [...weights.keys()].filter((n) => !params.has(n) && !n.startsWith('head/'));
  if (unused.length > 0) {
    for (const v of params.values()) v.dispose();
    throw new Error(
      `imported weights ${unused.join(', ')} have no parameter in network '${net.body.name}'; ` +
        'build the network from the same import (importedNetwork)',
    );
  }
  return { params, loaded, initialised };
}
