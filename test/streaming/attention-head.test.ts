// The gated attention-MIL head (head.pooling: attention) on the wasm, cpu and native TensorFlow
// backends: its logits and gradients against a direct float64 computation, its weights (a softmax
// over the positions), and streamed training against conventional training with it, within the
// tolerances of streaming-algorithm.md §2.2.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../trainer/backend/select.ts';
import { TOLERANCES } from '../../trainer/bench/equivalence.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { BodyBuilder } from '../../trainer/streaming/builder.ts';
import { compareStep, type Discrepancy, relativeError } from '../../trainer/streaming/compare.ts';
import { tensorSource } from '../../trainer/streaming/executor.ts';
import { tileGrid } from '../../trainer/streaming/geometry.ts';
import {
  attentionOf,
  headForward,
  initParams,
  type Network,
  networkParameterShapes,
  streamedAttention,
} from '../../trainer/streaming/network.ts';
import { mulberry32 } from '../../trainer/streaming/random-body.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

type Matrix = number[][];

const matrix = (v: ArrayLike<number>, rows: number, cols: number): Matrix =>
  Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => v[r * cols + c] as number));
const zeros = (rows: number, cols: number): Matrix => Array.from({ length: rows }, () => Array(cols).fill(0));
const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

interface HeadParams64 {
  V: Matrix;
  bV: number[];
  U: Matrix;
  bU: number[];
  w: number[];
  D: Matrix;
  bD: number[];
}

/**
 * Gated attention head and the gradients of L = Σ logits·c, written out by hand in float64 over
 * instances X [N, C] (CLAM's Attn_Net_Gated, no score bias, then a dense layer).
 */
function attentionHead64(X: Matrix, p: HeadParams64, c: number[]) {
  const N = X.length;
  const C = (X[0] as number[]).length;
  const H = p.w.length;
  const O = p.bD.length;
  const at = (m: Matrix, i: number, j: number): number => (m[i] as number[])[j] as number;
  const a = zeros(N, H);
  const g = zeros(N, H);
  const s: number[] = [];
  for (let n = 0; n < N; n++) {
    let score = 0;
    for (let j = 0; j < H; j++) {
      let zv = p.bV[j] as number;
      let zu = p.bU[j] as number;
      for (let i = 0; i < C; i++) {
        zv += at(X, n, i) * at(p.V, i, j);
        zu += at(X, n, i) * at(p.U, i, j);
      }
      (a[n] as number[])[j] = Math.tanh(zv);
      (g[n] as number[])[j] = sigmoid(zu);
      score += at(a, n, j) * at(g, n, j) * (p.w[j] as number);
    }
    s.push(score);
  }
  const m = Math.max(...s);
  const e = s.map((v) => Math.exp(v - m));
  const z = e.reduce((x, y) => x + y, 0);
  const weights = e.map((v) => v / z);
  const pooled = Array.from({ length: C }, (_, i) =>
    X.reduce((acc, row, n) => acc + (weights[n] as number) * (row[i] as number), 0),
  );
  const logits = Array.from({ length: O }, (_, o) =>
    pooled.reduce((acc, v, i) => acc + v * at(p.D, i, o), p.bD[o] as number),
  );
  // Backward.
  const dD = pooled.map((v) => c.map((co) => v * co));
  const dPooled = pooled.map((_, i) => c.reduce((acc, co, o) => acc + at(p.D, i, o) * co, 0));
  const dX = X.map((_, n) => dPooled.map((d) => (weights[n] as number) * d));
  const dWeights = X.map((row) => row.reduce((acc, v, i) => acc + v * (dPooled[i] as number), 0));
  const mean = weights.reduce((acc, v, n) => acc + v * (dWeights[n] as number), 0);
  const dS = weights.map((v, n) => v * ((dWeights[n] as number) - mean));
  const dw = Array.from({ length: H }, (_, j) =>
    dS.reduce((acc, d, n) => acc + d * at(a, n, j) * at(g, n, j), 0),
  );
  const dV = zeros(C, H);
  const dU = zeros(C, H);
  const dbV = Array<number>(H).fill(0);
  const dbU = Array<number>(H).fill(0);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < H; j++) {
      const dh = (dS[n] as number) * (p.w[j] as number);
      const dzv = dh * at(g, n, j) * (1 - at(a, n, j) ** 2);
      const dzu = dh * at(a, n, j) * at(g, n, j) * (1 - at(g, n, j));
      dbV[j] = (dbV[j] as number) + dzv;
      dbU[j] = (dbU[j] as number) + dzu;
      for (let i = 0; i < C; i++) {
        (dV[i] as number[])[j] = at(dV, i, j) + at(X, n, i) * dzv;
        (dU[i] as number[])[j] = at(dU, i, j) + at(X, n, i) * dzu;
        (dX[n] as number[])[i] = at(dX, n, i) + at(p.V, i, j) * dzv + at(p.U, i, j) * dzu;
      }
    }
  }
  return { logits, weights, dX, dV, dU, dbV, dbU, dw, dD, dbD: c };
}

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

