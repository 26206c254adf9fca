// Local pooling: MaxPooling2D and AveragePooling2D. A 'same' average pool is taken only when it
// pads nothing (TF averages border windows over the real pixels; the streamed avgPool does not).

import type { KerasLayer } from '../model-json.ts';
import { UnsupportedLayerError } from '../refusals.ts';
import { addPadding, kerasPadding } from '../same-padding.ts';
import { type LayerContext, type LayerTranslator, pairOf, single } from './context.ts';

/** The Keras classes of an average pool (zero padding may fold into one: zero-padding.ts). */
export const AVG_POOL_CLASSES: ReadonlySet<string> = new Set(['AveragePooling2D', 'AvgPool2D']);

function pool(c: LayerContext, layer: KerasLayer, kind: 'maxPool' | 'avgPool'): void {
  const cfg = layer.config;
  const where = `layer '${layer.name}' (${layer.className})`;
  const input = single(layer);
  const kernel = pairOf(cfg.pool_size ?? 2, where, 'pool_size');
  const stride = pairOf(cfg.strides ?? kernel, where, 'strides');
  const { padding: own, needsAlignment } = kerasPadding(cfg.padding, kernel, stride, where);
  if (kind === 'avgPool' && own.some((p) => p > 0)) {
    throw new UnsupportedLayerError(
      layer,
      `uses 'same' padding with pool_size [${kernel.join(', ')}] > strides [${stride.join(', ')}]: TF then averages ` +
        'border windows over the real pixels only, while the streamed avgPool divides by the whole window ' +
        "(PyTorch's count_include_pad), so the borders would differ",
      "Use padding 'valid' (or pool_size equal to strides) and retrain, or end the streamed body before it.",
    );
  }
  const padding = addPadding(own, c.foldedPadding(input));
  const out = c.emit(layer.name, { kind, kernel, stride, padding }, [c.nodeOf(input)]);
  if (needsAlignment)
    c.addAlignment({ layer: layer.name, className: layer.className, node: out, kernel, stride });
  c.finish(layer, out, c.channelsOf(input));
}

export const POOL_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  MaxPooling2D: (c, layer) => pool(c, layer, 'maxPool'),
  MaxPool2D: (c, layer) => pool(c, layer, 'maxPool'),
  AveragePooling2D: (c, layer) => pool(c, layer, 'avgPool'),
  AvgPool2D: (c, layer) => pool(c, layer, 'avgPool'),
};
