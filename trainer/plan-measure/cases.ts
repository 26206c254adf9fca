// The calibration cases: built-in bodies at small widths (so that cpu runs in seconds) and random
// bodies from the equivalence tests' generator, each streamed and conventional. Pure geometry: no
// TensorFlow import, so the plan tests can list cases without loading a backend.

import type { PlanNetwork } from '../plan/memory.ts';
import { builtinNetwork, midl2018 } from '../streaming/bodies.ts';
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

/** Built-in bodies: each streamed and conventional, at two image sizes for some. */
export function builtinCases(): CalibrationCase[] {
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
  // The MIDL 2018 network as in the notebook's 514² demo (5 blocks, streamed to conv1-3); 520 is
  // the nearest size aligned to its stride of 8.
  const midl: PlanNetwork = { ...splitAt(midl2018({ blocks: 5 }), 'conv1-3'), pooling: 'avg', outputs: 2 };
  return [
    { name: 'smallcnn w8 128²', net: small, image: [128, 128], tile: [96, 96] },
    { name: 'smallcnn w8 256²', net: small, image: [256, 256], tile: [128, 128] },
    { name: 'smallcnn w8 256² saliency', net: small, image: [256, 256], tile: [160, 160], inputGrad: true },
    { name: 'smallcnn w8 256²', net: small, image: [256, 256] },
    { name: 'resnet18 w4 →layer2 256²', net: r18, image: [256, 256], tile: [192, 192] },
    { name: 'resnet18 w4 →layer2 256²', net: r18, image: [256, 256] },
    { name: 'resnet34 w4 →layer1 192²', net: r34, image: [192, 192], tile: [96, 96] },
    { name: 'resnet34 w4 →layer1 192²', net: r34, image: [192, 192] },
    { name: 'midl2018 5 blocks →conv1-3 520²', net: midl, image: [520, 520], tile: [264, 264] },
    { name: 'midl2018 5 blocks →conv1-3 520²', net: midl, image: [520, 520] },
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
    const want = 64 + 32 * (cases.length / 2);
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
