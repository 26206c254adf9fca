// Every refusal of the layers-model importer: the error names the layer and its class, says why it
// cannot stream and what to do instead; cuts that a skip connection crosses, unknown bodyEnd,
// channels_first, shared layers, malformed manifests and weight files. And the non-errors: layers
// after the cut that do not translate leave the trunk out with a reason instead of failing.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../../trainer/backend/select.ts';
import {
  importTfjsLayersTopology,
  loadTfjsLayersModel,
  TfjsImportError,
  UnsupportedLayerError,
} from '../../trainer/streaming/tfjs-import.ts';
import { modelJsonDoc, saveLayersModel } from '../fixtures/tfjs/save-layers-model.ts';

type ST = tfl.SymbolicTensor;
const L = tfl.layers;
const apply = (layer: tfl.layers.Layer, x: ST | ST[]): ST => layer.apply(x) as ST;

/** image → conv 'c0' → the given layers, one after another. */
function chain(layers: tfl.layers.Layer[], shape: (number | null)[] = [null, null, 3]): tfl.LayersModel {
  const input = tfl.input({ shape, name: 'image' });
  let x = apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c0' }), input);
  for (const l of layers) x = apply(l, x);
  return tfl.model({ inputs: input, outputs: x });
}

/** Asserts that importing at bodyEnd fails with an UnsupportedLayerError for `layer` (class) whose message matches every pattern. */
async function assertRefused(
  model: tfl.LayersModel | Record<string, unknown>,
  bodyEnd: string,
  layer: string,
  className: string,
  patterns: RegExp[],
): Promise<void> {
  const doc = model instanceof tfl.LayersModel ? await modelJsonDoc(model) : model;
  assert.throws(
    () => importTfjsLayersTopology(doc, { bodyEnd }),
    (err: unknown) => {
      assert.ok(
        err instanceof UnsupportedLayerError,
        `expected an UnsupportedLayerError, got ${String(err)}`,
      );
      assert.equal(err.layer, layer);
      assert.equal(err.className, className);
      assert.match(err.message, new RegExp(`^layer '${layer}' \\(${className}\\) cannot be streamed: it `));
      for (const p of patterns) assert.match(err.message, p);
      return true;
    },
  );
}

const CUT_BEFORE = /end the streamed body before it \(bodyEnd: 'c0'\)/;

/** A hand-written functional model.json: image → conv 'c0' → one layer of any class (no weights needed for it). */
function handWritten(className: string, config: Record<string, unknown> = {}): Record<string, unknown> {
  const ref = (name: string) => [[[name, 0, 0, {}]]];
  return {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Model',
      config: {
        name: 'hand',
        layers: [
          {
            name: 'image',
            class_name: 'InputLayer',
            config: { batch_input_shape: [null, null, null, 3], name: 'image' },
            inbound_nodes: [],
          },
          {
            name: 'c0',
            class_name: 'Conv2D',
            config: { name: 'c0', filters: 2, kernel_size: [1, 1], use_bias: false },
            inbound_nodes: ref('image'),
          },
          {
            name: 'odd',
            class_name: className,
            config: { name: 'odd', ...config },
            inbound_nodes: ref('c0'),
          },
        ],
        input_layers: [['image', 0, 0]],
        output_layers: [['odd', 0, 0]],
      },
    },
    weightsManifest: [
      { paths: ['w.bin'], weights: [{ name: 'c0/kernel', shape: [1, 1, 3, 2], dtype: 'float32' }] },
    ],
  };
}

