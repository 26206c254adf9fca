// The engine's implementation of the composed kernels' operations (trainer/kernels/ops.ts):
// each is the tfjs op of the same name; on the native backend, TensorFlow ops run on the backend
// directly (tfjs-node's executeSingleOutput), as a kernel must not call other kernels' ops there.
import * as tf from '@tensorflow/tfjs-core';
import type { NativeConvAttrs, NativeOps, Pad4, Pair } from '../../kernels/ops.ts';
import { stockKernel } from './stock-kernels.ts';

/** The part of tfjs-node's NodeJSKernelBackend these kernels use. */
export interface NodeBackend {
  binding: {
    TF_ATTR_INT: number;
    TF_ATTR_STRING: number;
    TF_ATTR_TYPE: number;
    TF_ATTR_BOOL: number;
    TF_FLOAT: number;
  };
  executeSingleOutput(name: string, attrs: unknown[], inputs: tf.TensorInfo[]): tf.TensorInfo;
}

function isNodeBackend(b: object): b is NodeBackend {
  const n = b as Partial<NodeBackend>;
  return typeof n.executeSingleOutput === 'function' && typeof n.binding === 'object';
}

function convOpAttrs(backend: NodeBackend, a: NativeConvAttrs): unknown[] {
  const { binding } = backend;
  const attrs: unknown[] = [
    { name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT },
    { name: 'strides', type: binding.TF_ATTR_INT, value: [1, a.strides[0], a.strides[1], 1] },
    { name: 'padding', type: binding.TF_ATTR_STRING, value: 'VALID' },
    { name: 'data_format', type: binding.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'dilations', type: binding.TF_ATTR_INT, value: [1, a.dilations[0], a.dilations[1], 1] },
  ];
  if (!a.depthwise) attrs.push({ name: 'use_cudnn_on_gpu', type: binding.TF_ATTR_BOOL, value: true });
  return attrs;
}

/** tfjs-node's executeSingleOutput already returns a Tensor tracked by the engine. */
const asTensor = (t: tf.TensorInfo): tf.Tensor =>
  t instanceof tf.Tensor ? t : tf.engine().makeTensorFromTensorInfo(t);

/** tfjs's padding argument for [top, bottom, left, right]: 'valid' when all zero. */
export const explicitPadding = (p: Pad4): 'valid' | tf.backend_util.ExplicitPadding =>
  p.every((v) => v === 0)
    ? 'valid'
    : [
        [0, 0],
        [p[0], p[1]],
        [p[2], p[3]],
        [0, 0],
      ];

const pair = (p: Pair): [number, number] => [p[0], p[1]];
const as4 = (t: tf.Tensor): tf.Tensor4D => t as tf.Tensor4D;

/**
 * The operations on tfjs tensors, for a kernel running on `backend` (`backendName` names it, for
 * the stock kernels a project kernel hands cases back to).
 */
export function tfOps(backend: object, backendName: string): NativeOps<tf.Tensor> {
  const native = (what: string): NodeBackend => {
    if (!isNodeBackend(backend))
      throw new Error(`${what}: needs the native tensorflow backend, not ${backendName}`);
    return backend;
  };
  return {
    shape: (x) => x.shape,
    dtype: (x) => x.dtype,
    tidy: (fn) => tf.tidy(fn),
    dispose: (x) => x.dispose(),
    slice: (x, begin, size) => tf.slice(x, [...begin], [...size]),
    pad: (x, paddings) =>
      tf.pad(
        x,
        paddings.map(([a, b]) => [a, b] as [number, number]),
      ),
    reshape: (x, shape) => tf.reshape(x, [...shape]),
    transpose: (x, perm) => tf.transpose(x, [...perm]),
    stack: (xs, axis) => tf.stack([...xs], axis),
    stridedSlice: (x, begin, end, strides) => tf.stridedSlice(x, [...begin], [...end], [...strides]),
    sum: (x, axes) => tf.sum(x, typeof axes === 'number' ? axes : [...axes]),
    mean: (x, axis) => tf.mean(x, axis),
    zeros: (shape) => tf.zeros([...shape]),
    add: (a, b) => tf.add(a, b),
    sub: (a, b) => tf.sub(a, b),
    mul: (a, b) => tf.mul(a, b),
    erf: (x) => tf.erf(x),
    exp: (x) => tf.exp(x),
    square: (x) => tf.square(x),
    rsqrt: (x) => tf.rsqrt(x),
    conv2d: (x, filter, pad, dilations) =>
      tf.conv2d(as4(x), as4(filter), 1, explicitPadding(pad), 'NHWC', pair(dilations)),
    depthwiseConv2d: (x, filter, dilations) =>
      tf.depthwiseConv2d(as4(x), as4(filter), 1, 'valid', 'NHWC', pair(dilations)),
    fromHost: (shape, inputs, compute) =>
      tf.tensor(compute(inputs.map((t) => t.dataSync() as Float32Array)), [...shape], 'float32'),
    convBackprop: (name, inputs, _outShape, attrs) => {
      const nb = native(name);
      const made: tf.Tensor[] = [];
      try {
        // A shape input is an int32 vector, made here and freed after the op.
        const ins = inputs.map((i) => {
          if (i instanceof tf.Tensor) return i;
          const s = tf.tensor1d([...(i as readonly number[])], 'int32');
          made.push(s);
          return s;
        });
        return asTensor(nb.executeSingleOutput(name, convOpAttrs(nb, attrs), ins));
      } finally {
        tf.dispose(made);
      }
    },
    unary: (name, x) => {
      const nb = native(name);
      const T = [{ name: 'T', type: nb.binding.TF_ATTR_TYPE, value: nb.binding.TF_FLOAT }];
      return asTensor(nb.executeSingleOutput(name, T, [x]));
    },
    stock: (kernelName, inputs, attrs) => {
      const stock = stockKernel(backendName, kernelName);
      if (stock === undefined)
        throw new Error(`${backendName} ${kernelName}: the stock kernel was not remembered`);
      const out = stock.kernelFunc({
        inputs: inputs as tf.NamedTensorInfoMap,
        backend: backend as tf.KernelBackend,
        attrs: attrs as tf.NamedAttrMap,
      });
      if (Array.isArray(out))
        throw new Error(`${backendName} ${kernelName}: the stock kernel returned several outputs`);
      return asTensor(out as tf.TensorInfo);
    },
  };
}
