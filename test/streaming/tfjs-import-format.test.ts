// The model.json variants the importer reads: weights quantized by the converter (uint8, uint16,
// float16), the Python converter's Keras 2 layout (model_config wrapper, 'Functional', axis lists),
// Keras 3's inbound-node format, scoped weight names. TensorFlow.js's own loader is the oracle
// wherever it can read the same files.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import { initBackend } from '../../trainer/backend/select.ts';
import { relativeError } from '../../trainer/streaming/compare.ts';
import { runBody } from '../../trainer/streaming/executor.ts';
import { scoped } from '../../trainer/streaming/network.ts';
import { weightTensors } from '../../trainer/streaming/tfjs-import/params.ts';
import { samePadding, tfSamePadding } from '../../trainer/streaming/tfjs-import/same-padding.ts';
import { halfToFloat } from '../../trainer/streaming/tfjs-import/weights.ts';
import {
  buildWeights,
  importTfjsLayersTopology,
  loadTfjsLayersModel,
} from '../../trainer/streaming/tfjs-import.ts';
import { randomizeWeights, saveLayersModel } from '../fixtures/tfjs/save-layers-model.ts';

type ST = tfl.SymbolicTensor;
const L = tfl.layers;
const apply = (layer: tfl.layers.Layer, x: ST | ST[]): ST => layer.apply(x) as ST;

/** float → IEEE binary16 bits, round to nearest (normal and subnormal range; enough for weights). */
function toHalf(v: number): number {
  const u = new Uint32Array(new Float32Array([v]).buffer)[0] as number;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  const mant = u & 0x7fffff;
  if (exp <= 0) return exp < -10 ? sign : sign | ((((mant | 0x800000) >> (1 - exp)) + 0x1000) >> 13);
  if (exp >= 31) return sign | 0x7c00;
  return sign | ((exp << 10) + ((mant + 0x1000) >> 13));
}

type QDtype = 'uint8' | 'uint16' | 'float16';

/** Quantizes every float32 weight as the tensorflowjs converter does (affine uint8/uint16, or float16). */
function quantize(
  dtype: QDtype,
  specs: tf.io.WeightsManifestEntry[],
  data: Uint8Array,
): { specs: tf.io.WeightsManifestEntry[]; data: Uint8Array } {
  const floats = new Float32Array(data.slice().buffer);
  const out: Uint8Array[] = [];
  let offset = 0;
  const qspecs = specs.map((spec) => {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const v = floats.subarray(offset, offset + n);
    offset += n;
    if (dtype === 'float16') {
      out.push(new Uint8Array(Uint16Array.from(v, toHalf).buffer));
      return { ...spec, quantization: { dtype } };
    }
    const levels = dtype === 'uint8' ? 255 : 65535;
    const min = Math.min(...v);
    const scale = (Math.max(...v) - min) / levels || 1;
    const q = Array.from(v, (x) => Math.round((x - min) / scale));
    out.push(new Uint8Array((dtype === 'uint8' ? Uint8Array.from(q) : Uint16Array.from(q)).buffer));
    return { ...spec, quantization: { dtype, scale, min } };
  });
  const bytes = new Uint8Array(out.reduce((n, b) => n + b.byteLength, 0));
  let at = 0;
  for (const b of out) {
    bytes.set(b, at);
    at += b.byteLength;
  }
  return { specs: qspecs, data: bytes };
}

function smallModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [null, null, 3], name: 'image' });
  let x = apply(L.conv2d({ filters: 6, kernelSize: 3, padding: 'same', name: 'c1' }), input);
  x = apply(L.reLU({ name: 'r1' }), apply(L.batchNormalization({ name: 'bn1' }), x));
  x = apply(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', name: 'dw' }), x);
  x = apply(L.conv2d({ filters: 4, kernelSize: 1, activation: 'relu', name: 'pw' }), x);
  return tfl.model({ inputs: input, outputs: x, name: 'small' });
}

