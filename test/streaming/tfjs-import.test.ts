// The importer against TensorFlow.js itself: real Keras-style models built and saved with
// tfjs-layers, imported as streamed bodies, must give the same feature map at bodyEnd as
// tfjs-layers' own intermediate output (and the same trunk, head and logits), on the cpu backend.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../../trainer/backend/select.ts';
import { compareStep, relativeError } from '../../trainer/streaming/compare.ts';
import { runBody, streamForward, tensorSource } from '../../trainer/streaming/executor.ts';
import { minimumTile, tileGrid } from '../../trainer/streaming/geometry.ts';
import type { Body } from '../../trainer/streaming/graph.ts';
import { headForward, scoped } from '../../trainer/streaming/network.ts';
import { importedParams, weightTensors } from '../../trainer/streaming/tfjs-import/params.ts';
import {
  checkInputSize,
  importedNetwork,
  loadTfjsLayersModel,
  type TfjsLayersModel,
} from '../../trainer/streaming/tfjs-import.ts';
import { randomizeWeights, type SaveOptions, saveLayersModel } from '../fixtures/tfjs/save-layers-model.ts';

const TOL = 1e-5;
let dir = '';
let counter = 0;

type ST = tfl.SymbolicTensor;
const apply = (layer: tfl.layers.Layer, x: ST | ST[]): ST => layer.apply(x) as ST;

function intermediate(model: tfl.LayersModel, layer: string): tfl.LayersModel {
  return tfl.model({ inputs: model.inputs, outputs: model.getLayer(layer).output as ST });
}

/** The op of node `name`, as a plain record for field checks. */
function opOf(body: Body, name: string): Record<string, unknown> {
  const node = body.nodes.find((n) => n.name === name);
  assert.ok(node, `node '${name}' in ${body.nodes.map((n) => n.name).join(', ')}`);
  return { ...node.op };
}

function assertClose(got: tf.Tensor, want: tf.Tensor, what: string): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const err = relativeError(got.dataSync(), want.dataSync());
  assert.ok(err <= TOL, `${what}: relative error ${err} > ${TOL}`);
}

/** Saves, imports at bodyEnd, and compares runBody with tfjs-layers' output at bodyEnd for each size. */
async function importAndCompare(
  model: tfl.LayersModel,
  bodyEnd: string,
  sizes: readonly (readonly [number, number])[],
  options: SaveOptions = {},
): Promise<TfjsLayersModel> {
  const path = await saveLayersModel(model, join(dir, `m${++counter}`), options);
  const imported = await loadTfjsLayersModel(path, { bodyEnd });
  const tensors = weightTensors(imported.weights);
  const sub = intermediate(model, bodyEnd);
  for (const [h, w] of sizes) {
    checkInputSize(imported, h, w);
    tf.tidy(() => {
      const x = tf.randomNormal(
        [1, h, w, imported.inputChannels],
        0,
        1,
        'float32',
        h * 31 + w,
      ) as tf.Tensor4D;
      const got = runBody(imported.network.body, scoped(tensors, 'body'), x);
      assertClose(got, sub.predict(x) as tf.Tensor, `${model.name} body at '${bodyEnd}', ${h}×${w}`);
    });
  }
  for (const t of tensors.values()) t.dispose();
  return imported;
}

/** VGG-like Sequential: 'same' convs (stride 1 and 2, odd and even kernels), 'valid' convs, max pools, GAP + dense head. */
function vggLike(): tfl.Sequential {
  const L = tfl.layers;
  const m = tfl.sequential({ name: 'vgg' });
  m.add(
    L.conv2d({
      inputShape: [null, null, 3],
      filters: 6,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      name: 'c1',
    }),
  );
  m.add(L.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', name: 'c2' }));
  m.add(L.maxPooling2d({ poolSize: 2, name: 'p1' }));
  m.add(L.conv2d({ filters: 8, kernelSize: 3, padding: 'valid', activation: 'relu', name: 'c3' }));
  m.add(L.conv2d({ filters: 8, kernelSize: 2, padding: 'same', name: 'c4' }));
  m.add(L.maxPooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'p2' }));
  m.add(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'c5' }));
  m.add(L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'p3' }));
  m.add(L.globalAveragePooling2d({ name: 'gap' }));
  m.add(L.dropout({ rate: 0.5, name: 'drop' }));
  m.add(L.dense({ units: 5, activation: 'softmax', name: 'logits' }));
  return m;
}

