// Why a Keras layer cannot be part of a streamed body, and what to do instead
// (streaming-algorithm.md §3). Every refusal names the layer, its class, the reason and a fix.

import { type Config, type KerasLayer, TfjsImportError } from './model-json.ts';

/** A layer the streamed body cannot hold. `layer` and `className` are for callers that branch on them. */
export class UnsupportedLayerError extends TfjsImportError {
  override name = 'UnsupportedLayerError';
  readonly layer: string;
  readonly className: string;
  constructor(layer: KerasLayer, why: string, fix: string) {
    super(`layer '${layer.name}' (${layer.className}) cannot be streamed: it ${why}. ${fix}`);
    this.layer = layer.name;
    this.className = layer.className;
  }
}

export const OPS_LIST =
  'conv2d (incl. depthwise, separable, grouped, dilated), max/avg pooling, relu, relu6, leakyRelu, elu, ' +
  'sigmoid, tanh, exact gelu, frozen batch normalisation, layer normalisation over channels, zero padding, add, concat';

type Category = 'global' | 'statistics' | 'random' | 'grid' | 'code' | 'preprocessing' | 'noOp' | 'notImage';

const WHY: Record<Category, string> = {
  global:
    'has a global receptive field: each output depends on the whole image (or on its size), so no tile can compute it',
  statistics:
    'normalises with statistics taken over the whole image (H×W), and a tile would see different statistics',
  random:
    'draws random masks or noise: overlapping tiles and the backward recomputation would have to draw the same ' +
    'values at the same pixel, which they do not',
  grid: 'changes the sampling grid (upsampling, transposed convolution or cropping), and the tile arithmetic has no interval rules for it',
  code: 'runs arbitrary code that the importer cannot inspect, so it cannot know whether it is local',
  preprocessing:
    'is preprocessing or augmentation, which belongs to the data pipeline, not the streamed network',
  noOp: `is local, but the streamed body has no op for it (the ops are: ${OPS_LIST})`,
  notImage: 'does not work on 2-D images (NHWC)',
};

const CATEGORY: Record<string, Category> = {
  GlobalAveragePooling2D: 'global',
  GlobalMaxPooling2D: 'global',
  GlobalAveragePooling1D: 'global',
  GlobalMaxPooling1D: 'global',
  Flatten: 'global',
  Reshape: 'global',
  Permute: 'global',
  RepeatVector: 'global',
  Attention: 'global',
  AdditiveAttention: 'global',
  MultiHeadAttention: 'global',
  GroupNormalization: 'statistics',
  InstanceNormalization: 'statistics',
  Dropout: 'random',
  SpatialDropout1D: 'random',
  SpatialDropout2D: 'random',
  SpatialDropout3D: 'random',
  GaussianDropout: 'random',
  GaussianNoise: 'random',
  AlphaDropout: 'random',
  UpSampling2D: 'grid',
  Conv2DTranspose: 'grid',
  Cropping2D: 'grid',
  Lambda: 'code',
  TFOpLambda: 'code',
  SlicingOpLambda: 'code',
  Rescaling: 'preprocessing',
  Normalization: 'preprocessing',
  Resizing: 'preprocessing',
  CenterCrop: 'preprocessing',
  RandomFlip: 'preprocessing',
  RandomRotation: 'preprocessing',
  RandomZoom: 'preprocessing',
  RandomCrop: 'preprocessing',
  RandomContrast: 'preprocessing',
  RandomTranslation: 'preprocessing',
  RandomBrightness: 'preprocessing',
  Softmax: 'noOp',
  PReLU: 'noOp',
  ThresholdedReLU: 'noOp',
  Multiply: 'noOp',
  Subtract: 'noOp',
  Average: 'noOp',
  Maximum: 'noOp',
  Minimum: 'noOp',
  LocallyConnected2D: 'noOp',
  Conv1D: 'notImage',
  Conv3D: 'notImage',
  MaxPooling1D: 'notImage',
  MaxPooling3D: 'notImage',
  AveragePooling1D: 'notImage',
  AveragePooling3D: 'notImage',
  LSTM: 'notImage',
  GRU: 'notImage',
  SimpleRNN: 'notImage',
  ConvLSTM2D: 'notImage',
  Embedding: 'notImage',
};

/** "End the body before it": names the layer that feeds `layer`, when there is one to cut at. */
export function cutBefore(layer: KerasLayer, inputLayer: string): string {
  const [only] = layer.inputs;
  if (layer.inputs.length !== 1) {
    return `end the streamed body before it, at a layer that its inputs (${layer.inputs.join(', ')}) all come from`;
  }
  if (only !== inputLayer) return `end the streamed body before it (bodyEnd: '${only}')`;
  return 'end the streamed body before it (its input is the image, so nothing before it can stream)';
}

function fixFor(category: Category, before: string): string {
  switch (category) {
    case 'global':
      return `To stream the rest, ${before}; the trainer's head does the global pooling and the dense layer.`;
    case 'statistics':
      return `Either ${before}, or replace it with BatchNormalization (frozen, it folds into a per-channel affine) and retrain.`;
    case 'random':
      return `Remove it (or set its rate to 0) before saving, or ${before} so that it runs in the head.`;
    case 'grid':
    case 'notImage':
      return `${capitalise(before)}.`;
    case 'code':
      return `Replace it with built-in layers, or ${before}.`;
    case 'preprocessing':
      return `Remove it from the model and normalise in the data pipeline (spec.data), or ${before}.`;
    case 'noOp':
      return `Use a supported layer or activation instead, or ${before}.`;
  }
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Normalisation over the channel axis only is per pixel; over H or W it is image-wide. */
function normalisationCategory(config: Config): Category {
  const axis = config.axis ?? -1;
  const axes = (Array.isArray(axis) ? axis : [axis]) as number[];
  return axes.every((a) => a === -1 || a === 3) ? 'noOp' : 'statistics';
}

/** The refusal for a layer class the translator does not handle, or undefined when it is unknown. */
export function refusal(layer: KerasLayer, inputLayer: string): UnsupportedLayerError {
  const before = cutBefore(layer, inputLayer);
  let category: Category | undefined = CATEGORY[layer.className];
  if (layer.className === 'LayerNormalization' || layer.className === 'UnitNormalization') {
    category = normalisationCategory(layer.config);
  }
  if (category === undefined) {
    return new UnsupportedLayerError(
      layer,
      `is a layer class the importer does not know (it translates InputLayer, Conv2D, DepthwiseConv2D, ` +
        'SeparableConv2D, Dense on feature maps, MaxPooling2D, AveragePooling2D, Activation, ReLU, LeakyReLU, ELU, ' +
        'BatchNormalization, LayerNormalization over channels, ZeroPadding2D, Add, Concatenate)',
      `If it is local, it needs an op in trainer/streaming/ops.ts; otherwise ${before}.`,
    );
  }
  return new UnsupportedLayerError(layer, WHY[category], fixFor(category, before));
}

/** Layers that are the identity at inference and are dropped from the conventionally run trunk and head. */
export const INFERENCE_IDENTITY = new Set([
  'Dropout',
  'SpatialDropout1D',
  'SpatialDropout2D',
  'SpatialDropout3D',
  'GaussianDropout',
  'GaussianNoise',
  'AlphaDropout',
]);
