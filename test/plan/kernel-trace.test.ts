// The planner runs each composed kernel (trainer/kernels/composed.ts) and the body's layers
// (trainer/streaming/layers.ts) op for op as the engine does: on random geometries around the
// kernels' switch-overs, and on random bodies, the kernels tf.profile records (names and tfjs's
// bytes after each) equal the simulated engine's. The shared source makes the paths the same;
// this checks that the two implementations of the operations (backend/kernels/tf-ops.ts and
// streaming/tf-layer-ops.ts; plan/sim-backends.ts simOps and plan/sim-body.ts simLayerOps)
// allocate alike.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { initBackend } from '../../trainer/backend/select.ts';
import { COMPOSED_KERNELS, type ComposedBackend } from '../../trainer/kernels/composed.ts';
import { FUSED_GELU } from '../../trainer/kernels/gelu.ts';
import { FUSED_LAYER_NORM } from '../../trainer/kernels/layer-norm.ts';
import { createEngine } from '../../trainer/plan/sim-backends.ts';
import {
  headForward as simHeadForward,
  loss as simLoss,
  runBody as simRunBody,
} from '../../trainer/plan/sim-body.ts';
import { add as simAdd } from '../../trainer/plan/sim-ops.ts';
import { builtinNetwork } from '../../trainer/streaming/bodies.ts';
import { runBody } from '../../trainer/streaming/executor.ts';
import { axisProfile, minimumTile } from '../../trainer/streaming/geometry.ts';
import { type Body, parameterShapes } from '../../trainer/streaming/graph.ts';
import { headForward, type Network, networkParameterShapes } from '../../trainer/streaming/network.ts';
import { drawLayers, mulberry32, randomBody } from '../../trainer/streaming/random-body.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

interface Geometry {
  h: number;
  w: number;
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride: [number, number];
  pad: [number, number, number, number];
}

/**
 * Channel counts on both sides of the switch-overs (tiled filter gradient at 32, sub-pixel 1×1 at
 * 64·64); maps up to 36 px, so that the tiled form cuts several 16×16 blocks, partial ones too.
 */
const CHANNELS = [1, 3, 16, 32, 40, 64];

const geometry: fc.Arbitrary<Geometry> = fc
  .record({
    h: fc.integer({ min: 1, max: 36 }),
    w: fc.integer({ min: 1, max: 36 }),
    cin: fc.constantFrom(...CHANNELS),
    cout: fc.constantFrom(...CHANNELS),
    kh: fc.integer({ min: 1, max: 4 }),
    kw: fc.integer({ min: 1, max: 4 }),
    stride: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    padFrac: fc.tuple(fc.nat(9), fc.nat(9), fc.nat(9), fc.nat(9)),
  })
  .map(({ padFrac, ...g }) => {
    const pad: Geometry['pad'] = [padFrac[0] % g.kh, padFrac[1] % g.kh, padFrac[2] % g.kw, padFrac[3] % g.kw];
    return { ...g, pad, h: Math.max(g.h, g.kh - pad[0] - pad[1]), w: Math.max(g.w, g.kw - pad[2] - pad[3]) };
  });

const label = (name: string, g: Geometry) =>
  `${name} x=[1,${g.h},${g.w},${g.cin}] k=${g.kh}x${g.kw} c=${g.cout} s=${g.stride} p=${g.pad}`;

/** One kernel call: its inputs' shapes, its output's, and the attributes as tfjs and the planner give them. */
function call(name: string, g: Geometry) {
  const depthwise = name.startsWith('Depthwise');
  const x = [1, g.h, g.w, g.cin];
  const filter = depthwise ? [g.kh, g.kw, g.cin, g.cout > 16 ? 2 : 1] : [g.kh, g.kw, g.cin, g.cout];
  const co = depthwise ? (filter[2] as number) * (filter[3] as number) : g.cout;
  const out = (n: number, lo: number, hi: number, k: number, s: number) =>
    Math.floor((n + lo + hi - k) / s) + 1;
  const dy = [
    1,
    out(g.h, g.pad[0], g.pad[1], g.kh, g.stride[0]),
    out(g.w, g.pad[2], g.pad[3], g.kw, g.stride[1]),
    co,
  ];
  const shapes = { x, filter, dy };
  const common = { strides: g.stride, dilations: [1, 1] };
  if (name === 'Step')
    return { inputs: { x }, output: x, engine: { alpha: 0 }, planner: { alpha: 0 }, shapes };
  if (name === FUSED_GELU) return { inputs: { x }, output: x, engine: {}, planner: {}, shapes };
  if (name === FUSED_LAYER_NORM) {
    const attrs = { epsilon: 1e-6 };
    const inputs = { x, gamma: [g.cin], beta: [g.cin] };
    return { inputs, output: x, engine: attrs, planner: attrs, shapes };
  }
  const input = name.endsWith('BackpropInput');
  const extra = input ? { inputShape: x } : { filterShape: filter };
  return {
    inputs: input ? { dy, filter } : { x, dy },
    output: input ? x : filter,
    engine: {
      ...common,
      ...extra,
      dataFormat: 'NHWC',
      pad: [
        [0, 0],
        [g.pad[0], g.pad[1]],
        [g.pad[2], g.pad[3]],
        [0, 0],
      ],
    },
    planner: { ...common, ...extra, pad: g.pad },
    shapes,
  };
}

