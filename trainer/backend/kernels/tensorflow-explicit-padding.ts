// Convolution gradients on the native 'tensorflow' backend (tfjs-node 4.22.0, TensorFlow 2.21 CPU):
// - tfjs-node passes explicit padding to TensorFlow for the forward Conv2D and DepthwiseConv2dNative
//   but not in its four backprop kernels: Conv2DBackpropInput/Filter throw "TF Backend supports only
//   'valid' and 'same' padding while padding was EXPLICIT", and the depthwise ones send padding
//   EXPLICIT without the paddings. tilestream pads every convolution explicitly (streaming/ops.ts),
//   so no training step ran.
// - TensorFlow's own EXPLICIT backprops are slow: they miss oneDNN (Conv2DBackpropFilter 42 ms
//   against 8.5 ms for SAME at [1,256,256,32] 3×3, Conv2DBackpropInput 28 against 12). So these
//   kernels pad (or crop) the input to what the windows read and run the VALID op: 8.5 / 16 ms.
// - oneDNN's VALID Conv2DBackpropFilter corrupts the heap (free(): invalid size, segfaults, hangs)
//   for a 1×1 filter with stride > 1, under 16 input channels, and input rows and columns past the
//   last window (x [1,10,8,3], dy [1,5,4,4]). Those cells never reach the gradient; cropping them
//   (the same windowed extent) avoids it. TF_ENABLE_ONEDNN_OPTS=0 does too, but costs 1.5–1.9×.
// - TensorFlow's depthwise gradients refuse unequal row and column strides ("Current
//   implementation only supports equal length strides") and, under oneDNN, dilation ("could not
//   create a primitive descriptor"), both of which its forward op accepts. There the filter is
//   dilated with zeros, and dy spread with zeros onto the stride-1 output grid. (Streamed
//   convolutions dilate their kernels themselves, so they never send dilation here.)
import * as tf from '@tensorflow/tfjs-core';
import { asTensor4D, convInfo, padOrCrop } from './conv-geometry.ts';
import { spreadWithZeros } from './conv2d-backprop-input-conv.ts';

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

interface GradAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: [number, number] | number;
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

function opAttrs(backend: NodeBackend, info: tf.backend_util.Conv2DInfo, depthwise: boolean): unknown[] {
  const { binding } = backend;
  const attrs: unknown[] = [
    { name: 'T', type: binding.TF_ATTR_TYPE, value: binding.TF_FLOAT },
    { name: 'strides', type: binding.TF_ATTR_INT, value: [1, info.strideHeight, info.strideWidth, 1] },
    { name: 'padding', type: binding.TF_ATTR_STRING, value: 'VALID' },
    { name: 'data_format', type: binding.TF_ATTR_STRING, value: 'NHWC' },
    { name: 'dilations', type: binding.TF_ATTR_INT, value: [1, info.dilationHeight, info.dilationWidth, 1] },
  ];
  if (!depthwise) attrs.push({ name: 'use_cudnn_on_gpu', type: binding.TF_ATTR_BOOL, value: true });
  return attrs;
}

/** Runs a TensorFlow backprop op whose first or second input is a shape (an int32 vector). */
function runWithSizes(
  backend: NodeBackend,
  kernelName: string,
  attrs: unknown[],
  sizes: readonly number[],
  build: (sizes: tf.Tensor) => tf.TensorInfo[],
): tf.TensorInfo {
  const s = tf.tensor1d([...sizes], 'int32');
  try {
    return backend.executeSingleOutput(kernelName, attrs, build(s));
  } finally {
    s.dispose();
  }
}

/**
 * [top, bottom, left, right] to pad (positive) or crop (negative) the input by so that a 'valid'
 * convolution reads exactly what the padded one reads: the padding, less the rows and columns
 * past the last window (which never reach the output, and are where oneDNN's filter gradient
 * goes wrong).
 */
export function windowedPadding(info: tf.backend_util.Conv2DInfo): [number, number, number, number] {
  const p = info.padInfo;
  const excessRows =
    info.inHeight +
    p.top +
    p.bottom -
    ((info.outHeight - 1) * info.strideHeight + info.effectiveFilterHeight);
  const excessCols =
    info.inWidth + p.left + p.right - ((info.outWidth - 1) * info.strideWidth + info.effectiveFilterWidth);
  return [p.top, p.bottom - excessRows, p.left, p.right - excessCols];
}

/** A filter's taps spread dilation−1 zeros apart, in JavaScript (filters are small). */
export function dilateFilter(f: tf.Tensor4D, [dh, dw]: [number, number]): tf.Tensor4D {
  const [kh, kw, a, b] = f.shape;
  const ekh = (kh - 1) * dh + 1;
  const ekw = (kw - 1) * dw + 1;
  const src = f.dataSync();
  const out = new Float32Array(ekh * ekw * a * b);
  const tap = a * b;
  for (let r = 0; r < kh; r++) {
    for (let c = 0; c < kw; c++)
      out.set(src.subarray((r * kw + c) * tap, (r * kw + c + 1) * tap), (r * dh * ekw + c * dw) * tap);
  }
  return tf.tensor4d(out, [ekh, ekw, a, b]);
}

/** What is sent to TensorFlow: stride, dilation and dy adjusted to what its kernels accept. */
interface Geometry {
  /** Dilation 1, and equal strides for a depthwise gradient. */
  info: tf.backend_util.Conv2DInfo;
  dy: tf.TensorInfo;
  /** The dilation taken out of `info` (the filter is dilated instead); [1, 1] when none. */
  dilation: [number, number];
  /** Tensors made here, disposed by the caller. */
  made: tf.Tensor[];
}