/** ResNet-like functional model: ZeroPadding2D + stride-2 7×7 stem, frozen BN, residual Adds, a stride-2 'same' block. */
function resnetLike(): tfl.LayersModel {
  const L = tfl.layers;
  const input = tfl.input({ shape: [null, null, 3], name: 'image' });
  let x = apply(L.zeroPadding2d({ padding: 3, name: 'pad1' }), input);
  x = apply(L.conv2d({ filters: 8, kernelSize: 7, strides: 2, useBias: false, name: 'conv1' }), x);
  x = apply(L.batchNormalization({ epsilon: 1e-5, name: 'bn1' }), x);
  x = apply(L.reLU({ name: 'relu1' }), x);
  x = apply(
    L.zeroPadding2d({
      padding: [
        [1, 1],
        [1, 1],
      ],
      name: 'pad2',
    }),
    x,
  );
  const stem = apply(L.maxPooling2d({ poolSize: 3, strides: 2, name: 'pool1' }), x);
  let y = apply(L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', useBias: false, name: 'b1c1' }), stem);
  y = apply(
    L.activation({ activation: 'relu', name: 'b1r1' }),
    apply(L.batchNormalization({ name: 'b1bn1' }), y),
  );
  y = apply(
    L.batchNormalization({ name: 'b1bn2' }),
    apply(L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'b1c2' }), y),
  );
  const b1 = apply(L.reLU({ name: 'b1out' }), apply(L.add({ name: 'b1add' }), [y, stem]));
  let z = apply(L.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', name: 'b2c1' }), b1);
  z = apply(L.reLU({ name: 'b2r1' }), apply(L.batchNormalization({ name: 'b2bn1' }), z));
  z = apply(
    L.batchNormalization({ name: 'b2bn2', center: false }),
    apply(L.conv2d({ filters: 16, kernelSize: 3, padding: 'same', name: 'b2c2' }), z),
  );
  const down = apply(
    L.batchNormalization({ name: 'b2downbn', scale: false }),
    apply(L.conv2d({ filters: 16, kernelSize: 1, strides: 2, name: 'b2down' }), b1),
  );
  const b2 = apply(L.reLU({ name: 'b2out' }), apply(L.add({ name: 'b2add' }), [z, down]));
  const pooled = apply(L.globalMaxPooling2d({ name: 'gmp' }), b2);
  const logits = apply(L.dense({ units: 3, name: 'fc' }), pooled);
  return tfl.model({ inputs: input, outputs: logits, name: 'resnetish' });
}

