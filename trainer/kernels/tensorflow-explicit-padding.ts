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
import { dilateFilter, padOrCrop, spreadWithZeros, withStridesAndDilations } from './conv-geometry.ts';
import type { ConvInfo, NativeConvAttrs, NativeOps, Pad4, Pair } from './ops.ts';

/**
 * [top, bottom, left, right] to pad (positive) or crop (negative) the input by so that a 'valid'
 * convolution reads exactly what the padded one reads: the padding, less the rows and columns
 * past the last window (which never reach the output, and are where oneDNN's filter gradient
 * goes wrong).
 */
export function windowedPadding(info: ConvInfo): Pad4 {
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

/** What is sent to TensorFlow: stride, dilation and dy adjusted to what its kernels accept. */
interface Geometry<T> {
  /** Dilation 1, and equal strides for a depthwise gradient. */
  readonly info: ConvInfo;
  readonly dy: T;
  /** The dilation taken out of `info` (the filter is dilated instead); [1, 1] when none. */
  readonly dilation: Pair;
  /** Tensors made here, disposed by the caller. */
  readonly made: T[];
}

/**
 * TensorFlow's depthwise gradients refuse unequal strides and (under oneDNN) dilation, so for
 * those: dilation moves into the filter (a zero-dilated filter at dilation 1 reads the same
 * cells), and dy is spread onto the stride-1 output grid with the same padding.
 */
function geometry<T>(ops: NativeOps<T>, info: ConvInfo, depthwise: boolean, dy: T): Geometry<T> {
  const dilation: Pair = [info.dilationHeight, info.dilationWidth];
  const unequal = info.strideHeight !== info.strideWidth;
  if (!depthwise || (!unequal && dilation[0] === 1 && dilation[1] === 1)) {
    return { info, dy, dilation: [1, 1], made: [] };
  }
  const strides: Pair = unequal ? [1, 1] : [info.strideHeight, info.strideWidth];
  const effective: Pair = [info.effectiveFilterHeight, info.effectiveFilterWidth];
  const info1 = withStridesAndDilations(info, strides, [1, 1], effective);
  if (!unequal) return { info: info1, dy, dilation, made: [] };
  const spread = ops.tidy(() => {
    const s = spreadWithZeros(ops, dy, info.strideHeight, info.strideWidth);
    const shape = ops.shape(s);
    return ops.slice(
      s,
      [0, 0, 0, 0],
      [shape[0] as number, info1.outHeight, info1.outWidth, shape[3] as number],
    );
  });
  return { info: info1, dy: spread, dilation, made: [spread] };
}

const dilated = (g: Geometry<unknown>): boolean => g.dilation[0] > 1 || g.dilation[1] > 1;

/**
 * Whether the windows read padding only (a side padded by more than the effective filter, and the
 * input shorter than the stride): no input cell meets the filter, both gradients are zero, and
 * the windowed extent would crop past the input.
 */
function readsPaddingOnly(info: ConvInfo, windowed: Pad4): boolean {
  return info.inHeight + windowed[1] <= 0 || info.inWidth + windowed[3] <= 0;
}

const nativeAttrs = (info: ConvInfo, depthwise: boolean): NativeConvAttrs => ({
  strides: [info.strideHeight, info.strideWidth],
  dilations: [info.dilationHeight, info.dilationWidth],
  depthwise,
});

/** Conv2DBackpropInput / DepthwiseConv2dNativeBackpropInput: dx [B, H, W, C] of dy and the filter. */
export function backpropInputTensorflow<T>(
  ops: NativeOps<T>,
  kernelName: string,
  depthwise: boolean,
  dy: T,
  filter: T,
  info: ConvInfo,
): T {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c } = info;
  if (readsPaddingOnly(info, windowedPadding(info))) return ops.zeros([n, h, w, c]);
  const g = geometry(ops, info, depthwise, dy);
  const [t, b, l, r] = windowedPadding(g.info);
  try {
    const f = dilated(g) ? dilateFilter(ops, filter, g.dilation) : filter;
    if (f !== filter) g.made.push(f);
    // The gradient for the padded (or cropped) input, then back to the input's own extent.
    const validShape = [n, h + t + b, w + l + r, c];
    const dxValid = ops.convBackprop(
      kernelName,
      [validShape, f, g.dy],
      validShape,
      nativeAttrs(g.info, depthwise),
    );
    if (t === 0 && b === 0 && l === 0 && r === 0) return dxValid;
    const dx = ops.tidy(() => padOrCrop(ops, dxValid, [-t, -b, -l, -r]));
    ops.dispose(dxValid);
    return dx;
  } finally {
    for (const m of g.made) ops.dispose(m);
  }
}

/** Conv2DBackpropFilter / DepthwiseConv2dNativeBackpropFilter: dW of `filterShape` from x and dy. */
export function backpropFilterTensorflow<T>(
  ops: NativeOps<T>,
  kernelName: string,
  depthwise: boolean,
  x: T,
  dy: T,
  filterShape: readonly number[],
  info: ConvInfo,
): T {
  if (readsPaddingOnly(info, windowedPadding(info))) return ops.zeros(filterShape);
  const g = geometry(ops, info, depthwise, dy);
  const xv = ops.tidy(() => padOrCrop(ops, x, windowedPadding(g.info)));
  if (xv !== x) g.made.push(xv);
  try {
    const shape = [
      g.info.filterHeight,
      g.info.filterWidth,
      filterShape[2] as number,
      filterShape[3] as number,
    ];
    const dw = ops.convBackprop(kernelName, [xv, shape, g.dy], shape, nativeAttrs(g.info, depthwise));
    if (!dilated(g)) return dw;
    // The gradient of the zero-dilated filter, at the taps of the real one.
    const taps = ops.stridedSlice(dw, [0, 0, 0, 0], shape, [g.dilation[0], g.dilation[1], 1, 1]);
    ops.dispose(dw);
    return taps;
  } finally {
    for (const m of g.made) ops.dispose(m);
  }
}

/**
 * The mask of every ReLU and ReLU6 gradient (tfjs-core's Step, alpha 0) as two TensorFlow ops,
 * Sign(Relu(x)): 1 where x > 0, 0 elsewhere, NaN stays NaN. tfjs-node composes it from six
 * JavaScript-level ops (isNaN, greater, ones, fill, where, Select), which held about 4.5 tensors
 * of x's size at once and took 13–21% of a ResNet step on the CPU build; this holds two. Other
 * alphas (no op of this project uses them) go to the stock kernel.
 */
export function stepTensorflow<T>(ops: NativeOps<T>, x: T, alpha: number): T {
  if (alpha !== 0 || ops.dtype(x) !== 'float32') return ops.stock('Step', { x }, { alpha });
  const relu = ops.unary('Relu', x);
  try {
    return ops.unary('Sign', relu);
  } finally {
    ops.dispose(relu);
  }
}
