// The calibration cases: built-in bodies at small widths (so that cpu runs in seconds), the same
// bodies at widths 16 and 64 around the composed kernels' switch-overs, and random bodies from the
// equivalence tests' generator, each streamed and conventional. Pure geometry: no TensorFlow
// import, so the plan tests can list cases without loading a backend.

import type { PlanNetwork } from '../plan/memory.ts';
import { type BuiltinOptions, builtinNetwork, midl2018 } from '../streaming/bodies.ts';
import { axisProfile, minimumTile } from '../streaming/geometry.ts';
import { parameterShapes, splitAt } from '../streaming/graph.ts';
import { drawLayers, mulberry32, randomBody } from '../streaming/random-body.ts';

export interface CalibrationCase {
  readonly name: string;
  readonly net: PlanNetwork;
  readonly image: readonly [number, number];
  /** Streamed with this tile; absent: conventional. */
  readonly tile?: readonly [number, number];
  readonly inputGrad?: boolean;
}

/**
 * Built-in bodies, each streamed and conventional. 'light' keeps the images small enough for the
 * cpu backend (about 20 times slower than wasm) to run the set in seconds.
 */
export function builtinCases(size: 'full' | 'light' = 'full'): CalibrationCase[] {
  const small: PlanNetwork = {
    ...builtinNetwork('smallcnn', { width: 8, inputChannels: 3 }),
    pooling: 'max',
    outputs: 2,
  };
  const r18: PlanNetwork = {
    ...builtinNetwork('resnet18', { width: 4, bodyEnd: 'layer2' }),
    pooling: 'max',
    outputs: 2,
  };
  const r34: PlanNetwork = {
    ...builtinNetwork('resnet34', { width: 4, bodyEnd: 'layer1' }),
    pooling: 'avg',
    outputs: 3,
  };
  // ResNet-50: bottlenecks (1×1 convs around the strided 3×3) and layer1.0's projection.
  const r50: PlanNetwork = {
    ...builtinNetwork('resnet50', { width: 4, bodyEnd: 'layer1' }),
    pooling: 'max',
    outputs: 2,
  };
  // ConvNeXt: layer norm, GELU and layer scale, streamed through stage 0 or 1, the rest in the trunk.
  const convnext0: PlanNetwork = {
    ...builtinNetwork('convnext-atto', { width: 4, bodyEnd: 'stages.0' }),
    pooling: 'avg',
    outputs: 2,
  };
  const convnext1: PlanNetwork = {
    ...builtinNetwork('convnext-atto', { width: 4, bodyEnd: 'stages.1' }),
    pooling: 'max',
    outputs: 2,
  };
  // The attention-MIL head: its [positions, 128] tensors grow with the image, so at 384² with
  // 128² tiles the head's phase is the streamed step's peak.
  const smallAttention: PlanNetwork = { ...small, pooling: 'attention' };
  // …and on a trunk's output (ResNet-18's layer3 on the stitched layer2 map).
  const r18Attention: PlanNetwork = { ...r18, pooling: 'attention', attentionHiddenSize: 16 };
  // InceptionNeXt: channel slices, square and band depthwise branches, concat (width 8: one
  // channel per branch in stage 0).
  const inception0: PlanNetwork = {
    ...builtinNetwork('inceptionnext-atto', { width: 8, bodyEnd: 'stages.0' }),
    pooling: 'avg',
    outputs: 2,
  };
  // The MIDL 2018 network as in the notebook's 514² demo (5 blocks, streamed to conv1-3); 520 is
  // the nearest size aligned to its stride of 8; smaller variants have 4 and 3 blocks.
  const midl: PlanNetwork = { ...splitAt(midl2018({ blocks: 5 }), 'conv1-3'), pooling: 'avg', outputs: 2 };
  const midl4: PlanNetwork = { ...splitAt(midl2018({ blocks: 4 }), 'conv1-2'), pooling: 'max', outputs: 2 };
  const midl3: PlanNetwork = { ...splitAt(midl2018({ blocks: 3 }), 'conv1-1'), pooling: 'max', outputs: 2 };
  const both = (name: string, net: PlanNetwork, image: number, tile: number): CalibrationCase[] => [
    { name: `${name} ${image}²`, net, image: [image, image], tile: [tile, tile] },
    { name: `${name} ${image}²`, net, image: [image, image] },
  ];
  if (size === 'light') {
    return [
      ...both('smallcnn w8', small, 128, 96),
      ...both('resnet18 w4 →layer2', r18, 160, 144),
      ...both('resnet34 w4 →layer1', r34, 128, 96),
      ...both('resnet50 w4 →layer1', r50, 128, 96),
      ...both('midl2018 3 blocks →conv1-1', midl3, 128, 72),
      ...both('convnext-atto w4 →stages.0', convnext0, 128, 96),
      ...both('inceptionnext-atto w8 →stages.0', inception0, 128, 96),
      ...both('smallcnn w8 attention head', smallAttention, 384, 128),
    ];
  }
  return [
    ...both('smallcnn w8', small, 128, 96),
    { name: 'smallcnn w8 256²', net: small, image: [256, 256], tile: [128, 128] },
    { name: 'smallcnn w8 256² saliency', net: small, image: [256, 256], tile: [160, 160], inputGrad: true },
    { name: 'smallcnn w8 256²', net: small, image: [256, 256] },
    ...both('resnet18 w4 →layer2', r18, 256, 192),
    ...both('resnet34 w4 →layer1', r34, 192, 96),
    ...both('resnet50 w4 →layer1', r50, 192, 96),
    ...both('midl2018 4 blocks →conv1-2', midl4, 264, 136),
    ...both('midl2018 5 blocks →conv1-3', midl, 520, 264),
    ...both('convnext-atto w4 →stages.0', convnext0, 128, 96),
    ...both('convnext-atto w4 →stages.1', convnext1, 224, 184),
    ...both('inceptionnext-atto w8 →stages.0', inception0, 192, 112),
    ...both('smallcnn w8 attention head', smallAttention, 384, 128),
    ...both('resnet18 w4 →layer2 attention head (hidden 16) on the trunk', r18Attention, 256, 192),
  ];
}