/**
 * TensorFlow's depthwise gradients refuse unequal strides and (under oneDNN) dilation, so for
 * those: dilation moves into the filter (a zero-dilated filter at dilation 1 reads the same
 * cells), and dy is spread onto the stride-1 output grid with the same padding.
 */
function geometry(
  kernelName: string,
  inShape: readonly number[],
  filterShape: readonly number[],
  a: GradAttrs,
  depthwise: boolean,
  dy: tf.TensorInfo,
): Geometry {
  const info = convInfo(kernelName, inShape, filterShape, a, a.dilations, depthwise);
  const dilation: [number, number] = [info.dilationHeight, info.dilationWidth];
  const unequal = info.strideHeight !== info.strideWidth;
  if (!depthwise || (!unequal && dilation[0] === 1 && dilation[1] === 1)) {
    return { info, dy, dilation: [1, 1], made: [] };
  }
  const p = info.padInfo;
  const pad: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [p.top, p.bottom],
    [p.left, p.right],
    [0, 0],
  ];
  const effective = [
    info.effectiveFilterHeight,
    info.effectiveFilterWidth,
    filterShape[2] as number,
    filterShape[3] as number,
  ];
  const strides = unequal ? 1 : a.strides;
  const info1 = convInfo(kernelName, inShape, effective, { ...a, strides, pad }, 1, true);
  if (!unequal) return { info: info1, dy, dilation, made: [] };
  const spread = tf.tidy(() => {
    const s = spreadWithZeros(asTensor4D(dy, kernelName), info.strideHeight, info.strideWidth);
    return tf.slice(s, [0, 0, 0, 0], [s.shape[0], info1.outHeight, info1.outWidth, s.shape[3]]);
  });
  return { info: info1, dy: spread, dilation, made: [spread] };
}

const dilated = (g: Geometry): boolean => g.dilation[0] > 1 || g.dilation[1] > 1;

/** tfjs-node's executeSingleOutput already returns a Tensor tracked by the engine. */
const asTensor = (t: tf.TensorInfo): tf.Tensor =>
  t instanceof tf.Tensor ? t : tf.engine().makeTensorFromTensorInfo(t);

function inputKernel(kernelName: string, depthwise: boolean): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as GradAttrs;
    const { filter } = inputs as { filter: tf.TensorInfo };
    if (a.inputShape === undefined) throw new Error(`${kernelName}: missing the inputShape attribute`);
    const [n, h, w, c] = a.inputShape;
    const g = geometry(kernelName, a.inputShape, filter.shape, a, depthwise, inputs.dy as tf.TensorInfo);
    const [t, b, l, r] = windowedPadding(g.info);
    const nb = backend as unknown as NodeBackend;
    try {
      const f = dilated(g) ? dilateFilter(asTensor4D(filter, kernelName), g.dilation) : filter;
      if (f !== filter) g.made.push(f as tf.Tensor);
      // The gradient for the padded (or cropped) input, then back to the input's own extent.
      const dxValid = runWithSizes(
        nb,
        kernelName,
        opAttrs(nb, g.info, depthwise),
        [n, h + t + b, w + l + r, c],
        (s) => [s, f, g.dy],
      );
      if (t === 0 && b === 0 && l === 0 && r === 0) return dxValid;
      const dxv = asTensor(dxValid) as tf.Tensor4D;
      const dx = tf.tidy(() => padOrCrop(dxv, [-t, -b, -l, -r]));
      dxv.dispose();
      return dx;
    } finally {
      tf.dispose(g.made);
    }
  };
}

function filterKernel(kernelName: string, depthwise: boolean): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const a = attrs as unknown as GradAttrs;
    const { x } = inputs as { x: tf.TensorInfo };
    if (a.filterShape === undefined) throw new Error(`${kernelName}: missing the filterShape attribute`);
    const g = geometry(kernelName, x.shape, a.filterShape, a, depthwise, inputs.dy as tf.TensorInfo);
    const nb = backend as unknown as NodeBackend;
    const x4 = asTensor4D(x, kernelName);
    const xv = tf.tidy(() => padOrCrop(x4, windowedPadding(g.info)));
    if (xv !== x4) g.made.push(xv);
    try {
      const shape = [g.info.filterHeight, g.info.filterWidth, a.filterShape[2], a.filterShape[3]];
      const dw = runWithSizes(nb, kernelName, opAttrs(nb, g.info, depthwise), shape, (s) => [xv, s, g.dy]);
      if (!dilated(g)) return dw;
      // The gradient of the zero-dilated filter, at the taps of the real one.
      const full = asTensor(dw);
      const [dh, dwd] = g.dilation;
      const taps = tf.stridedSlice(full, [0, 0, 0, 0], shape, [dh, dwd, 1, 1]);
      full.dispose();
      return taps;
    } finally {
      tf.dispose(g.made);
    }
  };
}

export const conv2dBackpropInputTensorflowKernel = inputKernel(tf.Conv2DBackpropInput, false);
export const conv2dBackpropFilterTensorflowKernel = filterKernel(tf.Conv2DBackpropFilter, false);
export const depthwiseBackpropInputTensorflowKernel = inputKernel(
  tf.DepthwiseConv2dNativeBackpropInput,
  true,
);
export const depthwiseBackpropFilterTensorflowKernel = filterKernel(
  tf.DepthwiseConv2dNativeBackpropFilter,
  true,
);