/** A Keras 2 model.json as the Python converter writes it: image → conv (relu) → BN (axis [3]) → add(bn, conv). */
function keras2Doc(weightName: (n: string) => string = (n) => n): Record<string, unknown> {
  const node = (...names: string[]) => [names.map((n) => [n, 0, 0, {}])];
  return {
    format: 'layers-model',
    generatedBy: 'keras v2.13.1',
    convertedBy: 'TensorFlow.js Converter v4.22.0',
    modelTopology: {
      keras_version: '2.13.1',
      backend: 'tensorflow',
      model_config: {
        class_name: 'Functional',
        config: {
          name: 'model',
          layers: [
            {
              class_name: 'InputLayer',
              name: 'input_1',
              config: { batch_input_shape: [null, null, null, 2], dtype: 'float32', name: 'input_1' },
              inbound_nodes: [],
            },
            {
              class_name: 'Conv2D',
              name: 'conv2d',
              config: {
                name: 'conv2d',
                trainable: true,
                dtype: 'float32',
                filters: 3,
                kernel_size: [3, 3],
                strides: [1, 1],
                padding: 'same',
                data_format: 'channels_last',
                dilation_rate: [1, 1],
                groups: 1,
                activation: 'relu',
                use_bias: true,
              },
              inbound_nodes: node('input_1'),
            },
            {
              class_name: 'BatchNormalization',
              name: 'batch_normalization',
              config: { name: 'batch_normalization', axis: [3], epsilon: 0.001, center: true, scale: true },
              inbound_nodes: node('conv2d'),
            },
            {
              class_name: 'Add',
              name: 'add',
              config: { name: 'add' },
              inbound_nodes: node('batch_normalization', 'conv2d'),
            },
          ],
          input_layers: [['input_1', 0, 0]],
          output_layers: [['add', 0, 0]],
        },
      },
      training_config: { loss: 'mse' },
    },
    weightsManifest: [
      {
        paths: ['group1-shard1of1.bin'],
        weights: [
          ['batch_normalization/gamma', [3]],
          ['batch_normalization/beta', [3]],
          ['batch_normalization/moving_mean', [3]],
          ['batch_normalization/moving_variance', [3]],
          ['conv2d/kernel', [3, 3, 2, 3]],
          ['conv2d/bias', [3]],
        ].map(([name, shape]) => ({ name: weightName(name as string), shape, dtype: 'float32' })),
      },
    ],
  };
}

/** The same model in Keras 3's format: __keras_tensor__ inbound nodes, batch_shape, a flat input_layers. */
function keras3Doc(): Record<string, unknown> {
  const k2 = keras2Doc();
  const tensor = (name: string) => ({
    class_name: '__keras_tensor__',
    config: { shape: [null, null, null, 3], dtype: 'float32', keras_history: [name, 0, 0] },
  });
  const topo = (k2.modelTopology as { model_config: { config: { layers: Record<string, unknown>[] } } })
    .model_config;
  const [input, conv, bn, add] = topo.config.layers as Record<string, Record<string, unknown>>[];
  return {
    ...k2,
    modelTopology: {
      class_name: 'Functional',
      config: {
        name: 'model',
        layers: [
          { ...input, config: { batch_shape: [null, null, null, 2], dtype: 'float32', name: 'input_1' } },
          { ...conv, inbound_nodes: [{ args: [tensor('input_1')], kwargs: {} }] },
          {
            ...bn,
            config: { ...bn?.config, axis: -1 },
            inbound_nodes: [{ args: [tensor('conv2d')], kwargs: { training: false } }],
          },
          {
            ...add,
            inbound_nodes: [{ args: [[tensor('batch_normalization'), tensor('conv2d')]], kwargs: {} }],
          },
        ],
        input_layers: ['input_1', 0, 0],
        output_layers: ['add', 0, 0],
      },
    },
  };
}

