// The importer's GELU and channel LayerNormalization against TensorFlow.js itself: a ConvNeXt-like
// model built and saved with tfjs-layers in this test (patchify stem with layer norm, a 7×7
// depthwise block with layer norm, fused and stand-alone GELU, a layer norm without beta), imported
// as a streamed body, must give tfjs-layers' own output at the cut and stream exactly.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../../trainer/backend/select.ts';
import { compareStep, relativeError } from '../../trainer/streaming/compare.ts';
import { runBody } from '../../trainer/streaming/executor.ts';
import { minimumTile } from '../../trainer/streaming/geometry.ts';
import { scoped } from '../../trainer/streaming/network.ts';
import { weightTensors } from '../../trainer/streaming/tfjs-import/params.ts';
import { importedNetwork, loadTfjsLayersModel } from '../../trainer/streaming/tfjs-import.ts';
import { randomizeWeights, saveLayersModel } from '../fixtures/tfjs/save-layers-model.ts';

type ST = tfl.SymbolicTensor;
const L = tfl.layers;
const apply = (layer: tfl.layers.Layer, x: ST | ST[]): ST => layer.apply(x) as ST;
let dir = '';

/** A ConvNeXt-like functional model: the layers a converted Keras ConvNeXt uses, at small width. */
function convnextLike(activation = 'gelu'): tfl.LayersModel {
  const input = tfl.input({ shape: [null, null, 3], name: 'image' });
  let x = apply(L.conv2d({ filters: 8, kernelSize: 4, strides: 4, name: 'stem' }), input);
  const stem = apply(L.layerNormalization({ epsilon: 1e-6, name: 'stem_norm' }), x);
  x = apply(L.depthwiseConv2d({ kernelSize: 7, padding: 'same', name: 'dw' }), stem);
  x = apply(L.layerNormalization({ name: 'ln' }), x); // Keras's default ε, 1e-3
  x = apply(L.conv2d({ filters: 32, kernelSize: 1, activation: activation as 'relu', name: 'fc1' }), x);
  x = apply(L.conv2d({ filters: 8, kernelSize: 1, name: 'fc2' }), x);
  x = apply(L.add({ name: 'block' }), [x, stem]);
  x = apply(L.layerNormalization({ center: false, epsilon: 1e-5, name: 'ln_nobeta' }), x);
  x = apply(L.activation({ activation: 'gelu', name: 'act' }), x);
  x = apply(L.globalAveragePooling2d({ name: 'gap' }), x);
  x = apply(L.dense({ units: 3, name: 'logits' }), x);
  return tfl.model({ inputs: input, outputs: x, name: 'convnextish' });
}

describe('tfjs import of GELU and channel LayerNormalization', () => {
  before(async () => {
    await initBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'tfjs-import-ln-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('translates them to layer norm (ε, gamma, beta) and exact GELU, and equals tfjs-layers at the cut', async () => {
    const model = convnextLike();
    randomizeWeights(model, 11);
    const path = await saveLayersModel(model, join(dir, 'convnextish'));
    const imported = await loadTfjsLayersModel(path, { bodyEnd: 'act' });
    const { body } = imported.network;
    const op = (name: string) => ({ ...body.nodes.find((n) => n.name === name)?.op });
    assert.deepEqual(op('stem_norm'), { kind: 'layerNorm', epsilon: 1e-6 });
    assert.deepEqual(op('ln'), { kind: 'layerNorm', epsilon: 1e-3 });
    assert.deepEqual(op('fc1/gelu'), { kind: 'activation', fn: 'gelu' });
    assert.deepEqual(op('act'), { kind: 'activation', fn: 'gelu' });
    // Without center, beta is 0; gamma is the model's.
    const beta = imported.weights.get('body/ln_nobeta/beta');
    assert.ok(beta?.data.every((v) => v === 0));
    const gamma = model.getLayer('ln').getWeights()[0] as tf.Tensor;
    assert.deepEqual([...(imported.weights.get('body/ln/gamma')?.data ?? [])], [...gamma.dataSync()]);

    const tensors = weightTensors(imported.weights);
    const sub = tfl.model({ inputs: model.inputs, outputs: model.getLayer('act').output as ST });
    for (const [h, w] of [
      [64, 64],
      [96, 80],
    ] as const) {
      tf.tidy(() => {
        const x = tf.randomNormal([1, h, w, 3], 0, 1, 'float32', h + w) as tf.Tensor4D;
        const got = runBody(body, scoped(tensors, 'body'), x);
        const want = sub.predict(x) as tf.Tensor;
        assert.deepEqual(got.shape, want.shape);
        const err = relativeError(got.dataSync(), want.dataSync());
        assert.ok(err <= 1e-5, `${h}×${w}: relative error ${err}`);
      });
    }
    for (const t of tensors.values()) t.dispose();

    // The imported body streams exactly: a training step over tiles equals the whole image.
    const net = importedNetwork(imported);
    const tile = Math.ceil(minimumTile(net.body, 0) / 4) * 4 + 8;
    const d = await compareStep(net, [tile + 16, tile + 8], [tile, tile], 5);
    assert.ok(d.tiles > 1);
    assert.ok(d.output <= 1e-5 && d.paramGrad <= 1e-4 && d.inputGrad <= 1e-5, JSON.stringify(d));
  });

  it("refuses the tanh approximation ('gelu_new'), naming the activations it has", async () => {
    const path = await saveLayersModel(convnextLike('gelu_new'), join(dir, 'gelunew'));
    await assert.rejects(loadTfjsLayersModel(path, { bodyEnd: 'act' }), {
      message: /'fc1'.*activation 'gelu_new'.*exact gelu/s,
    });
  });
});
