// Merges: Add (inputs of equal channels) and Concatenate (along the channel axis only).

import { type KerasLayer, TfjsImportError } from '../model-json.ts';
import { UnsupportedLayerError } from '../refusals.ts';
import { before, type LayerContext, type LayerTranslator } from './context.ts';

function merge(c: LayerContext, layer: KerasLayer, kind: 'add' | 'concat'): void {
  if (layer.inputs.length < 2) {
    throw new TfjsImportError(`layer '${layer.name}' (${layer.className}) needs at least two inputs`);
  }
  const channels = layer.inputs.map((i) => c.channelsOf(i));
  if (kind === 'concat') {
    const axis = layer.config.axis ?? -1;
    if (axis !== -1 && axis !== 3) {
      throw new UnsupportedLayerError(
        layer,
        `concatenates along axis ${String(axis)}; only concatenation along the channel axis (-1) is local`,
        `Concatenate channels instead, or ${before(c, layer)}.`,
      );
    }
  } else if (channels.some((ch) => ch !== channels[0])) {
    throw new TfjsImportError(
      `layer '${layer.name}' (Add) adds inputs of ${channels.join(', ')} channels (${layer.inputs.join(', ')})`,
    );
  }
  const out = c.emit(
    layer.name,
    { kind },
    layer.inputs.map((i) => c.nodeOf(i)),
  );
  c.finish(layer, out, kind === 'add' ? (channels[0] as number) : channels.reduce((a, b) => a + b, 0));
}

export const MERGE_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  Add: (c, layer) => merge(c, layer, 'add'),
  Concatenate: (c, layer) => merge(c, layer, 'concat'),
};
