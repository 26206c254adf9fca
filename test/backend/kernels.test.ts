// The project's gradient kernels against the naive float64 reference of test/ops/reference.ts,
// on random shapes, strides, paddings and dilations, on the cpu, wasm and native TensorFlow backends.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import {
  conv2dBackpropFilterTiled,
  conv2dBackpropFilterViaConv,
  conv2dBackpropInputSubPixel,
  conv2dBackpropInputViaConv,
} from '../../trainer/backend/kernels/composed-forms.ts';
import { activeProjectKernels } from '../../trainer/backend/kernels/registry.ts';
import { initBackend } from '../../trainer/backend/select.ts';
import { paddedCase } from '../conv-case.ts';
import {
  type Arr4,
  assertClose,
  type ConvGeometry,
  convGradRef,
  convOutShape,
  poolOutShape,
  poolRef,
  randomArr4,
  rng,
  type Shape4,
} from '../ops/reference.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';
import { watchXnnFailures, type XnnWatch } from './xnn-watch.ts';

const RUNS = 25;

interface Case {
  seed: number;
  n: number;
  h: number;
  w: number;
  cin: number;
  /** Output channels (conv) or channel multiplier (depthwise). */
  cout: number;
  kh: number;
  kw: number;
  stride: [number, number];
  dilation: [number, number];
  pad: [number, number, number, number];
}

/** Random geometry with at least one output position. */
function caseArb(opts: { dilation: boolean; maxK: number }): fc.Arbitrary<Case> {
  return fc
    .record({
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
      n: fc.integer({ min: 1, max: 2 }),
      h: fc.integer({ min: 1, max: 11 }),
      w: fc.integer({ min: 1, max: 11 }),
      cin: fc.integer({ min: 1, max: 5 }),
      cout: fc.integer({ min: 1, max: 5 }),
      kh: fc.integer({ min: 1, max: opts.maxK }),
      kw: fc.integer({ min: 1, max: opts.maxK }),
      stride: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
      dilation: opts.dilation
        ? fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }))
        : fc.constant<[number, number]>([1, 1]),
      padFrac: fc.tuple(fc.nat(40), fc.nat(40), fc.nat(40), fc.nat(40)),
    })
    .map(({ padFrac, ...c }) => paddedCase(c, padFrac));
}

function tensorOf(a: Arr4): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(a.data), a.shape);
}

function explicit(p: Case['pad']): tf.backend_util.ExplicitPadding {
  return [
    [0, 0],
    [p[0], p[1]],
    [p[2], p[3]],
    [0, 0],
  ];
}

/** Runs one kernel and returns its values; checks that the kernel leaves no tensor behind. */
function runKernel(name: string, inputs: Record<string, tf.Tensor>, attrs: object): Float32Array {
  const before = tf.memory().numTensors;
  const out = tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
  const values = out.dataSync() as Float32Array;
  out.dispose();
  assert.equal(tf.memory().numTensors, before, `${name} leaked tensors`);
  return values;
}

function denseCase(c: Case) {
  const next = rng(c.seed);
  const g: ConvGeometry = { stride: c.stride, dilation: [1, 1], pad: c.pad, groups: 1 };
  const x = randomArr4([c.n, c.h, c.w, c.cin], next);
  const w = randomArr4([c.kh, c.kw, c.cin, c.cout], next);
  const dy = randomArr4(convOutShape(x.shape, w.shape, g), next);
  return { g, x, w, dy, ref: convGradRef(x, w, dy, g) };
}

function depthwiseCase(c: Case) {
  const next = rng(c.seed);
  const m = c.cout;
  const g: ConvGeometry = { stride: c.stride, dilation: c.dilation, pad: c.pad, groups: c.cin };
  const x = randomArr4([c.n, c.h, c.w, c.cin], next);
  // Keras depthwise layout [kh, kw, 1, cin·m] has the same memory order as tfjs's [kh, kw, cin, m].
  const w = randomArr4([c.kh, c.kw, 1, c.cin * m], next);
  const dy = randomArr4(convOutShape(x.shape, w.shape, g), next);
  const wTf: Shape4 = [c.kh, c.kw, c.cin, m];
  return { g, x, w, wTf, dy, ref: convGradRef(x, w, dy, g) };
}

