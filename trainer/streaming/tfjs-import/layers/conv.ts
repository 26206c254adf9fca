// Convolutions: Conv2D (kernel, strides, dilation_rate, groups, use_bias); DepthwiseConv2D (groups =
// cin, filters = cin·depth_multiplier); SeparableConv2D (`<layer>/depthwise`, grouped and without
// bias, then `<layer>`, 1×1 with the bias); and Dense on a feature map (a 1×1 convolution: Keras
// Dense acts on the last axis of every pixel). Each may fuse an activation (`<layer>/<fn>`).

import type { Op, Pair } from '../../graph.ts';
import { type KerasLayer, TfjsImportError } from '../model-json.ts';
import { addPadding, kerasPadding } from '../same-padding.ts';
import type { WeightLocation } from '../weights.ts';
import { activationOf } from './activation.ts';
import { bool, identity, type LayerContext, type LayerTranslator, pairOf, single } from './context.ts';

type ConvKind = 'standard' | 'depthwise' | 'separable';

const CONV_KINDS: Readonly<Record<string, ConvKind>> = {
  Conv2D: 'standard',
  Convolution2D: 'standard',
  DepthwiseConv2D: 'depthwise',
  SeparableConv2D: 'separable',
  SeparableConvolution2D: 'separable',
};

/** The Keras classes that are convolutions (zero padding folds into them: zero-padding.ts). */
export const CONV_CLASSES: ReadonlySet<string> = new Set(Object.keys(CONV_KINDS));

/** A 1×1 convolution (the pointwise half of a separable one, or Dense on a feature map). */
function oneByOne(filters: number, bias: boolean): Op {
  return {
    kind: 'conv2d',
    filters,
    kernel: [1, 1],
    stride: [1, 1],
    dilation: [1, 1],
    padding: [0, 0, 0, 0],
    groups: 1,
    bias,
  };
}

function conv(c: LayerContext, layer: KerasLayer, kind: ConvKind): void {
  const cfg = layer.config;
  const where = `layer '${layer.name}' (${layer.className})`;
  const input = single(layer);
  const cin = c.channelsOf(input);
  const kernel = pairOf(cfg.kernel_size, where, 'kernel_size');
  const stride = pairOf(cfg.strides ?? 1, where, 'strides');
  const dilation = pairOf(cfg.dilation_rate ?? 1, where, 'dilation_rate');
  const effective: Pair = [dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1];
  const { padding: own, needsAlignment } = kerasPadding(cfg.padding, effective, stride, where);
  const padding = addPadding(own, c.foldedPadding(input));
  const bias = bool(cfg, 'use_bias', true);
  const activation = activationOf(cfg.activation, layer, c);
  const inNode = c.nodeOf(input);
  const find = (param: string, shape: number[]): WeightLocation =>
    c.weights.require(layer.name, layer.className, param, shape);

  let out: string;
  let cout: number;
  if (kind === 'standard') {
    const groups = (cfg.groups ?? 1) as number;
    cout = cfg.filters as number;
    if (!Number.isInteger(cout) || cout < 1)
      throw new TfjsImportError(`${where}: filters must be a positive integer`);
    if (!Number.isInteger(groups) || groups < 1 || cin % groups !== 0 || cout % groups !== 0) {
      throw new TfjsImportError(
        `${where}: groups ${String(groups)} must divide the input channels ${cin} and filters ${cout}`,
      );
    }
    const shape = [kernel[0], kernel[1], cin / groups, cout];
    out = c.emit(
      layer.name,
      { kind: 'conv2d', filters: cout, kernel, stride, dilation, padding, groups, bias },
      [inNode],
    );
    c.addRecipe({ key: `${out}/kernel`, shape, from: [find('kernel', shape)], make: identity });
  } else {
    // tfjs-layers leaves depth_multiplier out of SeparableConv2D configs; the kernel's shape has it.
    const m = (cfg.depth_multiplier ??
      c.weights.find(layer.name, 'depthwise_kernel')?.spec.shape[3] ??
      1) as number;
    if (!Number.isInteger(m) || m < 1)
      throw new TfjsImportError(`${where}: depth_multiplier must be a positive integer`);
    // Keras [kh, kw, cin, m] read row-major is [kh, kw, 1, cin·m]: output c·m + j reads input c, as ops.conv2d expects.
    const dwShape = [kernel[0], kernel[1], cin, m];
    const depthwise = kind === 'separable' ? `${layer.name}/depthwise` : layer.name;
    const dwBias = kind === 'depthwise' && bias;
    c.emit(
      depthwise,
      { kind: 'conv2d', filters: cin * m, kernel, stride, dilation, padding, groups: cin, bias: dwBias },
      [inNode],
    );
    c.addRecipe({
      key: `${depthwise}/kernel`,
      shape: [kernel[0], kernel[1], 1, cin * m],
      from: [find('depthwise_kernel', dwShape)],
      make: identity,
    });
    out = depthwise;
    cout = cin * m;
    if (kind === 'separable') {
      cout = cfg.filters as number;
      const pwShape = [1, 1, cin * m, cout];
      out = c.emit(layer.name, oneByOne(cout, bias), [depthwise]);
      c.addRecipe({
        key: `${out}/kernel`,
        shape: pwShape,
        from: [find('pointwise_kernel', pwShape)],
        make: identity,
      });
    }
  }
  if (bias) c.addRecipe({ key: `${out}/bias`, shape: [cout], from: [find('bias', [cout])], make: identity });
  if (needsAlignment) {
    c.addAlignment({
      layer: layer.name,
      className: layer.className,
      node: kind === 'separable' ? `${layer.name}/depthwise` : out,
      kernel: effective,
      stride,
    });
  }
  c.finish(layer, out, cout, activation);
}

/** Dense on a rank-4 tensor acts on the channel axis of every pixel: a 1×1 convolution. */
function denseOnMap(c: LayerContext, layer: KerasLayer): void {
  const cfg = layer.config;
  const input = single(layer);
  const cin = c.channelsOf(input);
  const units = cfg.units as number;
  const bias = bool(cfg, 'use_bias', true);
  const activation = activationOf(cfg.activation, layer, c);
  const out = c.emit(layer.name, oneByOne(units, bias), [c.nodeOf(input)]);
  const kernel = c.weights.require(layer.name, layer.className, 'kernel', [cin, units]);
  c.addRecipe({ key: `${out}/kernel`, shape: [1, 1, cin, units], from: [kernel], make: identity });
  if (bias) {
    const b = c.weights.require(layer.name, layer.className, 'bias', [units]);
    c.addRecipe({ key: `${out}/bias`, shape: [units], from: [b], make: identity });
  }
  c.finish(layer, out, units, activation);
}

export const CONV_LAYERS: Readonly<Record<string, LayerTranslator>> = {
  ...Object.fromEntries(
    Object.entries(CONV_KINDS).map(([className, kind]): [string, LayerTranslator] => [
      className,
      (c, layer) => conv(c, layer, kind),
    ]),
  ),
  Dense: denseOnMap,
};
