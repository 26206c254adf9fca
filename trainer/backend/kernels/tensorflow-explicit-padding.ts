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
//   implementation only supports equal length strides"), which its forward op accepts; there dy is
//   spread with zeros onto the stride-1 output grid and the gradient taken at stride 1.
import * as tf from '@tensorflow/tfjs-core';
import { asTensor4D, convInfo, padOrCrop } from './conv-geometry.ts';
import { spreadWithZeros } from './conv2d-backprop-input-conv.ts';

/** The part of tfjs-node's NodeJSKernelBackend these kernels use. */
interface NodeBackend {
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

/**
 * The geometry and dy to send: as given, or for a depthwise gradient with unequal strides, dy
 * spread onto the stride-1 output grid with the same padding (`spread` is then a new tensor).
 */
function geometry(
  kernelName: string,
  inShape: readonly number[],
  filterShape: readonly number[],
  a: GradAttrs,
  depthwise: boolean,
  dy: tf.TensorInfo,
): { info: tf.backend_util.Conv2DInfo; dy: tf.TensorInfo; spread?: tf.Tensor } {
  const info = convInfo(kernelName, inShape, filterShape, a, a.dilations, depthwise);
  if (!depthwise || info.strideHeight === info.strideWidth) return { info, dy };
  const p = info.padInfo;
  const pad: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [p.top, p.bottom],
    [p.left, p.right],
    [0, 0],
  ];
  const info1 = convInfo(kernelName, inShape, filterShape, { ...a, strides: 1, pad }, a.dilations, true);
  const spread = tf.tidy(() => {
    const s = spreadWithZeros(asTensor4D(dy, kernelName), info.strideHeight, info.strideWidth);
    return tf.slice(s, [0, 0, 0, 0], [s.shape[0], info1.outHeight, info1.outWidth, s.shape[3]]);
  });
  return { info: info1, dy: spread, spread };
}

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
      // The gradient for the padded (or cropped) input, then back to the input's own extent.
      const dxValid = runWithSizes(
        nb,
        kernelName,
        opAttrs(nb, g.info, depthwise),
        [n, h + t + b, w + l + r, c],
        (s) => [s, filter, g.dy],
      );
      if (t === 0 && b === 0 && l === 0 && r === 0) return dxValid;
      // tfjs-node's executeSingleOutput already returns a Tensor (tracked by the engine).
      const dxv = (
        dxValid instanceof tf.Tensor ? dxValid : tf.engine().makeTensorFromTensorInfo(dxValid)
      ) as tf.Tensor4D;
      const dx = tf.tidy(() => padOrCrop(dxv, [-t, -b, -l, -r]));
      dxv.dispose();
      return dx;
    } finally {
      g.spread?.dispose();
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
    try {
      return runWithSizes(nb, kernelName, opAttrs(nb, g.info, depthwise), a.filterShape, (s) => [
        xv,
        s,
        g.dy,
      ]);
    } finally {
      if (xv !== x4) xv.dispose();
      g.spread?.dispose();
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
