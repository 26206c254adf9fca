// ResNet-50 (bottleneck blocks) on the wasm, cpu and native TensorFlow backends: its size against
// torchvision's, its cuts, and streamed training against conventional training at small width
// within the tolerances of streaming-algorithm.md §2.2.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initBackend } from '../../trainer/backend/select.ts';
import { TOLERANCES } from '../../trainer/bench/equivalence.ts';
import { builtinNetwork, defaultBodyEnd, resnet } from '../../trainer/streaming/bodies.ts';
import { compareStep, type Discrepancy } from '../../trainer/streaming/compare.ts';
import { axisProfile, minimumTile } from '../../trainer/streaming/geometry.ts';
import { parameterShapes } from '../../trainer/streaming/graph.ts';
import type { Network } from '../../trainer/streaming/network.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

function assertEquivalent(d: Discrepancy, what: string): void {
  assert.ok(d.output <= TOLERANCES.output, `${what}: output differs by ${d.output} (relative)`);
  assert.ok(
    d.paramGrad <= TOLERANCES.paramGrad,
    `${what}: gradient of ${d.worstParam} differs by ${d.paramGrad} (relative)`,
  );
  assert.ok(
    d.inputGrad <= TOLERANCES.inputGrad,
    `${what}: input gradient differs by ${d.inputGrad} (relative)`,
  );
}

const count = (shapes: Map<string, number[]>): number =>
  [...shapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);

describe('ResNet-50', () => {
  it('has torchvision’s 25,557,032 parameters with the 2048 → 1000 fc (frozen batch-norm: scale and shift)', () => {
    assert.equal(count(parameterShapes(resnet(50))) + 2048 * 1000 + 1000, 25_557_032);
  });

  it('uses torchvision’s names and widths: bottlenecks 64-64-256 in layer1, a projection in layer1.0', () => {
    const shapes = parameterShapes(resnet(50));
    assert.deepEqual(shapes.get('layer1.0.conv1/kernel'), [1, 1, 64, 64]);
    assert.deepEqual(shapes.get('layer1.0.conv3/kernel'), [1, 1, 64, 256]);
    assert.deepEqual(shapes.get('layer1.0.downsample.0/kernel'), [1, 1, 64, 256]);
    assert.equal(shapes.get('layer1.1.downsample.0/kernel'), undefined);
    assert.deepEqual(shapes.get('layer2.0.conv2/kernel'), [3, 3, 128, 128]);
    assert.deepEqual(shapes.get('layer4.2.conv3/kernel'), [1, 1, 512, 2048]);
  });

  it('cuts at a stage’s last block; the default keeps layer4 in the trunk', () => {
    assert.equal(defaultBodyEnd('resnet50'), 'layer3');
    const split = builtinNetwork('resnet50');
    assert.equal(split.body.output, 'layer3.5');
    assert.equal(split.trunk?.nodes.at(-1)?.name, 'layer4.2');
    assert.equal(axisProfile(builtinNetwork('resnet50', { bodyEnd: 'layer4' }).body, 0).totalStride, 32);
    assert.throws(() => builtinNetwork('resnet50', { bodyEnd: 'layer5' }), /layer1 … layer4/);
  });
});

for (const backend of ['wasm', 'cpu', 'tensorflow'] as const) {
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`ResNet-50 streamed on ${backend}`, { skip }, () => {
    it('initialises the backend', async () => {
      assert.equal((await initBackend(backend)).name, backend);
    });

    it('width 4, body to layer2 (bottlenecks, strided 3×3, projections) with a layer3–4 trunk: streamed equals conventional', async (t) => {
      const net: Network = {
        ...builtinNetwork('resnet50', { bodyEnd: 'layer2', width: 4 }),
        pooling: 'avg',
        outputs: 2,
      };
      // Four tiles a little above the minimum (at the minimum each tile owns one output pixel).
      const tile = minimumTile(net.body, 0) + 32;
      const d = await compareStep(net, [tile + 32, tile + 24], [tile, tile], 31);
      assert.equal(d.tiles, 4);
      assertEquivalent(d, `resnet50 tile ${tile}`);
      t.diagnostic(
        `resnet50 tile ${tile}: output ${d.output.toExponential(2)}, param grad ` +
          `${d.paramGrad.toExponential(2)} (${d.worstParam}), input grad ${d.inputGrad.toExponential(2)}`,
      );
    });
  });
}
