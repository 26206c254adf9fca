// Random streamable bodies for property tests and `tilestream bench equivalence`: convolutions
// (strides, dilations, groups), pools, activations, residual, bottleneck, ConvNeXt-like and
// InceptionNeXt-like blocks and concats.

import { mulberry32 } from '../data/random.ts';
import { BodyBuilder } from './builder.ts';

export { mulberry32 };

import { ACTIVATIONS, type Body } from './graph.ts';

export interface LayerDraw {
  kind: 'conv' | 'max' | 'avg' | 'res' | 'bottleneck' | 'convnext' | 'inception' | 'concat' | 'act';
  k: number;
  s: number;
  d: number;
  pad: boolean;
  groups: boolean;
  fn: number;
}

/** A random streamable body from fast-check draws: convs, pools, activations and residual blocks. */
export function randomBody(layers: LayerDraw[]): Body {
  const b = new BodyBuilder('random', 2);
  let x = b.input;
  let c = 2;
  for (const l of layers) {
    const same = Math.floor((l.d * (l.k - 1)) / 2);
    const p = l.pad ? same : 0;
    switch (l.kind) {
      case 'conv':
        c = l.groups ? c * 2 : 4;
        x = b.conv(x, {
          filters: c,
          kernel: l.k,
          stride: l.s,
          dilation: l.d,
          padding: p,
          groups: l.groups ? c / 2 : 1,
        });
        break;
      case 'act': {
        const fn = ACTIVATIONS[l.fn % ACTIVATIONS.length] ?? 'relu';
        x = b.activation(x, fn, fn === 'leakyRelu' || fn === 'elu' ? 0.1 : undefined);
        break;
      }
      case 'max':
        x = b.maxPool(x, { kernel: Math.min(l.k, 3), stride: l.s, padding: Math.min(p, 1) });
        break;
      case 'avg':
        x = b.avgPool(x, { kernel: Math.min(l.k, 3), stride: l.s, padding: Math.min(p, 1) });
        break;
      case 'res': {
        // A basic block; with stride 2 the skip is a 1×1/2 conv, as in ResNet.
        const y = b.affine(b.relu(b.conv(x, { filters: c, kernel: 3, stride: l.s, padding: 1 })));
        const z = b.conv(y, { filters: c, kernel: 3, padding: 1 });
        const skip = l.s === 1 ? x : b.conv(x, { filters: c, kernel: 1, stride: 2, bias: false });
        x = b.relu(b.add([z, skip]));
        break;
      }
      case 'bottleneck': {
        const y = b.relu(b.conv(x, { filters: 2, kernel: 1 }));
        const z = b.conv(b.relu(b.conv(y, { filters: 2, kernel: 3, padding: 1 })), { filters: c, kernel: 1 });
        x = b.add([z, x]);
        break;
      }
      case 'convnext': {
        // With stride 2, a downsampling layer first (layer norm, k×k/2 conv with k = 2 or 3);
        // then a block: depthwise k×k conv, layer norm, 1×1 up 2×, GELU, 1×1 down, layer scale, add.
        // Layer norm over 2 channels is ill-conditioned in float32 (x̂ = ±1; 1/σ is huge where the two
        // are close), so a 1×1 conv first widens a narrow input, as ConvNeXt's stem does.
        if (c < 4) {
          c = 4;
          x = b.conv(x, { filters: c, kernel: 1 });
        }
        if (l.s === 2) {
          const k = l.pad ? 2 : 3;
          x = b.conv(b.layerNorm(x), { filters: c, kernel: k, stride: 2 });
        }
        const k = l.k | 1;
        let y = b.conv(x, { filters: c, kernel: k, padding: l.pad ? (k - 1) / 2 : 0, groups: c });
        if (!l.pad) x = b.avgPool(x, { kernel: k, stride: 1 }); // a 'valid' branch: the skip must shrink too
        y = b.activation(b.conv(b.layerNorm(y), { filters: 2 * c, kernel: 1 }), 'gelu');
        y = b.layerScale(b.conv(y, { filters: c, kernel: 1 }), 0.5 + (l.fn % 100) / 100);
        x = b.add([y, x]);
        break;
      }
      case 'inception': {
        // With stride 2, InceptionNeXt's downsampling (frozen batch-norm, 2×2/2 conv); then a block
        // whose token mixer splits the channels into identity, a square k×k and two bands (1×k',
        // k'×1, k' = 2k+1 up to 9) of depthwise convs with same-size padding, concatenated; then
        // batch-norm, 1×1 up 2×, GELU, 1×1 down, layer scale, add. At least 4 channels: 1 per branch.
        if (c < 4) {
          c = 4;
          x = b.conv(x, { filters: c, kernel: 1 });
        }
        if (l.s === 2) x = b.conv(b.affine(x), { filters: c, kernel: 2, stride: 2 });
        const g = Math.max(1, Math.floor(c / 4));
        const k = l.k | 1;
        const band = Math.min(2 * l.k + 1, 9);
        const id = b.channelSlice(x, 0, c - 3 * g);
        const branch = (begin: number, kernel: [number, number]): string =>
          b.conv(b.channelSlice(x, begin, g), {
            filters: g,
            kernel,
            padding: [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2],
            groups: g,
          });
        let y = b.concat([
          id,
          branch(c - 3 * g, [k, k]),
          branch(c - 2 * g, [1, band]),
          branch(c - g, [band, 1]),
        ]);
        y = b.activation(b.conv(b.affine(y), { filters: 2 * c, kernel: 1 }), 'gelu');
        y = b.layerScale(b.conv(y, { filters: c, kernel: 1 }), 0.5 + (l.fn % 100) / 100);
        x = b.add([y, x]);
        break;
      }
      case 'concat': {
        const y = b.conv(x, { filters: 2, kernel: l.k | 1, padding: ((l.k | 1) - 1) / 2 });
        x = b.concat([x, y]);
        c += 2;
        break;
      }
    }
  }
  return b.build(x);
}

const KINDS: readonly LayerDraw['kind'][] = [
  'conv',
  'conv',
  'act',
  'max',
  'avg',
  'res',
  'bottleneck',
  'convnext',
  'inception',
  'concat',
];

/** Draws the layers of a random body of depth 1–8 from a seeded PRNG. */
export function drawLayers(rand: () => number): LayerDraw[] {
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  return Array.from({ length: int(1, 8) }, () => ({
    kind: KINDS[int(0, KINDS.length - 1)] as LayerDraw['kind'],
    k: int(1, 7),
    s: int(1, 2),
    d: int(1, 2),
    pad: rand() < 0.5,
    groups: rand() < 0.5,
    fn: int(0, 100),
  }));
}