/** Mobile-style layers: depthwise (multiplier 2), separable (dilated), relu6, LeakyReLU, ELU, concat, avg pools, Dense on a map. */
function mobileLike(): tfl.LayersModel {
  const L = tfl.layers;
  const input = tfl.input({ shape: [null, null, 4], name: 'img' });
  const stem = apply(
    L.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu6', name: 'stem' }),
    input,
  );
  let a = apply(L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', name: 'dw1' }), stem);
  a = apply(L.reLU({ maxValue: 6, name: 'dw1relu6' }), a);
  a = apply(L.conv2d({ filters: 8, kernelSize: 1, name: 'pw1' }), a);
  let b = apply(
    L.separableConv2d({
      filters: 5,
      kernelSize: 3,
      dilationRate: 2,
      padding: 'same',
      depthMultiplier: 2,
      name: 'sep1',
    }),
    stem,
  );
  b = apply(L.leakyReLU({ alpha: 0.1, name: 'leaky' }), b);
  let x = apply(L.concatenate({ name: 'cat' }), [a, b]);
  x = apply(L.conv2d({ filters: 8, kernelSize: 3, dilationRate: 2, activation: 'elu', name: 'dil' }), x);
  x = apply(L.averagePooling2d({ poolSize: 2, padding: 'same', name: 'ap' }), x);
  x = apply(
    L.zeroPadding2d({
      padding: [
        [1, 0],
        [0, 1],
      ],
      name: 'zp',
    }),
    x,
  );
  x = apply(L.averagePooling2d({ poolSize: 2, strides: 1, name: 'ap2' }), x);
  x = apply(L.batchNormalization({ name: 'bn' }), x);
  x = apply(L.elu({ name: 'elu' }), x);
  x = apply(L.activation({ activation: 'tanh', name: 'tanh' }), x);
  x = apply(L.dense({ units: 6, activation: 'sigmoid', name: 'dense_map' }), x);
  x = apply(L.depthwiseConv2d({ kernelSize: 3, strides: 2, useBias: false, name: 'dw2' }), x);
  x = apply(L.activation({ activation: 'linear', name: 'lin' }), x);
  return tfl.model({ inputs: input, outputs: x, name: 'mobileish' });
}

describe('tfjs layers-model import equals tfjs-layers', () => {
  before(async () => {
    await initBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'tfjs-import-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("VGG-like Sequential: 'same' and 'valid' convs, body, trunk and head equal the model", async () => {
    const model = vggLike();
    randomizeWeights(model, 1);
    // Sides ≡ 8 (mod 16): c5 and p3 ('same', stride 2) then see even inputs (see the next test).
    const imported = await importAndCompare(model, 'p2', [
      [40, 56],
      [56, 40],
    ]);
    const { body, trunk } = imported.network;
    // 'same' → explicit: 3×3/1 pads 1; 3×3/2 pads 0 before and 1 after; 2×2/1 pads 0/1; max 3×3/1 pads 1.
    const pad = (n: string): unknown => opOf(body, n).padding;
    assert.deepEqual(pad('c1'), [1, 1, 1, 1]);
    assert.deepEqual(pad('c2'), [0, 1, 0, 1]);
    assert.deepEqual(pad('c3'), [0, 0, 0, 0]);
    assert.deepEqual(pad('c4'), [0, 1, 0, 1]);
    assert.deepEqual(pad('p2'), [1, 1, 1, 1]);
    assert.deepEqual(
      imported.sameAlignment.map((a) => a.layer),
      ['c2', 'c5', 'p3'],
    );
    assert.deepEqual(
      trunk?.nodes.map((n) => n.name),
      ['c5', 'c5/relu', 'p3'],
    );
    assert.deepEqual(imported.head, {
      pooling: 'avg',
      poolingLayer: 'gap',
      dense: { layer: 'logits', units: 5, activation: 'softmax' },
    });
    assert.deepEqual(
      imported.skipped.map((s) => s.layer),
      ['drop'],
    );

    // The whole network: streamed body, trunk, GAP and dense give the model's logits (softmax applied).
    const net = importedNetwork(imported);
    const { params, loaded, initialised } = importedParams(net, imported.weights, 7);
    assert.deepEqual(initialised, []);
    assert.ok(loaded.includes('trunk/c5/kernel') && loaded.includes('head/dense/kernel'));
    const image = tf.randomNormal([1, 56, 72, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    checkInputSize(imported, 56, 72);
    const grid = tileGrid(net.body, [56, 72], [32, 40]);
    assert.ok(grid.tiles.length > 1);
    const F = await streamForward(net.body, scoped(params, 'body'), tensorSource(image), grid);
    const probs = tf.tidy(() => tf.softmax(headForward(net, params, F)));
    assertClose(probs, model.predict(image) as tf.Tensor, 'streamed VGG logits');
    tf.dispose([image, F, probs, ...params.values()]);

    // Another number of classes: the dense layer starts fresh, everything else is the model's.
    const other = importedParams(importedNetwork(imported, { outputs: 7 }), imported.weights, 7);
    assert.deepEqual(other.initialised, ['head/dense/kernel', 'head/dense/bias']);
    assert.equal(other.loaded.length, imported.weights.size - 2);
    for (const v of other.params.values()) v.dispose();
  });

  it('VGG-like: an image size that misaligns a stride-2 same layer is refused, and really differs', async () => {
    const model = vggLike();
    const path = await saveLayersModel(model, join(dir, `m${++counter}`));
    const imported = await loadTfjsLayersModel(path, { bodyEnd: 'p2' });
    // 44: c2 sees 44 (even) but c5 sees 44/4 − 2 = 9, odd.
    assert.throws(
      () => checkInputSize(imported, 44, 48),
      /height of 44 .*layer 'c5' \(Conv2D, padding 'same', stride 2\) would see an input of 9.*heights that work nearby: 40, 56$/,
    );
    // The advice leads somewhere: both sizes pass the check and tile (the body's total stride is 4;
    // 42, which suits every 'same' layer, is not a multiple of it, and 48 misaligns 'p3'), with a
    // width that does too.
    for (const h of [40, 56]) {
      checkInputSize(imported, h, 72);
      tileGrid(imported.network.body, [h, 72], [32, 32]);
    }
    // tfjs-layers pads that input asymmetrically by size: its trunk output has ⌈9/2⌉ = 5 rows, the explicit body ⌊⌋ = 4.
    const sub = intermediate(model, 'c5');
    const want = tf.tidy(() => (sub.predict(tf.zeros([1, 44, 48, 3])) as tf.Tensor).shape);
    assert.equal(want[1], 5);
  });

  it("a 1×1 'same' conv and pool with stride 2 take odd sizes: TF pads nothing at any length", async () => {
    const L = tfl.layers;
    const input = tfl.input({ shape: [null, null, 3], name: 'image' });
    let x = apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c1' }), input);
    x = apply(L.conv2d({ filters: 6, kernelSize: 1, strides: 2, padding: 'same', name: 'down' }), x);
    x = apply(L.maxPooling2d({ poolSize: 1, strides: 2, padding: 'same', name: 'sub' }), x);
    x = apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'valid', name: 'c2' }), x);
    const model = tfl.model({ inputs: input, outputs: x, name: 'pointwise-down' });
    randomizeWeights(model, 5);
    const imported = await importAndCompare(model, 'c2', [
      [33, 35],
      [37, 40],
      [29, 31],
    ]);
    assert.deepEqual(imported.sameAlignment, []);
  });

  it('ResNet-like functional model: ZeroPadding2D folds into conv1, frozen BN folds to affine, residual Adds', async () => {
    const model = resnetLike();
    randomizeWeights(model, 2);
    const imported = await importAndCompare(
      model,
      'b1out',
      [
        [32, 48],
        [40, 40],
      ],
      { shardBytes: 1000, groups: 3 },
    );
    const body = imported.network.body;
    assert.deepEqual(opOf(body, 'conv1').padding, [3, 3, 3, 3], 'pad1 folded into conv1');
    assert.ok(!body.nodes.some((n) => n.name === 'pad1'));
    assert.equal(
      body.nodes.find((n) => n.name === 'pad2')?.op.kind,
      'pad',
      'zero padding before a max pool stays',
    );
    assert.equal(body.nodes.find((n) => n.name === 'bn1')?.op.kind, 'affine');

    // The trunk (block 2) on the body's output equals the model up to GlobalMaxPooling's input.
    const trunk = imported.network.trunk;
    assert.ok(trunk);
    assert.equal(trunk.output, 'b2out');
    assert.deepEqual(imported.head, {
      pooling: 'max',
      poolingLayer: 'gmp',
      dense: { layer: 'fc', units: 3, activation: 'linear' },
    });
    const tensors = weightTensors(imported.weights);
    tf.tidy(() => {
      const x = tf.randomNormal([1, 32, 48, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      const F = runBody(imported.network.body, scoped(tensors, 'body'), x);
      const T = runBody(trunk, scoped(tensors, 'trunk'), F);
      assertClose(T, intermediate(model, 'b2out').predict(x) as tf.Tensor, 'trunk');
      const net = importedNetwork(imported);
      assertClose(headForward(net, tensors, F), model.predict(x) as tf.Tensor, 'logits');
    });
    for (const t of tensors.values()) t.dispose();

    // The imported network streams exactly: a training step over tiles equals the whole image.
    const net = importedNetwork(imported);
    const tile = Math.ceil(minimumTile(net.body, 0) / 8) * 8;
    const d = await compareStep(net, [tile + 8, tile], [tile, tile], 3);
    assert.ok(d.tiles > 1);
    assert.ok(d.output <= 1e-5 && d.paramGrad <= 1e-4 && d.inputGrad <= 1e-5, JSON.stringify(d));

    // Cut at the end of block 2 instead: no trunk, the head is still found.
    const whole = await importAndCompare(model, 'b2out', [[32, 32]]);
    assert.equal(whole.network.trunk, undefined);
    assert.equal(whole.head?.dense?.units, 3);
  });

  it('mobile-style layers: depthwise, separable, dilation, relu6, LeakyReLU, ELU, concat, avg pools, Dense on a map', async () => {
    const model = mobileLike();
    randomizeWeights(model, 3);
    const imported = await importAndCompare(model, 'lin', [
      [32, 36],
      [28, 28],
    ]);
    const body = imported.network.body;
    assert.deepEqual(opOf(body, 'dw1'), {
      kind: 'conv2d',
      filters: 12,
      kernel: [3, 3],
      stride: [1, 1],
      dilation: [1, 1],
      padding: [1, 1, 1, 1],
      groups: 6,
      bias: true,
    });
    assert.equal(opOf(body, 'sep1/depthwise').groups, 6);
    assert.deepEqual(opOf(body, 'sep1/depthwise').padding, [2, 2, 2, 2]);
    assert.deepEqual(opOf(body, 'dw1relu6'), { kind: 'activation', fn: 'relu6' });
    assert.deepEqual(opOf(body, 'leaky'), { kind: 'activation', fn: 'leakyRelu', alpha: 0.1 });
    assert.deepEqual(opOf(body, 'ap2').padding, [1, 0, 0, 1], 'zero padding folded into a valid avg pool');
    assert.deepEqual(opOf(body, 'dense_map').kernel, [1, 1]);
    assert.ok(!body.nodes.some((n) => n.name === 'lin'), "a 'linear' activation adds no node");
    assert.equal(imported.network.body.output, 'dw2');
    assert.equal(imported.head, undefined);
  });

  it('a nested model (transfer learning: base model inside a Sequential) is flattened', async () => {
    const L = tfl.layers;
    const input = tfl.input({ shape: [null, null, 3], name: 'base_in' });
    const c = apply(
      L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'base_c1' }),
      input,
    );
    const p = apply(L.maxPooling2d({ poolSize: 2, name: 'base_p1' }), c);
    const base = tfl.model({ inputs: input, outputs: p, name: 'base' });
    const outer = tfl.sequential({
      name: 'classifier',
      layers: [base, L.globalAveragePooling2d({ name: 'gap' }), L.dense({ units: 2, name: 'fc' })],
    });
    randomizeWeights(outer, 4);
    const path = await saveLayersModel(outer, join(dir, `m${++counter}`));
    const imported = await loadTfjsLayersModel(path, { bodyEnd: 'base_p1' });
    assert.deepEqual(
      imported.network.body.nodes.map((n) => n.name),
      ['base_c1', 'base_c1/relu', 'base_p1'],
    );
    assert.equal(imported.head?.dense?.units, 2);
    const tensors = weightTensors(imported.weights);
    tf.tidy(() => {
      const x = tf.randomNormal([1, 16, 20, 3], 0, 1, 'float32', 9) as tf.Tensor4D;
      const F = runBody(imported.network.body, scoped(tensors, 'body'), x);
      assertClose(F, base.predict(x) as tf.Tensor, 'nested body');
      assertClose(
        headForward(importedNetwork(imported), tensors, F),
        outer.predict(x) as tf.Tensor,
        'nested logits',
      );
    });
    for (const t of tensors.values()) t.dispose();
  });
});
