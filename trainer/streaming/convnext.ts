// ConvNeXt bodies (Liu et al. 2022; the atto…nano variants of ConvNeXt V2, Woo et al. 2023, as timm
// defines them), with timm's layer names: a 4×4/4 patchify stem and layer norm, then four stages
// of inverted-bottleneck blocks, each stage after the first opening with layer norm and a 2×2/2
// conv. Every op is local (layer norm is per pixel), so the whole network streams exactly.

import { BodyBuilder } from './builder.ts';
import type { Body } from './graph.ts';

export type ConvNextVariant = 'atto' | 'femto' | 'pico' | 'nano' | 'tiny';
export const CONVNEXT_VARIANTS: readonly ConvNextVariant[] = ['atto', 'femto', 'pico', 'nano', 'tiny'];

/** Blocks per stage and channels of stage 0 (stage i has width·2^i), as timm's convnext_<variant>. */
export const CONVNEXT_SHAPES: Readonly<
  Record<ConvNextVariant, { depths: readonly number[]; width: number }>
> = {
  atto: { depths: [2, 2, 6, 2], width: 40 },
  femto: { depths: [2, 2, 6, 2], width: 48 },
  pico: { depths: [2, 2, 6, 2], width: 64 },
  nano: { depths: [2, 2, 8, 2], width: 80 },
  tiny: { depths: [3, 3, 9, 3], width: 96 },
};

/** ConvNeXt's layer-scale start (ls_init_value): residual branches begin almost switched off. */
export const CONVNEXT_LAYER_SCALE_INIT = 1e-6;

export interface ConvNextOptions {
  inputChannels?: number;
  /** Channels of stage 0 (the variant's by default); smaller for tests. */
  width?: number;
  /** Starting value of the layer scales (1e-6); tests raise it so every branch counts. */
  layerScaleInit?: number;
}

/**
 * ConvNeXt from the stem to the end of stage 3; block outputs are named `stages.S.blocks.B`.
 * A block: 7×7 depthwise conv (padding 3), layer norm, 1×1 conv to 4× the channels, GELU, 1×1
 * conv back, layer scale, plus the block's input.
 */
export function convnext(variant: ConvNextVariant, o: ConvNextOptions = {}): Body {
  const { depths } = CONVNEXT_SHAPES[variant];
  const width = o.width ?? CONVNEXT_SHAPES[variant].width;
  const lsInit = o.layerScaleInit ?? CONVNEXT_LAYER_SCALE_INIT;
  const b = new BodyBuilder(`convnext-${variant}`, o.inputChannels ?? 3);
  let x = b.conv(b.input, { filters: width, kernel: 4, stride: 4, name: 'stem.0' });
  x = b.layerNorm(x, 'stem.1');
  depths.forEach((blocks, stage) => {
    const c = width * 2 ** stage;
    if (stage > 0) {
      const n = b.layerNorm(x, `stages.${stage}.downsample.0`);
      x = b.conv(n, { filters: c, kernel: 2, stride: 2, name: `stages.${stage}.downsample.1` });
    }
    for (let i = 0; i < blocks; i++) {
      const p = `stages.${stage}.blocks.${i}`;
      let y = b.conv(x, { filters: c, kernel: 7, padding: 3, groups: c, name: `${p}.conv_dw` });
      y = b.layerNorm(y, `${p}.norm`);
      y = b.activation(
        b.conv(y, { filters: 4 * c, kernel: 1, name: `${p}.mlp.fc1` }),
        'gelu',
        undefined,
        `${p}.mlp.act`,
      );
      y = b.conv(y, { filters: c, kernel: 1, name: `${p}.mlp.fc2` });
      y = b.layerScale(y, lsInit, `${p}.gamma`);
      x = b.add([y, x], p);
    }
  });
  return b.build(x);
}

/** Whether `name` is a stage name (`stages.0` … `stages.3`) that means its last block. */
export const isConvNextStage = (name: string): boolean => /^stages\.[0-3]$/.test(name);

/** The last block of a stage: `stages.2` → `stages.2.blocks.5` for atto. */
export function convnextStageEnd(variant: ConvNextVariant, stage: string): string {
  const s = Number(stage.slice('stages.'.length));
  return `${stage}.blocks.${(CONVNEXT_SHAPES[variant].depths[s] as number) - 1}`;
}
