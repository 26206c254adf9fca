// InceptionNeXt bodies (Yu et al. 2024, "InceptionNeXt: When Inception Meets ConvNeXt"), atto and
// tiny as timm defines them, with timm's layer names: ConvNeXt's macro layout (4×4/4 stem, four
// stages, 2×2/2 downsampling, GELU MLP, layer scale) with frozen batch-norm instead of layer norm,
// and an Inception token mixer instead of the 7×7 depthwise conv: the channels split into an
// identity part and three depthwise branches (square k×k, band 1×k, band k×1), concatenated back.
// The split is a channel slice and every branch is local, so the DAG streams exactly.

import { BodyBuilder } from './builder.ts';
import { type Body, BodyError } from './graph.ts';

export type InceptionNextVariant = 'atto' | 'tiny';
export const INCEPTIONNEXT_VARIANTS: readonly InceptionNextVariant[] = ['atto', 'tiny'];

export interface InceptionNextShape {
  readonly depths: readonly number[];
  /** Channels of stage 0; stage i has width·2^i. */
  readonly width: number;
  /** Length of the band kernels (1×k and k×1). */
  readonly band: number;
  /** Share of the channels in each convolution branch (timm's branch_ratio). */
  readonly branchRatio: number;
}

/** timm's inception_next_atto and inception_next_tiny. */
export const INCEPTIONNEXT_SHAPES: Readonly<Record<InceptionNextVariant, InceptionNextShape>> = {
  atto: { depths: [2, 2, 6, 2], width: 40, band: 9, branchRatio: 0.25 },
  tiny: { depths: [3, 3, 9, 3], width: 96, band: 11, branchRatio: 0.125 },
};
/** The square branch's kernel (timm's square_kernel_size). */
export const INCEPTIONNEXT_SQUARE_KERNEL = 3;
/** MLP expansion per stage (timm's mlp_ratios: the last stage expands 3×, not 4×). */
export const INCEPTIONNEXT_MLP_RATIOS: readonly number[] = [4, 4, 4, 3];
/** timm's ls_init_value. */
export const INCEPTIONNEXT_LAYER_SCALE_INIT = 1e-6;

export interface InceptionNextOptions {
  inputChannels?: number;
  /** Channels of stage 0 (the variant's by default); smaller for tests. */
  width?: number;
  /** Starting value of the layer scales (1e-6); tests raise it so every branch counts. */
  layerScaleInit?: number;
}

/** Channels of one convolution branch: timm's int(c · branch_ratio). */
export const branchChannels = (c: number, ratio: number): number => Math.floor(c * ratio);

/**
 * InceptionNeXt from the stem to the end of stage 3; block outputs are named `stages.S.blocks.B`.
 * A block: the Inception token mixer, batch-norm (frozen), 1×1 conv to ratio× the channels,
 * GELU, 1×1 conv back, layer scale, plus the block's input.
 */
export function inceptionnext(variant: InceptionNextVariant, o: InceptionNextOptions = {}): Body {
  const shape = INCEPTIONNEXT_SHAPES[variant];
  const width = o.width ?? shape.width;
  if (branchChannels(width, shape.branchRatio) < 1) {
    throw new BodyError(
      `inceptionnext-${variant}: width ${width} leaves its convolution branches no channel ` +
        `(each takes ${shape.branchRatio} of them); use a width of at least ${Math.ceil(1 / shape.branchRatio)}`,
    );
  }
  const lsInit = o.layerScaleInit ?? INCEPTIONNEXT_LAYER_SCALE_INIT;
  const b = new BodyBuilder(`inceptionnext-${variant}`, o.inputChannels ?? 3);
  let x = b.conv(b.input, { filters: width, kernel: 4, stride: 4, name: 'stem.0' });
  x = b.affine(x, 'stem.1');
  shape.depths.forEach((blocks, stage) => {
    const c = width * 2 ** stage;
    if (stage > 0) {
      const n = b.affine(x, `stages.${stage}.downsample.0`);
      x = b.conv(n, { filters: c, kernel: 2, stride: 2, name: `stages.${stage}.downsample.1` });
    }
    for (let i = 0; i < blocks; i++) {
      const p = `stages.${stage}.blocks.${i}`;
      let y = tokenMixer(b, x, `${p}.token_mixer`, c, shape);
      y = b.affine(y, `${p}.norm`);
      const hidden = (INCEPTIONNEXT_MLP_RATIOS[stage] as number) * c;
      y = b.activation(
        b.conv(y, { filters: hidden, kernel: 1, name: `${p}.mlp.fc1` }),
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

/**
 * timm's InceptionDWConv2d: split the c channels into (c − 3g, g, g, g), keep the first part,
 * run a k×k, a 1×band and a band×1 depthwise conv (same-size padding, so each branch keeps the
 * grid) on the others, concatenate in that order.
 */
function tokenMixer(b: BodyBuilder, x: string, p: string, c: number, shape: InceptionNextShape): string {
  const g = branchChannels(c, shape.branchRatio);
  const k = INCEPTIONNEXT_SQUARE_KERNEL;
  const band = shape.band;
  const half = (n: number): number => Math.floor(n / 2);
  const id = b.channelSlice(x, 0, c - 3 * g, `${p}.x_id`);
  const hw = b.channelSlice(x, c - 3 * g, g, `${p}.x_hw`);
  const w = b.channelSlice(x, c - 2 * g, g, `${p}.x_w`);
  const h = b.channelSlice(x, c - g, g, `${p}.x_h`);
  return b.concat(
    [
      id,
      b.conv(hw, { filters: g, kernel: k, padding: half(k), groups: g, name: `${p}.dwconv_hw` }),
      b.conv(w, {
        filters: g,
        kernel: [1, band],
        padding: [0, half(band)],
        groups: g,
        name: `${p}.dwconv_w`,
      }),
      b.conv(h, {
        filters: g,
        kernel: [band, 1],
        padding: [half(band), 0],
        groups: g,
        name: `${p}.dwconv_h`,
      }),
    ],
    p,
  );
}

/** Whether `name` is a stage name (`stages.0` … `stages.3`) that means its last block. */
export const isInceptionNextStage = (name: string): boolean => /^stages\.[0-3]$/.test(name);

/** The last block of a stage: `stages.2` → `stages.2.blocks.5` for atto. */
export function inceptionnextStageEnd(variant: InceptionNextVariant, stage: string): string {
  const s = Number(stage.slice('stages.'.length));
  return `${stage}.blocks.${(INCEPTIONNEXT_SHAPES[variant].depths[s] as number) - 1}`;
}