/** Two conv layers, a pool and a stride-2 conv (the worked example of §1.9) with `c` channels out. */
function smallBody(c: number) {
  const b = new BodyBuilder('attn', 1);
  const c1 = b.relu(b.conv(b.input, { filters: 4, kernel: 3, padding: 1 }));
  const p = b.maxPool(c1, { kernel: 2 });
  return b.build(b.relu(b.conv(p, { filters: c, kernel: 3, stride: 2, padding: 1 })));
}

describe('attention head parameters', () => {
  it('are V and U [C, H] with biases [H] and w [H, 1]; hidden size 128 unless given', () => {
    const body = smallBody(6);
    const shapes = networkParameterShapes({ body, pooling: 'attention', outputs: 3 });
    assert.deepEqual(shapes.get('head/attention/V/kernel'), [6, 128]);
    assert.deepEqual(shapes.get('head/attention/U/bias'), [128]);
    assert.deepEqual(shapes.get('head/attention/w/kernel'), [128, 1]);
    const small = networkParameterShapes({ body, pooling: 'attention', attentionHiddenSize: 8, outputs: 3 });
    assert.deepEqual(small.get('head/attention/U/kernel'), [6, 8]);
    assert.equal(
      networkParameterShapes({ body, pooling: 'max', outputs: 3 }).has('head/attention/V/kernel'),
      false,
    );
  });
});

