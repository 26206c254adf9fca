// The CRD's table of minimum tiles (crds/ cannot import the planner) must say what the planner says.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CONVNEXT_ARCHITECTURES,
  CONVNEXT_DEFAULT_BODY_END,
  CONVNEXT_STAGES,
  INCEPTIONNEXT_ARCHITECTURES,
  MODEL_MINIMUM_TILES,
  RESNET_ARCHITECTURES,
  RESNET_DEFAULT_BODY_END,
} from '../../crds/v1alpha1/schema.ts';
import { tileConstraints } from '../../trainer/plan/planner.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';

describe('MODEL_MINIMUM_TILES', () => {
  for (const m of MODEL_MINIMUM_TILES) {
    it(`${m.architecture}${m.bodyEnd ? ` to ${m.bodyEnd}` : ''}: ${m.minimumPx} px is the planner's minimum tile`, () => {
      for (const inputChannels of [1, 3]) {
        const split = builtinNetwork(m.architecture, {
          ...(m.bodyEnd !== undefined && { bodyEnd: m.bodyEnd }),
          inputChannels,
        });
        const { minimum } = tileConstraints({ ...split, pooling: 'max', outputs: 2 }, 0);
        assert.equal(minimum, m.minimumPx, `inputChannels ${inputChannels}`);
      }
    });
  }
  it('has every body end of every ResNet, and the default body end among them', () => {
    for (const a of RESNET_ARCHITECTURES) {
      const ends = MODEL_MINIMUM_TILES.filter((m) => m.architecture === a).map((m) => m.bodyEnd);
      assert.deepEqual(ends, ['layer1', 'layer2', 'layer3', 'layer4']);
      assert.ok(ends.includes(RESNET_DEFAULT_BODY_END));
    }
  });
  it('has every stage of every ConvNeXt and InceptionNeXt, and the default body end among them', () => {
    for (const a of [...CONVNEXT_ARCHITECTURES, ...INCEPTIONNEXT_ARCHITECTURES]) {
      const ends = MODEL_MINIMUM_TILES.filter((m) => m.architecture === a).map((m) => m.bodyEnd);
      assert.deepEqual(ends, [...CONVNEXT_STAGES], a);
      assert.ok(ends.includes(CONVNEXT_DEFAULT_BODY_END));
    }
  });
});