type Trace = [string, number][];

async function engineTrace(name: string, c: ReturnType<typeof call>): Promise<Trace> {
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, s]) => [k, tf.randomNormal(s)]));
  try {
    const start = tf.memory().numBytes;
    const p = await tf.profile(() => {
      (tf.engine().runKernel(name, inputs, c.engine as unknown as tf.NamedAttrMap) as tf.Tensor).dispose();
    });
    return p.kernels.map((k) => [k.name, k.totalBytesSnapshot - start]);
  } finally {
    tf.dispose(Object.values(inputs));
  }
}

function plannerTrace(backend: ComposedBackend, name: string, c: ReturnType<typeof call>): Trace {
  const sim = createEngine(backend, 4, true);
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, s]) => [k, sim.make(s)]));
  const start = sim.numBytes;
  const trace: Trace = [];
  sim.onKernel = (kernel, bytes) => trace.push([kernel, bytes - start]);
  sim.kernel(name, inputs, c.output, c.planner);
  return trace;
}

for (const backend of ['cpu', 'wasm', 'tensorflow'] as const) {
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`the planner traces each composed ${backend} kernel as the engine runs it`, { skip }, () => {
    it('initialises the backend', async () => {
      assert.equal((await initBackend(backend)).name, backend);
    });
    for (const name of Object.keys(COMPOSED_KERNELS[backend])) {
      it(`${name}: the same kernels, with the same bytes after each`, async () => {
        await fc.assert(
          fc.asyncProperty(geometry, async (g) => {
            const c = call(name, g);
            assert.deepEqual(plannerTrace(backend, name, c), await engineTrace(name, c), label(name, g));
          }),
          { numRuns: 40 },
        );
      });
    }
  });
}

/** A random body (the equivalence tests' generator) and an image size it accepts, or undefined. */
function bodyCase(seed: number): { body: Body; size: number } | undefined {
  const body = randomBody(drawLayers(mulberry32(seed)));
  try {
    const min = Math.max(minimumTile(body, 0), minimumTile(body, 1));
    const stride = Math.max(axisProfile(body, 0).totalStride, axisProfile(body, 1).totalStride);
    const size = stride * Math.ceil(min / stride);
    return size <= 96 ? { body, size } : undefined;
  } catch {
    return undefined; // layers that vanish at every size
  }
}

async function bodyTraces(body: Body, size: number): Promise<{ engine: Trace; planner: Trace }> {
  const shapes = [...parameterShapes(body)];
  const xShape: [number, number, number, number] = [1, size, size, body.inputChannels];
  const sim = createEngine('wasm', 4, true);
  const simParams = new Map(shapes.map(([n, s]) => [n, sim.variable(s, 'parameters')]));
  const sx = sim.make(xShape);
  const start = sim.numBytes;
  const planner: Trace = [];
  sim.onKernel = (kernel, bytes) => planner.push([kernel, bytes - start]);
  simRunBody(sim, body, simParams, sx);
  const params = new Map(shapes.map(([n, s]) => [n, tf.randomNormal(s)]));
  const x = tf.randomNormal(xShape) as tf.Tensor4D;
  try {
    const before = tf.memory().numBytes;
    const p = await tf.profile(() => runBody(body, params, x).dispose());
    return { engine: p.kernels.map((k) => [k.name, k.totalBytesSnapshot - before]), planner };
  } finally {
    tf.dispose([x, ...params.values()]);
  }
}

describe("the planner traces the body's layers as the engine runs them (wasm)", () => {
  it('random bodies: the same kernels, with the same bytes after each', async () => {
    assert.equal((await initBackend('wasm')).name, 'wasm');
    let checked = 0;
    for (let seed = 1; checked < 40 && seed < 400; seed++) {
      const c = bodyCase(seed);
      if (c === undefined) continue;
      const { engine, planner } = await bodyTraces(c.body, c.size);
      assert.deepEqual(
        planner,
        engine,
        `random body seed ${seed} (${c.body.nodes.length} nodes) at ${c.size}²`,
      );
      checked++;
    }
    assert.ok(checked >= 20, `only ${checked} random bodies had a small enough image`);
  });

  it('an InceptionNeXt body (channel slices, band depthwise convs, concat): the same kernels and bytes', async () => {
    assert.equal((await initBackend('wasm')).name, 'wasm');
    const { body } = builtinNetwork('inceptionnext-atto', { bodyEnd: 'stages.0', width: 8 });
    const { engine, planner } = await bodyTraces(body, 96);
    assert.deepEqual(planner, engine);
    for (const k of ['Slice', 'Concat', 'DepthwiseConv2dNative'])
      assert.ok(
        engine.some(([name]) => name === k),
        k,
      );
  });

  it('a ConvNeXt body (layer norm, GELU, layer scale): the same kernels, with the same bytes after each', async () => {
    assert.equal((await initBackend('wasm')).name, 'wasm');
    const { body } = builtinNetwork('convnext-atto', { bodyEnd: 'stages.1', width: 4 });
    const { engine, planner } = await bodyTraces(body, 160);
    assert.deepEqual(planner, engine);
    for (const k of [FUSED_GELU, FUSED_LAYER_NORM, 'Erf', 'Rsqrt', 'Square'])
      assert.ok(
        engine.some(([name]) => name === k),
        k,
      );
  });
});

