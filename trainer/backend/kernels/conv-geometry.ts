// Geometry for the project's convolution kernels in the engine: tfjs's own Conv2DInfo record,
// computed once from a kernel's attributes (the composed kernels, trainer/kernels/, read it).
import * as tf from '@tensorflow/tfjs-core';

export type Conv2DInfo = tf.backend_util.Conv2DInfo;
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

export function convInfo(
  kernelName: string,
  inShape: readonly number[],
  filterShape: readonly number[],
  attrs: { strides: [number, number] | number; pad: Pad; dimRoundingMode?: Rounding; dataFormat?: string },
  dilations: [number, number] | number = 1,
  depthwise = false,
): Conv2DInfo {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC') {
    throw new Error(
      `${kernelName}: the project kernel supports NHWC only, got dataFormat ${attrs.dataFormat}`,
    );
  }
  return tf.backend_util.computeConv2DInfo(
    inShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    depthwise,
    'channelsLast',
  );
}

/** Narrows a kernel input (a TensorInfo) to the Tensor that the engine actually passes. */
export function asTensor4D(t: tf.TensorInfo, what: string): tf.Tensor4D {
  if (!(t instanceof tf.Tensor) || t.rank !== 4) {
    throw new Error(
      `${what}: expected a rank-4 Tensor, got ${t instanceof tf.Tensor ? `rank ${t.rank}` : 'a TensorInfo'}`,
    );
  }
  return t as tf.Tensor4D;
}