for (const backend of ['wasm', 'cpu', 'tensorflow'] as const) {
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`attention-MIL head on ${backend}`, { skip }, () => {
    it('initialises the backend', async () => {
      assert.equal((await initBackend(backend)).name, backend);
    });

    it('logits, weights and every gradient match a float64 computation (F [1,3,4,5], H=6, 2 outputs)', () => {
      const [h, w, C, H, O] = [3, 4, 5, 6, 2];
      const net: Network = { body: smallBody(C), pooling: 'attention', attentionHiddenSize: H, outputs: O };
      const params = initParams(net, 21);
      // Larger attention weights than the initialisation gives, so the softmax is far from uniform.
      const rand = mulberry32(5);
      const head = new Map<string, tf.Tensor>();
      for (const [n, p] of params) {
        if (n.startsWith('body/')) continue;
        head.set(
          n,
          tf.tensor(
            Array.from({ length: p.size }, () => 2 * rand() - 1),
            p.shape,
          ),
        );
      }
      const F = tf.tensor4d(
        Array.from({ length: h * w * C }, () => 3 * rand() - 1.5),
        [1, h, w, C],
      );
      const c = [0.7, -1.3];
      const names = [...head.keys()];
      const { value, grads } = tf.tidy(() =>
        tf.valueAndGrads((f: tf.Tensor, ...ps: tf.Tensor[]) => {
          const y = headForward(net, new Map(names.map((n, i) => [n, ps[i] as tf.Tensor])), f as tf.Tensor4D);
          return tf.sum(tf.mul(y, tf.tensor2d([c]))) as tf.Scalar;
        })([F, ...names.map((n) => head.get(n) as tf.Tensor)]),
      );
      const logits = headForward(net, head, F);
      const got = new Map(names.map((n, i) => [n, (grads[i + 1] as tf.Tensor).dataSync()]));
      const v = (n: string) => (head.get(n) as tf.Tensor).dataSync();
      const ref = attentionHead64(
        matrix(F.dataSync(), h * w, C),
        {
          V: matrix(v('head/attention/V/kernel'), C, H),
          bV: [...v('head/attention/V/bias')],
          U: matrix(v('head/attention/U/kernel'), C, H),
          bU: [...v('head/attention/U/bias')],
          w: [...v('head/attention/w/kernel')],
          D: matrix(v('head/dense/kernel'), C, O),
          bD: [...v('head/dense/bias')],
        },
        c,
      );
      const tol = 1e-5;
      const check = (what: string, a: ArrayLike<number>, b: readonly number[]) => {
        const e = relativeError(a, b);
        assert.ok(e <= tol, `${what}: relative error ${e} > ${tol}`);
      };
      check('logits', logits.dataSync(), ref.logits);
      check('loss', value.dataSync(), [ref.logits.reduce((acc, l, o) => acc + l * (c[o] as number), 0)]);
      const map = attentionOf(net, head, F);
      assert.deepEqual([map.height, map.width], [h, w]);
      check('attention weights', map.weights, ref.weights);
      assert.ok(
        Math.max(...ref.weights) > 2 * Math.min(...ref.weights),
        'the case has a far from uniform softmax',
      );
      check('dL/dF', (grads[0] as tf.Tensor).dataSync(), ref.dX.flat());
      check('dV', got.get('head/attention/V/kernel') as Float32Array, ref.dV.flat());
      check('dU', got.get('head/attention/U/kernel') as Float32Array, ref.dU.flat());
      check('dbV', got.get('head/attention/V/bias') as Float32Array, ref.dbV);
      check('dbU', got.get('head/attention/U/bias') as Float32Array, ref.dbU);
      check('dw', got.get('head/attention/w/kernel') as Float32Array, ref.dw);
      check('dD', got.get('head/dense/kernel') as Float32Array, ref.dD.flat());
      check('dbD', got.get('head/dense/bias') as Float32Array, ref.dbD);
      tf.dispose([value, ...grads, logits, F, ...head.values(), ...params.values()]);
    });

    it('streamed equals conventional: worked-example body, 64² image, 32² tiles', async () => {
      const net: Network = { body: smallBody(4), pooling: 'attention', attentionHiddenSize: 8, outputs: 3 };
      const d = await compareStep(net, [64, 64], [32, 32], 1);
      assert.equal(d.tiles, 9);
      assertEquivalent(d, 'worked example');
    });

    it('streamed equals conventional: small CNN, 192×320 image, 96² tiles', async () => {
      const net: Network = {
        ...builtinNetwork('smallcnn', { width: 4, inputChannels: 3 }),
        pooling: 'attention',
        attentionHiddenSize: 16,
        outputs: 2,
      };
      assertEquivalent(await compareStep(net, [192, 320], [96, 96], 2), 'small CNN');
    });

    // cpu convolutions are ~20x slower than wasm: the trunk's glue is the same code on every backend.
    const trunkSkip =
      backend === 'cpu' ? 'about 6 s on cpu; the trunk runs on wasm and tensorflow' : undefined;
    it('streamed equals conventional: ResNet-18 body (to layer2) with a layer3 trunk, 256², tile 160', {
      skip: trunkSkip,
    }, async () => {
      const net: Network = {
        ...builtinNetwork('resnet18', { bodyEnd: 'layer2', width: 4 }),
        pooling: 'attention',
        attentionHiddenSize: 8,
        outputs: 2,
      };
      const d = await compareStep(net, [256, 256], [160, 160], 5);
      assert.ok(d.tiles > 1);
      assertEquivalent(d, 'resnet18 with trunk');
    });

    it('the streamed attention map sums to 1 over the positions and frees its tensors', async () => {
      const net: Network = { body: smallBody(4), pooling: 'attention', attentionHiddenSize: 8, outputs: 1 };
      const params = initParams(net, 3);
      const x = tf.randomNormal([1, 64, 64, 1], 0, 1, 'float32', 4) as tf.Tensor4D;
      const before = tf.memory().numTensors;
      const map = await streamedAttention(
        net,
        params,
        tensorSource(x),
        tileGrid(net.body, [64, 64], [32, 32]),
      );
      assert.equal(tf.memory().numTensors, before);
      assert.deepEqual([map.height, map.width], [16, 16]);
      assert.ok(Math.abs(map.weights.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      tf.dispose([x, ...params.values()]);
    });
  });
}