/**
 * The head's training step on F (network.ts headStep; plan/memory.ts runs simHeadForward the same
 * way): its loss, dL/dF and the head's gradients under one tape.
 */
async function headTraces(
  net: Network,
  fShape: [number, number, number, number],
): Promise<{ engine: Trace; planner: Trace }> {
  const shapes = [...networkParameterShapes(net)].filter(([n]) => !n.startsWith('body/'));
  const sim = createEngine('wasm', 4, true);
  const simParams = new Map(shapes.map(([n, s]) => [n, sim.variable(s, 'parameters')]));
  const sF = sim.make(fShape);
  const start = sim.numBytes;
  const planner: Trace = [];
  sim.onKernel = (kernel, bytes) => planner.push([kernel, bytes - start]);
  const simResult = sim.tidy(() =>
    sim.gradients(
      () => simLoss(sim, simHeadForward(sim, net, simParams, sF)),
      [sF, ...simParams.values()],
      null,
      (a, b) => simAdd(sim, a, b),
    ),
  );
  sim.dispose(simResult.value);
  for (const g of simResult.grads) sim.dispose(g);
  const names = shapes.map(([n]) => n);
  const params = shapes.map(([, s]) => tf.randomNormal(s, 0, 0.1));
  const F = tf.randomNormal(fShape) as tf.Tensor4D;
  try {
    const before = tf.memory().numBytes;
    const p = await tf.profile(() => {
      const { value, grads } = tf.valueAndGrads((f: tf.Tensor, ...ps: tf.Tensor[]) => {
        const y = headForward(net, new Map(names.map((n, i) => [n, ps[i] as tf.Tensor])), f as tf.Tensor4D);
        return tf.sum(tf.mul(y, tf.ones([1, net.outputs]))) as tf.Scalar; // as sim-body.ts loss
      })([F, ...params]);
      tf.dispose([value, ...grads]);
    });
    return { engine: p.kernels.map((k) => [k.name, k.totalBytesSnapshot - before]), planner };
  } finally {
    tf.dispose([F, ...params]);
  }
}

describe("the planner traces the attention head's training step as the engine runs it (wasm)", () => {
  it('gated attention on F [1,12,10,8], H=16, with and without a trunk: the same kernels and bytes', async () => {
    assert.equal((await initBackend('wasm')).name, 'wasm');
    const { body } = builtinNetwork('smallcnn', { width: 4 });
    const net: Network = { body, pooling: 'attention', attentionHiddenSize: 16, outputs: 2 };
    const channels = networkParameterShapes(net).get('head/attention/V/kernel')?.[0] as number;
    const { engine, planner } = await headTraces(net, [1, 12, 10, channels]);
    assert.deepEqual(planner, engine);
    for (const k of ['Exp', 'RealDiv', 'Tanh', 'Sigmoid', 'BatchMatMul'])
      assert.ok(
        engine.some(([name]) => name === k),
        k,
      );
    const withTrunk: Network = {
      ...builtinNetwork('resnet18', { bodyEnd: 'layer2', width: 4 }),
      pooling: 'attention',
      attentionHiddenSize: 8,
      outputs: 3,
    };
    const trunkIn = withTrunk.trunk?.inputChannels as number;
    const t = await headTraces(withTrunk, [1, 8, 8, trunkIn]);
    assert.deepEqual(t.planner, t.engine);
  });
});

describe('the planner traces the fused GELU and layer norm backward as the engine runs them (wasm)', () => {
  it('a ConvNeXt trunk (stages 1–3 at width 4) trained on F [1,16,16,4]: the same kernels and bytes', async () => {
    assert.equal((await initBackend('wasm')).name, 'wasm');
    const net: Network = {
      ...builtinNetwork('convnext-atto', { bodyEnd: 'stages.0', width: 4 }),
      pooling: 'avg',
      outputs: 2,
    };
    const { engine, planner } = await headTraces(net, [1, 16, 16, 4]);
    assert.deepEqual(planner, engine);
    // The backward of both fused ops ran: the layer norm's statistics are recomputed (a second
    // Rsqrt per norm) and GELU's slope needs Exp.
    const count = (k: string) => engine.filter(([name]) => name === k).length;
    assert.ok(count('Exp') > 0 && count('Rsqrt') > count(FUSED_LAYER_NORM), 'the fused gradients ran');
  });
});
