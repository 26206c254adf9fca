// Built-in networks: ResNet-18/34/50 with frozen batch-norm (torchvision's layout), ConvNeXt and
// InceptionNeXt bodies (convnext.ts, inceptionnext.ts), the MIDL 2018 proof-of-concept network (streaming-algorithm.md Appendix B) and a
// small plain CNN for demos and tests (synthetic-task.md §2). Each is a whole network up to its
// last spatial layer; `splitAt` cuts it into the streamed body and a conventionally run trunk.

import { BodyBuilder } from './builder.ts';
import {
  CONVNEXT_VARIANTS,
  type ConvNextVariant,
  convnext,
  convnextStageEnd,
  isConvNextStage,
} from './convnext.ts';
import { type Body, BodyError, type SplitNetwork, splitAt } from './graph.ts';
import {
  INCEPTIONNEXT_VARIANTS,
  type InceptionNextVariant,
  inceptionnext,
  inceptionnextStageEnd,
  isInceptionNextStage,
} from './inceptionnext.ts';

export type ConvNextArchitecture = `convnext-${ConvNextVariant}`;
export type InceptionNextArchitecture = `inceptionnext-${InceptionNextVariant}`;
export type ResNetArchitecture = 'resnet18' | 'resnet34' | 'resnet50';
export type Architecture =
  | ResNetArchitecture
  | ConvNextArchitecture
  | InceptionNextArchitecture
  | 'midl2018'
  | 'smallcnn';
export const ARCHITECTURES: readonly Architecture[] = [
  'resnet18',
  'resnet34',
  'resnet50',
  ...CONVNEXT_VARIANTS.map((v): ConvNextArchitecture => `convnext-${v}`),
  ...INCEPTIONNEXT_VARIANTS.map((v): InceptionNextArchitecture => `inceptionnext-${v}`),
  'midl2018',
  'smallcnn',
];

/** The ConvNeXt variant of an architecture name, or undefined for the other networks. */
export function convnextVariant(arch: Architecture): ConvNextVariant | undefined {
  return arch.startsWith('convnext-') ? (arch.slice('convnext-'.length) as ConvNextVariant) : undefined;
}

/** The InceptionNeXt variant of an architecture name, or undefined for the other networks. */
export function inceptionnextVariant(arch: Architecture): InceptionNextVariant | undefined {
  return arch.startsWith('inceptionnext-')
    ? (arch.slice('inceptionnext-'.length) as InceptionNextVariant)
    : undefined;
}

export interface ResNetOptions {
  inputChannels?: number;
  /** Channels of the stem and layer1 (64 in torchvision); later stages double it. Smaller for tests. */
  baseWidth?: number;
}

export type ResNetDepth = 18 | 34 | 50;
const RESNET_BLOCKS: Record<ResNetDepth, readonly number[]> = {
  18: [2, 2, 2, 2],
  34: [3, 4, 6, 3],
  50: [3, 4, 6, 3],
};
/** ResNet-50's bottleneck blocks output 4× their inner width (torchvision's Bottleneck.expansion). */
const BOTTLENECK_EXPANSION = 4;

const resnetDepth = (arch: ResNetArchitecture): ResNetDepth =>
  Number(arch.slice('resnet'.length)) as ResNetDepth;
export const isResNet = (arch: Architecture): arch is ResNetArchitecture =>
  arch === 'resnet18' || arch === 'resnet34' || arch === 'resnet50';

/**
 * ResNet-18/34 (basic blocks) and ResNet-50 (bottleneck blocks, stride in the 3×3 conv as
 * torchvision's v1.5) from the stem to the end of layer4; block outputs are named `layerS.B`.
 */
export function resnet(depth: ResNetDepth, o: ResNetOptions = {}): Body {
  const width = o.baseWidth ?? 64;
  const b = new BodyBuilder(`resnet${depth}`, o.inputChannels ?? 3);
  let x = b.conv(b.input, { filters: width, kernel: 7, stride: 2, padding: 3, bias: false, name: 'conv1' });
  x = b.relu(b.affine(x, 'bn1'), 'relu');
  x = b.maxPool(x, { kernel: 3, stride: 2, padding: 1, name: 'maxpool' });
  const block = depth === 50 ? bottleneckBlock : basicBlock;
  const expansion = depth === 50 ? BOTTLENECK_EXPANSION : 1;
  let channels = width;
  RESNET_BLOCKS[depth].forEach((blocks, stage) => {
    const inner = width * 2 ** stage;
    for (let i = 0; i < blocks; i++) {
      const stride = stage > 0 && i === 0 ? 2 : 1;
      // A projection shortcut wherever the shape changes (layer1.0 of ResNet-50 too: 64 → 256).
      const project = stride !== 1 || channels !== inner * expansion;
      x = block(b, x, `layer${stage + 1}.${i}`, inner, stride, project);
      channels = inner * expansion;
    }
  });
  return b.build(x);
}

