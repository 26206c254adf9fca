// Pointwise activations (exact GELU among them): Activation, ReLU (max_value 6 → relu6, negative_slope → leakyRelu),
// LeakyReLU, ELU; and activationOf, which reads a fused `activation` setting for the other families.

import type { ActivationFn } from '../../graph.ts';
import type { Config, KerasLayer } from '../model-json.ts';
import { UnsupportedLayerError } from '../refusals.ts';
import {
  type Activation,
  activationOp,
  before,
  type LayerContext,
  type LayerTranslator,
  passThrough,
  single,
} from './context.ts';

/** Keras activation names (Keras 2 and 3, tfjs spellings) that have an op; null for 'linear'. */
export function activationOf(raw: unknown, layer: KerasLayer, c: LayerContext): Activation | null {
  // Keras 3 may serialise a built-in activation as {class_name: 'function', config: 'relu', …}.
  const name = typeof raw === 'object' && raw !== null ? (raw as Config).config : raw;
  if (name === undefined || name === null || name === 'linear') return null;
  switch (name) {
    case 'relu':
    case 'relu6':
    case 'sigmoid':
    case 'tanh':
    case 'elu':
    case 'gelu': // exact (erf) in tfjs-layers, and Keras's default (approximate=False)
      return { fn: name as ActivationFn };
    case 'leaky_relu':
      return { fn: 'leakyRelu', alpha: 0.2 }; // Keras 3's default negative slope
    default:
      throw new UnsupportedLayerError(
        layer,
        `uses the activation '${String(name)}', which the streamed body has no op for (its activations are ` +
          'relu, relu6, leakyRelu, elu, sigmoid, tanh, exact gelu, linear)',
        `Retrain with a supported activation, or ${before(c, layer)}.`,
      );
  }
}

function pointwise(c: LayerContext, layer: KerasLayer, activation: Activation | null): void {
  const input = single(layer);
  if (activation === null) {
    passThrough(c, layer, input); // 'linear': no node
    return;
  }
  const out = c.emit(layer.name, activationOp(activation), [c.nodeOf(input)]);
  c.finish(layer, out, c.channelsOf(input));
}

function relu(c: LayerContext, layer: KerasLayer): void {
  const cfg = layer.config;
  const max = cfg.max_value ?? null;
  const slope = (cfg.negative_slope ?? 0) as number;
  const threshold = (cfg.threshold ?? 0) as number;
  if (threshold !== 0 || (max !== null && max !== 6) || (max !== null && slope !== 0)) {
    throw new UnsupportedLayerError(
      layer,
      `is a ReLU with max_value ${String(max)}, negative_slope ${slope} and threshold ${threshold}; the streamed ` +
        'body has relu, relu6 (max_value 6) and leakyRelu (negative_slope) only',
      `Retrain with one of those, or ${before(c, layer)}.`,
    );
  }
  if (max === 6) pointwise(c, layer, { fn: 'relu6' });
  else if (slope !== 0) pointwise(c, layer, { fn: 'leakyRelu', alpha: slope });
  else pointwise(c, layer, { fn: 'relu' });
}

export const ACTIVATION_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  Activation: (c, layer) => pointwise(c, layer, activationOf(layer.config.activation, layer, c)),
  ReLU: relu,
  // Keras 2 and tfjs call the slope alpha (default 0.3); Keras 3 negative_slope (also 0.3).
  LeakyReLU: (c, layer) =>
    pointwise(c, layer, {
      fn: 'leakyRelu',
      alpha: (layer.config.negative_slope ?? layer.config.alpha ?? 0.3) as number,
    }),
  ELU: (c, layer) => pointwise(c, layer, { fn: 'elu', alpha: (layer.config.alpha ?? 1) as number }),
};