const label = (c: Case) =>
  `x=[${c.n},${c.h},${c.w},${c.cin}] k=${c.kh}x${c.kw} c=${c.cout} s=${c.stride} d=${c.dilation} p=${c.pad} seed=${c.seed}`;

for (const backend of ['cpu', 'wasm', 'tensorflow'] as const) {
  // Skips with the reason when the native backend is not built (fails under TILESTREAM_REQUIRE_ALL=1).
  const skip = backend === 'tensorflow' ? tensorflowSkip() : undefined;
  describe(`project gradient kernels on ${backend}`, { skip }, () => {
    let xnn: XnnWatch | undefined;
    before(async () => {
      xnn = watchXnnFailures();
      await initBackend(backend);
    });
    after(() => {
      xnn?.stop();
      assert.deepEqual(xnn?.failures, [], 'XNNPACK refused an operator (its output was left unwritten)');
    });

    it('registers the expected kernels', () => {
      const expected =
        backend === 'tensorflow'
          ? [
              'Conv2DBackpropFilter',
              'Conv2DBackpropInput',
              'DepthwiseConv2dNativeBackpropFilter',
              'DepthwiseConv2dNativeBackpropInput',
              'Step',
              'TilestreamGelu',
              'TilestreamLayerNorm',
            ]
          : backend === 'wasm'
            ? [
                'Conv2DBackpropFilter',
                'Conv2DBackpropInput',
                'DepthwiseConv2dNativeBackpropFilter',
                'DepthwiseConv2dNativeBackpropInput',
                'MaxPoolGrad',
                'Slice',
                'Identity',
                'Sum',
                'TilestreamGelu',
                'TilestreamLayerNorm',
              ]
            : [
                'Conv2DBackpropFilter',
                'DepthwiseConv2dNativeBackpropFilter',
                'DepthwiseConv2dNativeBackpropInput',
                'MaxPoolGrad',
                'Sum',
                'TilestreamGelu',
                'TilestreamLayerNorm',
              ];
      assert.deepEqual(activeProjectKernels(backend), expected);
      assert.equal(tf.getBackend(), backend);
    });

    it('Conv2DBackpropFilter matches the float64 reference', () => {
      fc.assert(
        fc.property(caseArb({ dilation: false, maxK: 7 }), (c) => {
          const { x, dy, w, ref } = denseCase(c);
          const got = tf.tidy(() =>
            runKernel(
              'Conv2DBackpropFilter',
              { x: tensorOf(x), dy: tensorOf(dy) },
              { strides: c.stride, pad: explicit(c.pad), dataFormat: 'NHWC', filterShape: w.shape },
            ),
          );
          assertClose(got, ref.dw.data, `dW ${label(c)}`);
        }),
        { numRuns: RUNS },
      );
    });

    it('Conv2DBackpropInput matches the float64 reference', () => {
      fc.assert(
        fc.property(caseArb({ dilation: false, maxK: 7 }), (c) => {
          const { x, dy, w, ref } = denseCase(c);
          const got = tf.tidy(() =>
            runKernel(
              'Conv2DBackpropInput',
              { dy: tensorOf(dy), filter: tensorOf(w) },
              { strides: c.stride, pad: explicit(c.pad), dataFormat: 'NHWC', inputShape: x.shape },
            ),
          );
          assertClose(got, ref.dx.data, `dx ${label(c)}`);
        }),
        { numRuns: RUNS },
      );
    });

    // The composed forms are the wasm kernels' building blocks.
    if (backend !== 'tensorflow') {
      it('both composed forms of Conv2DBackpropFilter (plain and 16x16-block tiled) match the reference', () => {
        // Larger maps than elsewhere, so that the tiled form cuts several blocks, partial ones included.
        const big = caseArb({ dilation: false, maxK: 5 }).chain((c) =>
          fc.record({ h: fc.integer({ min: 1, max: 40 }), w: fc.integer({ min: 1, max: 40 }) }).map((hw) => ({
            ...c,
            cin: Math.min(c.cin, 3),
            cout: Math.min(c.cout, 3),
            h: Math.max(c.h, hw.h),
            w: Math.max(c.w, hw.w),
          })),
        );
        fc.assert(
          fc.property(big, (c) => {
            const { x, dy, w, ref } = denseCase(c);
            const attrs = {
              strides: c.stride,
              pad: explicit(c.pad),
              dataFormat: 'NHWC' as const,
              filterShape: w.shape,
            };
            for (const [name, f] of [
              ['plain', conv2dBackpropFilterViaConv],
              ['tiled', conv2dBackpropFilterTiled],
            ] as const) {
              const got = tf.tidy(() => f(tensorOf(x), tensorOf(dy), attrs).dataSync());
              assertClose(got, ref.dw.data, `${name} dW ${label(c)}`);
            }
          }),
          { numRuns: RUNS },
        );
      });

      it('both composed forms of Conv2DBackpropInput (zero-spread and sub-pixel) match the reference', () => {
        fc.assert(
          fc.property(caseArb({ dilation: false, maxK: 7 }), (c) => {
            const { x, dy, w, ref } = denseCase(c);
            const attrs = {
              strides: c.stride,
              pad: explicit(c.pad),
              dataFormat: 'NHWC' as const,
              inputShape: x.shape,
            };
            for (const [name, f] of [
              ['spread', conv2dBackpropInputViaConv],
              ['sub-pixel', conv2dBackpropInputSubPixel],
            ] as const) {
              const got = tf.tidy(() => f(tensorOf(dy), tensorOf(w), attrs).dataSync());
              assertClose(got, ref.dx.data, `${name} dx ${label(c)}`);
            }
          }),
          { numRuns: RUNS },
        );
      });
    }

    it("Conv2D backprop kernels accept 'valid' padding", () => {
      const c: Case = {
        seed: 7,
        n: 1,
        h: 9,
        w: 8,
        cin: 3,
        cout: 4,
        kh: 3,
        kw: 2,
        stride: [2, 1],
        dilation: [1, 1],
        pad: [0, 0, 0, 0],
      };
      const { x, dy, w, ref } = denseCase(c);
      tf.tidy(() => {
        const attrs = { strides: c.stride, pad: 'valid', dataFormat: 'NHWC' };
        const dw = runKernel(
          'Conv2DBackpropFilter',
          { x: tensorOf(x), dy: tensorOf(dy) },
          { ...attrs, filterShape: w.shape },
        );
        const dx = runKernel(
          'Conv2DBackpropInput',
          { dy: tensorOf(dy), filter: tensorOf(w) },
          { ...attrs, inputShape: x.shape },
        );
        assertClose(dw, ref.dw.data, 'dW valid');
        assertClose(dx, ref.dx.data, 'dx valid');
      });
    });

    it('DepthwiseConv2dNativeBackpropFilter matches the float64 reference (with dilation)', () => {
      fc.assert(
        fc.property(caseArb({ dilation: true, maxK: 5 }), (c) => {
          const { x, dy, wTf, ref } = depthwiseCase(c);
          const got = tf.tidy(() =>
            runKernel(
              'DepthwiseConv2dNativeBackpropFilter',
              { x: tensorOf(x), dy: tensorOf(dy) },
              { strides: c.stride, dilations: c.dilation, pad: explicit(c.pad), filterShape: wTf },
            ),
          );
          assertClose(got, ref.dw.data, `depthwise dW ${label(c)}`);
        }),
        { numRuns: RUNS },
      );
    });

    it('DepthwiseConv2dNativeBackpropInput matches the float64 reference (with dilation)', () => {
      fc.assert(
        fc.property(caseArb({ dilation: true, maxK: 5 }), (c) => {
          const { x, dy, w, wTf, ref } = depthwiseCase(c);
          const got = tf.tidy(() =>
            runKernel(
              'DepthwiseConv2dNativeBackpropInput',
              { dy: tensorOf(dy), filter: tf.reshape(tensorOf(w), wTf) as tf.Tensor4D },
              { strides: c.stride, dilations: c.dilation, pad: explicit(c.pad), inputShape: x.shape },
            ),
          );
          assertClose(got, ref.dx.data, `depthwise dx ${label(c)}`);
        }),
        { numRuns: RUNS },
      );
    });

    // TensorFlow runs its own MaxPoolGrad, Slice, Sum and Identity (covered by test/ops on every
    // backend); the project replaces them on cpu and wasm only.
    if (backend !== 'tensorflow') {
      it('MaxPoolGrad matches the float64 reference, including windows with a negative maximum', () => {
        fc.assert(
          fc.property(
            fc.record({
              seed: fc.integer({ min: 1, max: 2 ** 30 }),
              n: fc.integer({ min: 1, max: 2 }),
              h: fc.integer({ min: 1, max: 9 }),
              w: fc.integer({ min: 1, max: 9 }),
              c: fc.integer({ min: 1, max: 5 }),
              k: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })),
              s: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
              negative: fc.boolean(),
            }),
            ({ seed, n, h, w, c, k, s, negative }) => {
              const next = rng(seed);
              const shape: Shape4 = [n, Math.max(h, k[0]), Math.max(w, k[1]), c];
              // All-negative inputs are what the stock wasm kernel gets wrong.
              const x = randomArr4(shape, negative ? () => next() / 2 : next);
              const geo = { kernel: k, stride: s, pad: [0, 0, 0, 0] as [number, number, number, number] };
              const dy = randomArr4(poolOutShape(shape, geo), next);
              const ref = poolRef('max', x, geo, dy);
              const got = tf.tidy(() => {
                const xt = tensorOf(x);
                const y = tf.maxPool(xt, k, s, 'valid');
                assertClose(y.dataSync(), ref.y.data, `maxPool forward x=[${shape}] k=${k} s=${s}`);
                return runKernel(
                  'MaxPoolGrad',
                  { dy: tensorOf(dy), input: xt, output: y },
                  { filterSize: k, strides: s, pad: 'valid' },
                );
              });
              assertClose(got, ref.dx.data, `MaxPoolGrad x=[${shape}] k=${k} s=${s} seed=${seed}`);
            },
          ),
          { numRuns: RUNS },
        );
      });

      it('Slice matches a reference copy for every rank, dtype and block', () => {
        fc.assert(
          fc.property(
            fc.integer({ min: 1, max: 5 }).chain((rank) =>
              fc.record({
                shape: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: rank, maxLength: rank }),
                picks: fc.array(fc.tuple(fc.nat(100), fc.nat(100)), { minLength: rank, maxLength: rank }),
                dtype: fc.constantFrom('float32', 'int32', 'bool'),
              }),
            ),
            ({ shape, picks, dtype }) => {
              const begin = shape.map((n, a) => (picks[a] as [number, number])[0] % n);
              const size = shape.map(
                (n, a) => 1 + ((picks[a] as [number, number])[1] % (n - (begin[a] as number))),
              );
              const total = shape.reduce((p, n) => p * n, 1);
              const values = Array.from({ length: total }, (_, i) =>
                dtype === 'bool' ? Number(i % 3 === 0) : i * 7 - 50,
              );
              // Reference: walk every output index and read the input element it names.
              const strides = shape.map((_, a) => shape.slice(a + 1).reduce((p, n) => p * n, 1));
              const expected: number[] = [];
              const outTotal = size.reduce((p, n) => p * n, 1);
              for (let o = 0; o < outTotal; o++) {
                let rest = o;
                let src = 0;
                for (let a = shape.length - 1; a >= 0; a--) {
                  const i = rest % (size[a] as number);
                  rest = Math.floor(rest / (size[a] as number));
                  src += ((begin[a] as number) + i) * (strides[a] as number);
                }
                expected.push(Number(values[src]));
              }
              const got = tf.tidy(() =>
                Array.from(tf.slice(tf.tensor(values, shape, dtype), begin, size).dataSync()),
              );
              assert.deepEqual(
                got.map(Number),
                expected,
                `slice shape=[${shape}] begin=[${begin}] size=[${size}] ${dtype}`,
              );
            },
          ),
          { numRuns: 100 },
        );
        // size -1 means "to the end"; a string tensor goes to the stock kernel; long runs use set().
        tf.tidy(() => {
          const big = tf.reshape(tf.range(0, 1600), [2, 10, 10, 8]);
          const part = tf.slice(big, [1, 2, 0, 0], [1, 5, 10, 8]).dataSync();
          assert.equal(part.length, 400);
          assert.equal(part[0], 800 + 2 * 80);
          assert.equal(part[399], 800 + 2 * 80 + 399);
          assert.deepEqual(
            Array.from(tf.slice(tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), [0, 1], [-1, 2]).dataSync()),
            [2, 3, 5, 6],
          );
          assert.deepEqual(tf.slice(tf.tensor1d(['a', 'b', 'c'], 'string'), 1, 2).dataSync(), ['b', 'c']);
        });
      });

      it('Sum over leading axes (bias gradients) matches a float64 reference; other sums still work', () => {
        fc.assert(
          fc.property(
            fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 2, maxLength: 4 }),
            fc.integer({ min: 1, max: 2 ** 30 }),
            fc.boolean(),
            (shape, seed, keepDims) => {
              const k = 1 + (seed % (shape.length - 1)); // reduce axes 0..k-1, keep at least one
              const next = rng(seed);
              const total = shape.reduce((p, n) => p * n, 1);
              const x = Float64Array.from({ length: total }, () => Math.fround(next() * 2 - 1));
              const cols = shape.slice(k).reduce((p, n) => p * n, 1);
              const expected = new Float64Array(cols);
              for (let i = 0; i < total; i++) expected[i % cols]! += x[i]!;
              const axes = Array.from({ length: k }, (_, i) => i);
              const got = tf.tidy(() => {
                const s = tf.sum(tf.tensor(Float32Array.from(x), shape), axes, keepDims);
                assert.deepEqual(
                  s.shape,
                  keepDims ? [...axes.map(() => 1), ...shape.slice(k)] : shape.slice(k),
                );
                return s.dataSync();
              });
              assertClose(got, expected, `sum shape=[${shape}] axes=[${axes}]`);
            },
          ),
          { numRuns: 50 },
        );
        tf.tidy(() => {
          const t = tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]);
          assert.deepEqual(Array.from(tf.sum(t, 2).dataSync()), [3, 7, 11, 15], 'innermost axis (stock)');
          assert.deepEqual(Array.from(tf.sum(t, [0, 2]).dataSync()), [14, 22], 'non-leading axes (stock)');
          assert.deepEqual(
            Array.from(tf.sum(tf.cast(t, 'int32'), 0).dataSync()),
            [6, 8, 10, 12],
            'int32 (stock)',
          );
          assert.deepEqual(Array.from(tf.sum(t).dataSync()), [36], 'all axes (stock)');
        });
      });

      it('Identity (tf.clone) gives an independent handle on equal data', () => {
        const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
        const b = tf.clone(a);
        a.dispose();
        assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3, 4], 'the clone survives disposing the original');
        b.dispose();
        const before = tf.memory().numTensors;
        tf.tidy(() => {
          tf.clone(tf.clone(tf.ones([3])));
        });
        assert.equal(tf.memory().numTensors, before);
        assert.deepEqual(tf.clone(tf.tensor1d(['x'], 'string')).dataSync(), ['x']);
      });
    }

    it('refuses NCHW with a message that says what is supported', () => {
      tf.tidy(() => {
        const x = tf.zeros([1, 2, 4, 4]);
        const dy = tf.zeros([1, 2, 2, 2]);
        assert.throws(
          () =>
            tf
              .engine()
              .runKernel(
                'Conv2DBackpropFilter',
                { x, dy },
                { strides: 1, pad: 'valid', dataFormat: 'NCHW', filterShape: [3, 3, 2, 2] },
              ),
          /NHWC only/,
        );
      });
    });
  });
}
