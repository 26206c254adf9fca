// `tilestream bench equivalence`: a seeded set of random bodies and sizes (ConvNeXt-like blocks
// among them) plus fixed ResNet-18, ResNet-50, ConvNeXt-atto and InceptionNeXt-atto cases, each
// streamed and run conventionally on the same image; reports the worst relative errors.

import { builtinNetwork } from '../streaming/bodies.ts';
import { compareStep, type Discrepancy } from '../streaming/compare.ts';
import { axisProfile, minimumTile } from '../streaming/geometry.ts';
import type { Network } from '../streaming/network.ts';
import { drawLayers, mulberry32, randomBody } from '../streaming/random-body.ts';

/** The tolerances of streaming-algorithm.md §2.2 that the tests enforce. */
export const TOLERANCES = { output: 1e-5, paramGrad: 1e-4, inputGrad: 1e-5 } as const;

export interface EquivalenceCase extends Discrepancy {
  name: string;
  image: [number, number];
  tile: [number, number];
  seconds: number;
}

export interface EquivalenceReport {
  backend: string;
  seed: number;
  randomCases: number;
  worst: { output: number; paramGrad: number; inputGrad: number };
  tolerances: typeof TOLERANCES;
  pass: boolean;
  fixed: EquivalenceCase[];
}

export interface EquivalenceOptions {
  backend: string;
  seed: number;
  cases: number;
  /** Largest image area (pixels) of a random case; bigger draws are redrawn. */
  maxPixels: number;
  fixed: boolean;
  log?: (line: string) => void;
}

async function timed(
  name: string,
  net: Network,
  image: [number, number],
  tile: [number, number],
  seed: number,
) {
  const t0 = performance.now();
  const d = await compareStep(net, image, tile, seed);
  return { name, image, tile, ...d, seconds: (performance.now() - t0) / 1000 };
}

export async function benchEquivalence(o: EquivalenceOptions): Promise<EquivalenceReport> {
  const rand = mulberry32(o.seed);
  const worst = { output: 0, paramGrad: 0, inputGrad: 0 };
  let done = 0;
  while (done < o.cases) {
    const body = randomBody(drawLayers(rand));
    const S = [axisProfile(body, 0).totalStride, axisProfile(body, 1).totalStride] as const;
    const tile: [number, number] = [
      minimumTile(body, 0) + Math.floor(rand() * 4) * S[0],
      minimumTile(body, 1) + Math.floor(rand() * 4) * S[1],
    ];
    const image: [number, number] = [
      tile[0] + (1 + Math.floor(rand() * 3)) * S[0],
      tile[1] + (1 + Math.floor(rand() * 3)) * S[1],
    ];
    if (image[0] * image[1] > o.maxPixels) continue;
    const d = await compareStep({ body, pooling: 'avg', outputs: 2 }, image, tile, o.seed + done);
    worst.output = Math.max(worst.output, d.output);
    worst.paramGrad = Math.max(worst.paramGrad, d.paramGrad);
    worst.inputGrad = Math.max(worst.inputGrad, d.inputGrad);
    done++;
    if (done % 10 === 0) o.log?.(`equivalence: ${done}/${o.cases} random cases`);
  }
  const fixed: EquivalenceCase[] = [];
  if (o.fixed) {
    const resnet: Network = {
      ...builtinNetwork('resnet18', { bodyEnd: 'layer3' }),
      pooling: 'max',
      outputs: 2,
    };
    for (const t of [256, 320]) {
      o.log?.(`equivalence: ResNet-18 body to layer3 (with layer4 trunk), 512² image, tile ${t}`);
      fixed.push(await timed(`resnet18-layer3 512 tile ${t}`, resnet, [512, 512], [t, t], o.seed));
    }
    // The attention-MIL head (CLAM's gated attention, hidden 128) on the layer4 trunk's output.
    o.log?.(
      'equivalence: ResNet-18 body to layer3, layer4 trunk and the attention head, 512² image, tile 256',
    );
    fixed.push(
      await timed(
        'resnet18-layer3 attention 512 tile 256',
        { ...resnet, pooling: 'attention' },
        [512, 512],
        [256, 256],
        o.seed,
      ),
    );
    // ResNet-50 at full width (bottlenecks 64-64-256 …), streamed to layer2 (minimum tile 96) so a
    // 384² image takes several tiles; layer3–4 (2048 channels) run in the trunk.
    const resnet50: Network = {
      ...builtinNetwork('resnet50', { bodyEnd: 'layer2' }),
      pooling: 'max',
      outputs: 2,
    };
    for (const t of [160, 224]) {
      o.log?.(`equivalence: ResNet-50 body to layer2 (with layer3–4 trunk), 384² image, tile ${t}`);
      fixed.push(await timed(`resnet50-layer2 384 tile ${t}`, resnet50, [384, 384], [t, t], o.seed));
    }
    // Full width (40); streamed to stages.1 (minimum tile 152), so that a 384² image takes several
    // tiles; stages 2–3 run in the trunk. Layer scales start at 0.5, not 1e-6, so every branch counts.
    const convnext: Network = {
      ...builtinNetwork('convnext-atto', { bodyEnd: 'stages.1', layerScaleInit: 0.5 }),
      pooling: 'avg',
      outputs: 2,
    };
    for (const t of [184, 248]) {
      o.log?.(`equivalence: ConvNeXt-atto body to stages.1 (with stages 2–3 trunk), 384² image, tile ${t}`);
      fixed.push(await timed(`convnext-atto-stages.1 384 tile ${t}`, convnext, [384, 384], [t, t], o.seed));
    }
    // InceptionNeXt-atto at full width (40: ten channels per branch), streamed to stages.1
    // (minimum tile 200); stages 2–3 in the trunk; layer scales at 0.5 as for ConvNeXt.
    const inception: Network = {
      ...builtinNetwork('inceptionnext-atto', { bodyEnd: 'stages.1', layerScaleInit: 0.5 }),
      pooling: 'avg',
      outputs: 2,
    };
    for (const t of [232, 296]) {
      o.log?.(
        `equivalence: InceptionNeXt-atto body to stages.1 (with stages 2–3 trunk), 384² image, tile ${t}`,
      );
      fixed.push(
        await timed(`inceptionnext-atto-stages.1 384 tile ${t}`, inception, [384, 384], [t, t], o.seed),
      );
    }
  }
  const all = [worst, ...fixed];
  const pass = all.every(
    (d) =>
      d.output <= TOLERANCES.output &&
      d.paramGrad <= TOLERANCES.paramGrad &&
      d.inputGrad <= TOLERANCES.inputGrad,
  );
  return { backend: o.backend, seed: o.seed, randomCases: done, worst, tolerances: TOLERANCES, pass, fixed };
}