/** The shortcut of a block: the input, or a strided 1×1 conv and frozen batch-norm. */
function shortcut(
  b: BodyBuilder,
  x: string,
  p: string,
  filters: number,
  stride: number,
  project: boolean,
): string {
  if (!project) return x;
  const y = b.conv(x, { filters, kernel: 1, stride, bias: false, name: `${p}.downsample.0` });
  return b.affine(y, `${p}.downsample.1`);
}

/** torchvision's BasicBlock: two 3×3 convs. */
function basicBlock(
  b: BodyBuilder,
  x: string,
  p: string,
  filters: number,
  stride: number,
  project: boolean,
): string {
  let y = b.conv(x, { filters, kernel: 3, stride, padding: 1, bias: false, name: `${p}.conv1` });
  y = b.relu(b.affine(y, `${p}.bn1`), `${p}.relu1`);
  y = b.affine(b.conv(y, { filters, kernel: 3, padding: 1, bias: false, name: `${p}.conv2` }), `${p}.bn2`);
  return b.relu(b.add([y, shortcut(b, x, p, filters, stride, project)], `${p}.add`), p);
}

/** torchvision's Bottleneck: 1×1 down to `inner`, 3×3 (strided), 1×1 up to 4·inner. */
function bottleneckBlock(
  b: BodyBuilder,
  x: string,
  p: string,
  inner: number,
  stride: number,
  project: boolean,
): string {
  const out = inner * BOTTLENECK_EXPANSION;
  let y = b.conv(x, { filters: inner, kernel: 1, bias: false, name: `${p}.conv1` });
  y = b.relu(b.affine(y, `${p}.bn1`), `${p}.relu1`);
  y = b.conv(y, { filters: inner, kernel: 3, stride, padding: 1, bias: false, name: `${p}.conv2` });
  y = b.relu(b.affine(y, `${p}.bn2`), `${p}.relu2`);
  y = b.affine(b.conv(y, { filters: out, kernel: 1, bias: false, name: `${p}.conv3` }), `${p}.bn3`);
  return b.relu(b.add([y, shortcut(b, x, p, out, stride, project)], `${p}.add`), p);
}

export interface Midl2018Options {
  /** Blocks of [conv, conv, conv, max-pool]; 9 for 8194² images, 5 for the 514² demo. */
  blocks?: number;
  channels?: number;
  /** The notebook's network has no activations (it checks gradients, not accuracy). */
  relu?: boolean;
}

/** The MIDL 2018 proof-of-concept network: all convs 3→3 channels, 'valid' padding. */
export function midl2018(o: Midl2018Options = {}): Body {
  const c = o.channels ?? 3;
  const b = new BodyBuilder('midl2018', c);
  const act = (x: string): string => (o.relu ? b.relu(x) : x);
  let x = act(b.conv(b.input, { filters: c, kernel: 3, name: 'stem' }));
  for (let block = 0; block < (o.blocks ?? 9); block++) {
    for (let i = 1; i <= 3; i++) x = act(b.conv(x, { filters: c, kernel: 3, name: `conv${i}-${block}` }));
    x = b.maxPool(x, { kernel: 2, name: `pool-${block}` });
  }
  x = b.conv(x, { filters: 1, kernel: 10, name: 'final' });
  return b.build(x);
}

export interface SmallCnnOptions {
  inputChannels?: number;
  /** Channels after the first conv (which has half as many). */
  width?: number;
  /** Conv+ReLU+pool stages before the last conv; the total stride is 2^stages. */
  stages?: number;
}

