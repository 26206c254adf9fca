// LayerNormalization over the channel axis (ConvNeXt's norm, as Keras writes it): a `layerNorm`
// node, whose statistics are per pixel, so it streams exactly; gamma and beta stay trainable.
// Over any other axis the statistics are image-wide, and the layer is refused as before.

import type { KerasLayer } from '../model-json.ts';
import { refusal, UnsupportedLayerError } from '../refusals.ts';
import { before, bool, identity, type LayerContext, type LayerTranslator, single } from './context.ts';

/** Whether a Keras `axis` setting is the channel axis alone (-1 or 3 of NHWC). */
export function channelAxisOnly(axis: unknown): boolean {
  const axes = Array.isArray(axis) ? axis : [axis ?? -1];
  return axes.length === 1 && (axes[0] === -1 || axes[0] === 3);
}

/** y = (x − mean_c)/√(var_c + ε)·γ + β; γ = 1 without `scale`, β = 0 without `center`. */
function layerNorm(c: LayerContext, layer: KerasLayer): void {
  const cfg = layer.config;
  if (!channelAxisOnly(cfg.axis)) throw refusal(layer, c.graph.input);
  if (cfg.rms_scaling === true) {
    throw new UnsupportedLayerError(
      layer,
      'uses rms_scaling (Keras 3: no mean subtracted), which the layer norm op does not compute',
      `Retrain without rms_scaling, or ${before(c, layer)}.`,
    );
  }
  const input = single(layer);
  const ch = c.channelsOf(input);
  // Keras's and tfjs's default ε is 1e-3 (ConvNeXt's is 1e-6, set in the model's config).
  const epsilon = (cfg.epsilon ?? 1e-3) as number;
  const out = c.emit(layer.name, { kind: 'layerNorm', epsilon }, [c.nodeOf(input)]);
  const param = (name: 'gamma' | 'beta', present: boolean, absent: number): void => {
    if (present) {
      const w = c.weights.require(layer.name, layer.className, name, [ch]);
      c.addRecipe({ key: `${out}/${name}`, shape: [ch], from: [w], make: identity });
    } else {
      c.addRecipe({
        key: `${out}/${name}`,
        shape: [ch],
        from: [],
        make: () => new Float32Array(ch).fill(absent),
      });
    }
  };
  param('gamma', bool(cfg, 'scale', true), 1);
  param('beta', bool(cfg, 'center', true), 0);
  c.finish(layer, out, ch);
}

export const LAYER_NORM_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  LayerNormalization: layerNorm,
};