/**
 * Built-in bodies at widths 64 and 16, with channel counts on both sides of each switch-over of
 * the composed wasm kernels (trainer/kernels/), on small images so that cpu stays in seconds:
 * - Conv2DBackpropFilter is tiled when both channel counts are >= 32: smallcnn at width 64 with 64
 *   input channels has it at the peak (the first layer, 64→32), with 16 (16→32) the plain form;
 *   ResNet-18 at width 64 runs tiled 64→64 and 128→128, at width 16 plain 16→16 and tiled 32→32.
 * - Conv2DBackpropInput of a strided 1×1 filter is sub-pixel when Ci·Co >= 64²: ResNet-18's layer2
 *   downsample is 64→128 at width 64 (sub-pixel), 16→32 at width 16 (zero-spread); its 3×3
 *   strided convolutions and the 7×7/2 stem (saliency) are sub-pixel, the stride-1 ones spread.
 * 'light' (cpu, ~20 times slower than wasm) keeps the conventional cases and one streamed one.
 */
export function wideCases(size: 'full' | 'light' = 'full'): CalibrationCase[] {
  const net = (arch: 'smallcnn' | 'resnet18', o: BuiltinOptions): PlanNetwork => ({
    ...builtinNetwork(arch, o),
    pooling: 'max',
    outputs: 2,
  });
  const small64 = net('smallcnn', { width: 64, inputChannels: 64 });
  const small64in16 = net('smallcnn', { width: 64, inputChannels: 16 });
  const r18w64l1 = net('resnet18', { width: 64, bodyEnd: 'layer1' });
  const r18w64l2 = net('resnet18', { width: 64, bodyEnd: 'layer2' });
  const r18w16l2 = net('resnet18', { width: 16, bodyEnd: 'layer2' });
  const square = (n: number): [number, number] => [n, n];
  const conventional: CalibrationCase[] = [
    { name: 'smallcnn w64 64 channels in 96²', net: small64, image: square(96) },
    { name: 'smallcnn w64 16 channels in 96²', net: small64in16, image: square(96) },
    { name: 'resnet18 w64 →layer1 64² saliency', net: r18w64l1, image: square(64), inputGrad: true },
    { name: 'resnet18 w64 →layer2 64²', net: r18w64l2, image: square(64) },
    { name: 'resnet18 w16 →layer2 128²', net: r18w16l2, image: square(128) },
  ];
  if (size === 'light') {
    return [
      ...conventional,
      { name: 'smallcnn w64 64 channels in 112²', net: small64, image: square(112), tile: square(96) },
    ];
  }
  return [
    ...conventional,
    { name: 'smallcnn w64 64 channels in 128²', net: small64, image: square(128), tile: square(96) },
    { name: 'smallcnn w64 16 channels in 128²', net: small64in16, image: square(128), tile: square(96) },
    { name: 'resnet18 w64 →layer1 96²', net: r18w64l1, image: square(96), tile: square(64) },
    { name: 'resnet18 w64 →layer2 128²', net: r18w64l2, image: square(128), tile: square(112) },
    { name: 'resnet18 w16 →layer2 128²', net: r18w16l2, image: square(128), tile: square(112) },
  ];
}

/**
 * Random bodies (streaming/random-body.ts: strided and dilated convs, groups, pools, every
 * activation, residual and bottleneck blocks, concats), each streamed with a tile of about two
 * thirds of the image and run conventionally. Sizes grow with the index.
 */
export function randomCases(count: number, seed = 7): CalibrationCase[] {
  const rand = mulberry32(seed);
  const cases: CalibrationCase[] = [];
  for (let i = 0; cases.length < 2 * count && i < 50 * count; i++) {
    const body = randomBody(drawLayers(rand));
    // streamBackward needs at least one parameter to differentiate (tf.grads refuses an empty list).
    if (parameterShapes(body).size === 0) continue;
    let min: number;
    let stride: number;
    try {
      min = Math.max(minimumTile(body, 0), minimumTile(body, 1));
      stride = Math.max(axisProfile(body, 0).totalStride, axisProfile(body, 1).totalStride);
    } catch {
      continue; // a body whose layers vanish at every size: skip it
    }
    const want = 64 + 32 * ((cases.length / 2) % 6);
    const image = stride * Math.ceil(Math.max(want, 2 * min) / stride);
    if (image > 224) continue;
    const tile = Math.max(min, stride * Math.round((image * 0.6) / stride));
    if (tile >= image) continue;
    const net: PlanNetwork = { body, pooling: i % 2 === 0 ? 'max' : 'avg', outputs: 2 };
    const name = `random #${i} (${body.nodes.length} nodes) ${image}²`;
    cases.push({ name, net, image: [image, image], tile: [tile, tile] });
    cases.push({ name, net, image: [image, image] });
  }
  return cases;
}
