// BatchNormalization, frozen: the moving statistics folded into a per-channel affine map (an
// `affine` node with `scale` and `shift`). Training-mode statistics are not streamable.

import type { KerasLayer } from '../model-json.ts';
import { UnsupportedLayerError } from '../refusals.ts';
import type { WeightLocation } from '../weights.ts';
import { before, bool, type LayerContext, type LayerTranslator, single } from './context.ts';

/** y = (x − mean)·γ/√(var + ε) + β = x·scale + shift, folded in float64. */
function batchNorm(c: LayerContext, layer: KerasLayer): void {
  const cfg = layer.config;
  const axis = Array.isArray(cfg.axis) ? cfg.axis : [cfg.axis ?? -1];
  if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== 3)) {
    throw new UnsupportedLayerError(
      layer,
      `normalises along axis ${JSON.stringify(cfg.axis)}, not the channel axis, so it is not a per-channel affine map`,
      `Use axis -1, or ${before(c, layer)}.`,
    );
  }
  const input = single(layer);
  const ch = c.channelsOf(input);
  const eps = (cfg.epsilon ?? 1e-3) as number;
  const center = bool(cfg, 'center', true);
  const scaled = bool(cfg, 'scale', true);
  const get = (p: string): WeightLocation => c.weights.require(layer.name, layer.className, p, [ch]);
  const gamma = scaled ? [get('gamma')] : [];
  const beta = center ? [get('beta')] : [];
  const mean = get('moving_mean');
  const variance = get('moving_variance');
  const out = c.emit(layer.name, { kind: 'affine' }, [c.nodeOf(input)]);
  // values: [variance, mean, gamma?, beta?]
  const factor = (v: readonly Float32Array[], i: number): number =>
    (scaled ? ((v[2] as Float32Array)[i] as number) : 1) /
    Math.sqrt(((v[0] as Float32Array)[i] as number) + eps);
  const from = [variance, mean, ...gamma, ...beta];
  c.addRecipe({
    key: `${out}/scale`,
    shape: [ch],
    from,
    make: (v) => Float32Array.from({ length: ch }, (_, i) => factor(v, i)),
  });
  c.addRecipe({
    key: `${out}/shift`,
    shape: [ch],
    from,
    make: (v) =>
      Float32Array.from({ length: ch }, (_, i) => {
        const b = center ? ((v[scaled ? 3 : 2] as Float32Array)[i] as number) : 0;
        return b - ((v[1] as Float32Array)[i] as number) * factor(v, i);
      }),
  });
  c.finish(layer, out, ch);
}

export const BATCH_NORM_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  BatchNormalization: batchNorm,
};