describe('tfjs layers-model import refuses what cannot stream, and says why', () => {
  let dir = '';
  before(async () => {
    await initBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'tfjs-refuse-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('global pooling, Flatten and Reshape: global receptive field; cut before them', async () => {
    const why = /global receptive field.*no tile can compute it/;
    const head = /the trainer's head does the global pooling and the dense layer/;
    await assertRefused(
      chain([L.globalAveragePooling2d({ name: 'gap' })]),
      'gap',
      'gap',
      'GlobalAveragePooling2D',
      [why, CUT_BEFORE, head],
    );
    await assertRefused(
      chain([L.globalMaxPooling2d({ name: 'gmp' }), L.dense({ units: 2, name: 'fc' })]),
      'fc',
      'gmp',
      'GlobalMaxPooling2D',
      [why, CUT_BEFORE],
    );
    await assertRefused(chain([L.flatten({ name: 'flat' })], [8, 8, 3]), 'flat', 'flat', 'Flatten', [
      why,
      CUT_BEFORE,
    ]);
    await assertRefused(
      chain([L.reshape({ targetShape: [64, 4], name: 'rs' })], [8, 8, 3]),
      'rs',
      'rs',
      'Reshape',
      [why],
    );
  });

  it('normalisation over H×W: image-wide statistics; unit norm over channels: local but no op', async () => {
    await assertRefused(
      chain([L.layerNormalization({ axis: [1, 2, 3], name: 'ln' })], [8, 8, 3]),
      'ln',
      'ln',
      'LayerNormalization',
      [/statistics taken over the whole image/, /replace it with BatchNormalization \(frozen/, CUT_BEFORE],
    );
    // Layer norm over channels only is translated (tfjs-import-layer-norm.test.ts); unit norm has no op.
    await assertRefused(handWritten('UnitNormalization', { axis: -1 }), 'odd', 'odd', 'UnitNormalization', [
      /is local, but the streamed body has no op for it/,
    ]);
    await assertRefused(
      handWritten('GroupNormalization', { groups: 2 }),
      'odd',
      'odd',
      'GroupNormalization',
      [/statistics taken over the whole image/],
    );
    await assertRefused(
      chain([L.batchNormalization({ axis: 1, name: 'bnh' })], [8, 8, 3]),
      'bnh',
      'bnh',
      'BatchNormalization',
      [/normalises along axis 1, not the channel axis/],
    );
  });

  it('dropout and noise: random masks; remove them or cut before', async () => {
    const why = /draws random masks or noise: overlapping tiles and the backward recomputation/;
    const fix = /Remove it \(or set its rate to 0\) before saving, or end the streamed body before it/;
    await assertRefused(chain([L.dropout({ rate: 0.2, name: 'drop' })]), 'drop', 'drop', 'Dropout', [
      why,
      fix,
    ]);
    await assertRefused(
      chain([L.gaussianNoise({ stddev: 0.1, name: 'noise' })]),
      'noise',
      'noise',
      'GaussianNoise',
      [why],
    );
    await assertRefused(handWritten('SpatialDropout2D', { rate: 0.1 }), 'odd', 'odd', 'SpatialDropout2D', [
      why,
      fix,
    ]);
  });

  it('upsampling, transposed convolution, cropping: change the grid, no interval rules', async () => {
    const why = /changes the sampling grid.*no interval rules/;
    await assertRefused(chain([L.upSampling2d({ size: [2, 2], name: 'up' })]), 'up', 'up', 'UpSampling2D', [
      why,
      /End the streamed body before it \(bodyEnd: 'c0'\)/,
    ]);
    await assertRefused(
      chain([L.conv2dTranspose({ filters: 2, kernelSize: 3, strides: 2, name: 'deconv' })]),
      'deconv',
      'deconv',
      'Conv2DTranspose',
      [why],
    );
    await assertRefused(
      chain([L.cropping2D({ cropping: [1, 1], name: 'crop' })]),
      'crop',
      'crop',
      'Cropping2D',
      [why],
    );
  });

  it("average pooling with 'same' padding that pads: TF excludes padding from the mean", async () => {
    await assertRefused(
      chain([L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'ap' })]),
      'ap',
      'ap',
      'AveragePooling2D',
      [/averages border windows over the real pixels only/, /count_include_pad/, /Use padding 'valid'/],
    );
  });

  it('activations without an op, in an Activation layer or fused into a conv; other pointwise layers', async () => {
    const why = /uses the activation '(softplus|selu)', which the streamed body has no op for/;
    await assertRefused(
      chain([L.activation({ activation: 'softplus', name: 'sp' })]),
      'sp',
      'sp',
      'Activation',
      [why, /Retrain with a supported activation, or end the streamed body before it \(bodyEnd: 'c0'\)/],
    );
    await assertRefused(
      chain([L.conv2d({ filters: 2, kernelSize: 1, activation: 'selu', name: 'c1' })]),
      'c1',
      'c1',
      'Conv2D',
      [why],
    );
    const noOp = /is local, but the streamed body has no op for it/;
    await assertRefused(chain([L.softmax({ name: 'sm' })]), 'sm', 'sm', 'Softmax', [noOp]);
    await assertRefused(chain([L.prelu({ name: 'pr' })], [8, 8, 3]), 'pr', 'pr', 'PReLU', [noOp]);
    await assertRefused(chain([L.reLU({ maxValue: 4, name: 'r4' })]), 'r4', 'r4', 'ReLU', [
      /max_value 4/,
      /relu6 \(max_value 6\)/,
    ]);
    const input = tfl.input({ shape: [null, null, 3], name: 'image' });
    const c0 = apply(L.conv2d({ filters: 4, kernelSize: 1, name: 'c0' }), input);
    const c1 = apply(L.conv2d({ filters: 4, kernelSize: 1, name: 'c1' }), input);
    const mul = apply(L.multiply({ name: 'mul' }), [c0, c1]);
    await assertRefused(tfl.model({ inputs: input, outputs: mul }), 'mul', 'mul', 'Multiply', [
      noOp,
      /end the streamed body before it, at a layer that its inputs \(c0, c1\) all come from/,
    ]);
    const cat = apply(L.concatenate({ axis: 2, name: 'catw' }), [c0, c1]);
    await assertRefused(tfl.model({ inputs: input, outputs: cat }), 'catw', 'catw', 'Concatenate', [
      /only concatenation along the channel axis/,
    ]);
  });

  it('code, preprocessing and unknown classes', async () => {
    await assertRefused(handWritten('Lambda', { function: 'x' }), 'odd', 'odd', 'Lambda', [
      /runs arbitrary code that the importer cannot inspect/,
      /Replace it with built-in layers, or end the streamed body before it \(bodyEnd: 'c0'\)/,
    ]);
    await assertRefused(handWritten('Rescaling', { scale: 1 / 255 }), 'odd', 'odd', 'Rescaling', [
      /preprocessing or augmentation/,
      /normalise in the data pipeline/,
    ]);
    await assertRefused(handWritten('MyCustomBlock'), 'odd', 'odd', 'MyCustomBlock', [
      /a layer class the importer does not know/,
      /it needs an op in trainer\/streaming\/ops.ts/,
    ]);
    // The first layer after the image: nothing before it can stream.
    const input = tfl.input({ shape: [8, 8, 3], name: 'image' });
    const flat = apply(L.flatten({ name: 'flat' }), input);
    await assertRefused(tfl.model({ inputs: input, outputs: flat }), 'flat', 'flat', 'Flatten', [
      /its input is the image, so nothing before it can stream/,
    ]);
  });

  it('bad cuts: unknown bodyEnd lists the layers, the input, a cut that a skip connection crosses', async () => {
    const input = tfl.input({ shape: [null, null, 3], name: 'image' });
    const c0 = apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c0' }), input);
    const c1 = apply(L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'c1' }), c0);
    const add = apply(L.add({ name: 'add' }), [c0, c1]);
    const doc = await modelJsonDoc(tfl.model({ inputs: input, outputs: add, name: 'res' }));
    assert.throws(
      () => importTfjsLayersTopology(doc, { bodyEnd: 'conv9' }),
      /bodyEnd 'conv9' is not a layer of model 'res'; its layers are: image \(InputLayer\), c0 \(Conv2D\), c1 \(Conv2D\), add \(Add\)/,
    );
    assert.throws(
      () => importTfjsLayersTopology(doc, { bodyEnd: 'image' }),
      /is the model's input; the streamed body would be empty/,
    );
    assert.throws(
      () => importTfjsLayersTopology(doc, { bodyEnd: 'c1' }),
      /cannot end the body at 'c1': layer 'add' \(Add\) after it also reads 'c0' from before the cut \(a skip connection crosses it\)/,
    );
    assert.equal(importTfjsLayersTopology(doc, { bodyEnd: 'add' }).network.body.output, 'add');
  });

  it('channels_first, shared layers, several inputs, graph models', async () => {
    const cfDoc = await modelJsonDoc(
      tfl.sequential({
        layers: [
          L.conv2d({
            inputShape: [3, 8, 8],
            filters: 2,
            kernelSize: 3,
            dataFormat: 'channelsFirst',
            name: 'cf',
          }),
        ],
      }),
    );
    assert.throws(
      () => importTfjsLayersTopology(cfDoc, { bodyEnd: 'cf' }),
      /layer 'cf' \(Conv2D\) uses data_format 'channels_first'; the streamed body is NHWC \(channels_last\)/,
    );

    const input = tfl.input({ shape: [null, null, 3], name: 'image' });
    const shared = L.conv2d({ filters: 3, kernelSize: 3, padding: 'same', name: 'shared' });
    const sharedDoc = await modelJsonDoc(
      tfl.model({ inputs: input, outputs: apply(shared, apply(shared, input)) }),
    );
    assert.throws(
      () => importTfjsLayersTopology(sharedDoc, { bodyEnd: 'shared' }),
      /layer 'shared' \(Conv2D\) is applied 2 times \(shared weights\)/,
    );

    const a = tfl.input({ shape: [null, null, 3], name: 'a' });
    const b = tfl.input({ shape: [null, null, 3], name: 'b' });
    const two = await modelJsonDoc(
      tfl.model({ inputs: [a, b], outputs: apply(L.add({ name: 'sum' }), [a, b]) }),
    );
    assert.throws(
      () => importTfjsLayersTopology(two, { bodyEnd: 'sum' }),
      /has 2 inputs \(a, b\); the streamed body takes one image/,
    );

    assert.throws(
      () =>
        importTfjsLayersTopology({ format: 'graph-model', modelTopology: { node: [] } }, { bodyEnd: 'x' }),
      /format 'graph-model' is not a layers model/,
    );
  });

  it('weights: a missing weight, a non-float dtype, missing or truncated shards, an unreadable model.json', async () => {
    const model = chain([L.conv2d({ filters: 2, kernelSize: 1, name: 'c1' })]);
    const doc = await modelJsonDoc(model);
    const manifest = doc.weightsManifest as { weights: { name: string; dtype: string }[] }[];
    const without = structuredClone(doc);
    (without.weightsManifest as typeof manifest)[0]?.weights.splice(3, 1); // c1/bias
    assert.throws(
      () => importTfjsLayersTopology(without, { bodyEnd: 'c1' }),
      /layer 'c1' \(Conv2D\): the weights manifest has no 'c1\/bias'; it has c1\/kernel/,
    );
    const ints = structuredClone(doc);
    const w = (ints.weightsManifest as typeof manifest)[0]?.weights[2];
    if (w) w.dtype = 'int32';
    assert.throws(
      () => importTfjsLayersTopology(ints, { bodyEnd: 'c1' }),
      /weight 'c1\/kernel' has dtype int32; layer weights must be float32/,
    );

    const path = await saveLayersModel(model, join(dir, 'files'), { shardBytes: 200 });
    await rm(join(dir, 'files', 'group1-shard2of3.bin'));
    await assert.rejects(
      loadTfjsLayersModel(path, { bodyEnd: 'c1' }),
      /cannot read weight shard .*group1-shard2of3.bin \(listed in .*model.json\)/,
    );
    await writeFile(join(dir, 'files', 'group1-shard2of3.bin'), new Uint8Array(8));
    await assert.rejects(
      loadTfjsLayersModel(path, { bodyEnd: 'c1' }),
      /weight 'c0\/kernel' needs bytes 0..432 of manifest group 0, but its shards hold only 296 bytes/,
    );
    await writeFile(join(dir, 'bad.json'), '{"modelTopology": ');
    await assert.rejects(loadTfjsLayersModel(join(dir, 'bad.json'), { bodyEnd: 'c1' }), TfjsImportError);
  });

  it('after the cut: an untranslatable layer leaves the trunk out with a reason; a two-layer head is reported', async () => {
    const input = tfl.input({ shape: [16, 16, 3], name: 'image' });
    const c0 = apply(L.conv2d({ filters: 4, kernelSize: 3, name: 'c0' }), input);
    const c1 = apply(L.conv2d({ filters: 4, kernelSize: 3, name: 'c1' }), c0);
    const ln = apply(
      L.layerNormalization({ axis: [1, 2, 3], name: 'ln' }),
      apply(L.upSampling2d({ name: 'up' }), c1),
    );
    const out = apply(
      L.dense({ units: 2, name: 'fc' }),
      apply(L.globalAveragePooling2d({ name: 'gap' }), ln),
    );
    const t = importTfjsLayersTopology(await modelJsonDoc(tfl.model({ inputs: input, outputs: out })), {
      bodyEnd: 'c0',
    });
    assert.equal(t.network.trunk, undefined);
    assert.equal(t.head, undefined);
    assert.deepEqual(
      t.skipped.map((s) => s.layer),
      ['c1', 'up', 'ln', 'gap', 'fc'],
    );
    assert.match(
      t.skipped[1]?.reason ?? '',
      /not imported \(no trunk\): layer 'up' \(UpSampling2D\) cannot be streamed/,
    );
    assert.match(t.skipped[2]?.reason ?? '', /not imported because 'up' \(UpSampling2D\) cannot be/);
    assert.ok(!t.recipes.some((r) => r.key.startsWith('trunk/')));

    const two = chain([
      L.globalAveragePooling2d({ name: 'gap' }),
      L.dense({ units: 8, activation: 'relu', name: 'hidden' }),
      L.dense({ units: 2, name: 'fc' }),
    ]);
    const h = importTfjsLayersTopology(await modelJsonDoc(two), { bodyEnd: 'c0' });
    assert.deepEqual(h.head, { pooling: 'avg', poolingLayer: 'gap' });
    assert.deepEqual(
      h.skipped.map((s) => s.layer),
      ['hidden', 'fc'],
    );
    assert.match(
      h.skipped[0]?.reason ?? '',
      /the trainer's head is one dense layer.*hidden \(Dense\), fc \(Dense\)/,
    );
    assert.ok(!h.recipes.some((r) => r.key.startsWith('head/')));
  });
});