/** The small plain CNN of synthetic-task.md §2: 3×3 convs with padding 1, ReLU, 2×2 max-pools. */
export function smallCnn(o: SmallCnnOptions = {}): Body {
  const width = o.width ?? 16;
  const b = new BodyBuilder('smallcnn', o.inputChannels ?? 1);
  let x = b.input;
  const stages = o.stages ?? 4;
  for (let i = 1; i <= stages; i++) {
    const filters = i === 1 ? Math.max(1, width / 2) : width;
    x = b.relu(b.conv(x, { filters, kernel: 3, padding: 1, name: `conv${i}` }), `relu${i}`);
    x = b.maxPool(x, { kernel: 2, name: `pool${i}` });
  }
  x = b.relu(
    b.conv(x, { filters: width, kernel: 3, padding: 1, name: `conv${stages + 1}` }),
    `relu${stages + 1}`,
  );
  return b.build(x);
}

export interface BuiltinOptions {
  /** Last layer of the streamed body; the default is each network's usual cut. */
  bodyEnd?: string;
  inputChannels?: number;
  /** smallcnn: channels; resnet: base width; convnext, inceptionnext: channels of stage 0 (later stages double it). */
  width?: number;
  /** convnext, inceptionnext: the layer scales' start (1e-6); tests raise it so that every branch counts. */
  layerScaleInit?: number;
}

/**
 * Default cut: ResNet body to layer3 and ConvNeXt and InceptionNeXt to stages.2 (the head keeps the last stage, as
 * in the TPAMI paper), MIDL at conv3-4.
 */
export function defaultBodyEnd(arch: Architecture): string | undefined {
  switch (arch) {
    case 'resnet18':
    case 'resnet34':
    case 'resnet50':
      return 'layer3';
    case 'midl2018':
      return 'conv3-4';
    case 'smallcnn':
      return undefined;
    default:
      return 'stages.2';
  }
}

/**
 * A built-in network split into streamed body and trunk. ResNet stage names (`layer3`) and
 * ConvNeXt and InceptionNeXt ones (`stages.2`) mean the stage's last block.
 */
export function builtinNetwork(arch: Architecture, o: BuiltinOptions = {}): SplitNetwork {
  const net = buildWhole(arch, o);
  let cut = o.bodyEnd ?? defaultBodyEnd(arch) ?? net.output;
  if (/^layer[1-4]$/.test(cut) && isResNet(arch)) {
    const blocks = RESNET_BLOCKS[resnetDepth(arch)][Number(cut.slice(5)) - 1] as number;
    cut = `${cut}.${blocks - 1}`;
  }
  const variant = convnextVariant(arch);
  if (variant !== undefined && isConvNextStage(cut)) cut = convnextStageEnd(variant, cut);
  const inception = inceptionnextVariant(arch);
  if (inception !== undefined && isInceptionNextStage(cut)) cut = inceptionnextStageEnd(inception, cut);
  if (!net.nodes.some((n) => n.name === cut)) {
    const stages =
      variant !== undefined || inception !== undefined
        ? 'stages.0 … stages.3'
        : arch.startsWith('resnet')
          ? 'layer1 … layer4'
          : '';
    throw new BodyError(
      `${arch} has no layer '${o.bodyEnd}' to end the streamed body at` +
        (stages ? `; use a stage (${stages}) or a block name` : ''),
    );
  }
  return splitAt(net, cut);
}

function buildWhole(arch: Architecture, o: BuiltinOptions): Body {
  switch (arch) {
    case 'resnet18':
    case 'resnet34':
    case 'resnet50':
      return resnet(resnetDepth(arch), {
        ...(o.inputChannels !== undefined && { inputChannels: o.inputChannels }),
        ...(o.width !== undefined && { baseWidth: o.width }),
      });
    case 'midl2018':
      return midl2018(o.inputChannels !== undefined ? { channels: o.inputChannels } : {});
    case 'smallcnn':
      return smallCnn({
        ...(o.inputChannels !== undefined && { inputChannels: o.inputChannels }),
        ...(o.width !== undefined && { width: o.width }),
      });
    default: {
      const inception = inceptionnextVariant(arch);
      const common = {
        ...(o.inputChannels !== undefined && { inputChannels: o.inputChannels }),
        ...(o.width !== undefined && { width: o.width }),
        ...(o.layerScaleInit !== undefined && { layerScaleInit: o.layerScaleInit }),
      };
      if (inception !== undefined) return inceptionnext(inception, common);
      return convnext(convnextVariant(arch) as ConvNextVariant, common);
    }
  }
}