/** Deterministic bytes for keras2Doc's weights: positive variances, everything else mixed sign. */
function keras2Bytes(): Uint8Array {
  const sizes = [3, 3, 3, 3, 54, 3];
  const values = sizes.flatMap((n, w) =>
    Array.from({ length: n }, (_, i) =>
      w === 0 || w === 3 ? 0.5 + ((i * 7) % 5) / 4 : Math.sin(w * 13 + i),
    ),
  );
  return new Uint8Array(new Float32Array(values).buffer);
}

describe('tfjs layers-model formats', () => {
  let dir = '';
  before(async () => {
    await initBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'tfjs-format-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const dtype of ['uint8', 'uint16', 'float16'] as const) {
    it(`${dtype}-quantized weights dequantize as TF.js's own loader does`, async () => {
      const model = smallModel();
      randomizeWeights(model, 11);
      let saved: { specs: tf.io.WeightsManifestEntry[]; data: Uint8Array } | undefined;
      const path = await saveLayersModel(model, join(dir, dtype), {
        shardBytes: 100,
        transform: (specs, data) => {
          saved = quantize(dtype, specs, data);
          return saved;
        },
      });
      assert.ok(saved);
      const imported = await loadTfjsLayersModel(path, { bodyEnd: 'pw' });
      const topology = model.toJSON(null, false) as unknown as tf.io.ModelJSON['modelTopology'];
      const oracle = await tfl.loadLayersModel(
        tf.io.fromMemory({
          modelTopology: topology,
          weightSpecs: saved.specs,
          weightData: saved.data.slice().buffer,
        }),
      );
      const tensors = weightTensors(imported.weights);
      tf.tidy(() => {
        const x = tf.randomNormal([1, 12, 16, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
        const got = runBody(imported.network.body, scoped(tensors, 'body'), x).dataSync();
        const want = (oracle.predict(x) as tf.Tensor).dataSync();
        assert.ok(relativeError(got, want) <= 1e-5, `${dtype}: ${relativeError(got, want)}`);
        // The quantization really changed the weights: the float model gives something else.
        const float = (model.predict(x) as tf.Tensor).dataSync();
        assert.ok(relativeError(got, float) > 1e-6, `${dtype} weights look unquantized`);
      });
      for (const t of tensors.values()) t.dispose();
    });
  }

  it("'same' padding is the fixed max(k − s, 0) split exactly when the input is a multiple of the stride", () => {
    const sides = fc.integer({ min: 1, max: 64 });
    const property = (n: number, k: number, s: number): boolean => {
      const [t, b] = samePadding([k, k], [s, s]);
      const [tt, tb] = tfSamePadding(n, k, s);
      if (n % s === 0) return t === tt && b === tb;
      // Otherwise TF pads max(k − n mod s, 0): another amount whenever the window overhangs
      // (and even when it does not, TF's output has ⌈n/s⌉ rows, the explicit padding's ⌊n/s⌋).
      return k <= n % s || t + b !== tt + tb;
    };
    fc.assert(fc.property(sides, fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 4 }), property));
  });

  it('halfToFloat decodes zero, subnormals, normals, infinities and NaN', () => {
    assert.equal(halfToFloat(0x0000), 0);
    assert.equal(halfToFloat(0x3c00), 1);
    assert.equal(halfToFloat(0xc000), -2);
    assert.equal(halfToFloat(0x0001), 2 ** -24);
    assert.equal(halfToFloat(0x7bff), 65504);
    assert.equal(halfToFloat(0x7c00), Number.POSITIVE_INFINITY);
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
    for (const v of [0.1, -3.25, 0.007, 1000]) {
      assert.ok(Math.abs(halfToFloat(toHalf(v)) - v) <= Math.abs(v) * 2 ** -11, `${v}`);
    }
    assert.ok(Math.abs(halfToFloat(toHalf(1e-5)) - 1e-5) <= 2 ** -25, 'subnormal');
  });

  it("the Python converter's Keras 2 layout (model_config wrapper, Functional, BN axis [3]) equals tfjs-layers reading it", async () => {
    const doc = keras2Doc();
    const t = importTfjsLayersTopology(doc, { bodyEnd: 'add' });
    assert.deepEqual(
      t.network.body.nodes.map((n) => [n.name, n.inputs]),
      [
        ['conv2d', ['input']],
        ['conv2d/relu', ['conv2d']],
        ['batch_normalization', ['conv2d/relu']],
        ['add', ['batch_normalization', 'conv2d/relu']],
      ],
    );
    assert.equal(t.inputChannels, 2);
    const bytes = keras2Bytes();
    const weights = buildWeights(t, new Map([[0, bytes]]));
    const topology = doc.modelTopology as Record<string, unknown> as tf.io.ModelJSON['modelTopology'];
    const specs = (doc.weightsManifest as { weights: tf.io.WeightsManifestEntry[] }[])[0]?.weights ?? [];
    const oracle = await tfl.loadLayersModel(
      tf.io.fromMemory({ modelTopology: topology, weightSpecs: specs, weightData: bytes.slice().buffer }),
    );
    const tensors = weightTensors(weights);
    tf.tidy(() => {
      const x = tf.randomNormal([1, 9, 7, 2], 0, 1, 'float32', 4) as tf.Tensor4D;
      const got = runBody(t.network.body, scoped(tensors, 'body'), x).dataSync();
      const want = (oracle.predict(x) as tf.Tensor).dataSync();
      assert.ok(relativeError(got, want) <= 1e-5, `Keras 2 layout: ${relativeError(got, want)}`);
    });
    for (const v of tensors.values()) v.dispose();
  });

  it("Keras 3's inbound nodes and scoped weight names give the same import as the Keras 2 layout", () => {
    const bytes = keras2Bytes();
    const reference = importTfjsLayersTopology(keras2Doc(), { bodyEnd: 'add' });
    const referenceWeights = buildWeights(reference, new Map([[0, bytes]]));
    for (const [what, doc] of [
      ['Keras 3', keras3Doc()],
      ['scoped names', keras2Doc((n) => `model/${n}`)],
      ['TF-style :0 names', keras2Doc((n) => `${n}:0`)],
    ] as const) {
      const t = importTfjsLayersTopology(doc, { bodyEnd: 'add' });
      assert.deepEqual(t.network, reference.network, what);
      assert.deepEqual(buildWeights(t, new Map([[0, bytes]])), referenceWeights, what);
    }
  });

  it('a Sequential without InputLayer, and a cut at a ZeroPadding2D that stays a node', async () => {
    const m = tfl.sequential({
      layers: [
        L.zeroPadding2d({
          inputShape: [null, null, 2],
          padding: [
            [2, 1],
            [0, 3],
          ],
          name: 'zp',
        }),
        L.conv2d({ filters: 2, kernelSize: 3, name: 'c' }),
      ],
    });
    const path = await saveLayersModel(m, join(dir, 'seq'));
    const atPad = await loadTfjsLayersModel(path, { bodyEnd: 'zp' });
    assert.deepEqual(
      atPad.network.body.nodes.map((n) => n.op),
      [{ kind: 'pad', padding: [2, 1, 0, 3] }],
    );
    assert.equal(atPad.network.trunk?.nodes[0]?.name, 'c');
    const atConv = await loadTfjsLayersModel(path, { bodyEnd: 'c' });
    assert.deepEqual(
      atConv.network.body.nodes.map((n) => n.name),
      ['c'],
    );
    const [conv] = atConv.network.body.nodes;
    assert.ok(conv?.op.kind === 'conv2d');
    assert.deepEqual(conv.op.padding, [2, 1, 0, 3], 'ZeroPadding2D folded into the conv');
  });
});
