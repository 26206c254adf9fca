// ZeroPadding2D: folded into its only consumer where that consumer pads with zeros anyway (a
// convolution, a 'valid' average pool), else a `pad` node.

import type { Padding } from '../../graph.ts';
import { type KerasLayer, TfjsImportError } from '../model-json.ts';
import { type LayerContext, type LayerTranslator, single } from './context.ts';
import { CONV_CLASSES } from './conv.ts';
import { AVG_POOL_CLASSES } from './pool.ts';

function zeroPadding(c: LayerContext, layer: KerasLayer): void {
  const where = `layer '${layer.name}' (ZeroPadding2D)`;
  const raw = layer.config.padding ?? 1;
  let padding: Padding;
  if (typeof raw === 'number') padding = [raw, raw, raw, raw];
  else if (Array.isArray(raw) && raw.length === 2 && raw.every((v) => typeof v === 'number')) {
    padding = [raw[0], raw[0], raw[1], raw[1]] as Padding;
  } else if (Array.isArray(raw) && raw.length === 2 && raw.every((v) => Array.isArray(v) && v.length === 2)) {
    const [[t, b], [l, r]] = raw as [[number, number], [number, number]];
    padding = [t, b, l, r];
  } else {
    throw new TfjsImportError(
      `${where}: padding ${JSON.stringify(raw)} is not n, [h, w] or [[top, bottom], [left, right]]`,
    );
  }
  if (!padding.every((p) => Number.isInteger(p) && p >= 0)) {
    throw new TfjsImportError(`${where}: padding must be non-negative integers, got ${JSON.stringify(raw)}`);
  }
  const input = single(layer);
  if (foldable(c, layer, padding)) {
    c.fold(layer, padding);
    return;
  }
  const out = c.emit(layer.name, { kind: 'pad', padding }, [c.nodeOf(input)]);
  c.finish(layer, out, c.channelsOf(input));
}

/**
 * Zero padding folds into its only consumer when that is a convolution (its padding is zeros
 * too) or a 'valid' average pool whose padded sides stay smaller than the window. Not into a
 * max pool, whose padding never wins, and not under a 'same' conv with stride > 1, whose
 * alignment requirement is on its own input.
 */
function foldable(c: LayerContext, layer: KerasLayer, padding: Padding): boolean {
  const users = c.consumersOf(layer.name);
  const user = users[0];
  if (c.keeps(layer.name) || users.length !== 1 || !user) return false;
  const cfg = user.config;
  if (CONV_CLASSES.has(user.className)) {
    const strides = cfg.strides ?? 1;
    const strided = Array.isArray(strides) ? strides.some((s) => s !== 1) : strides !== 1;
    return cfg.padding !== 'same' || !strided;
  }
  if (AVG_POOL_CLASSES.has(user.className)) {
    const k = cfg.pool_size ?? 2;
    const [kh, kw] = Array.isArray(k) ? (k as number[]) : [k as number, k as number];
    return (
      (cfg.padding ?? 'valid') === 'valid' &&
      padding[0] < (kh as number) &&
      padding[1] < (kh as number) &&
      padding[2] < (kw as number) &&
      padding[3] < (kw as number)
    );
  }
  return false;
}

export const ZERO_PADDING_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  ZeroPadding2D: zeroPadding,
};
