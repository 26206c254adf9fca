// The operations the project's composed kernels are written against, so that one kernel source
// runs on two implementations: TensorFlow.js tensors in the engine (backend/kernels/tf-ops.ts)
// and shapes-and-buffers in the memory planner (plan/sim-backends.ts simOps). Each operation is one
// tfjs op (or one TensorFlow op on the native backend), so the planner sees every allocation the
// engine makes. Pure: imports nothing, the planner and the operator load it.

/** Explicit padding of the H and W axes of an NHWC tensor: [top, bottom, left, right]. */
export type Pad4 = readonly [number, number, number, number];
export type Pair = readonly [number, number];

/**
 * A convolution's geometry, field for field the part of tfjs's Conv2DInfo these kernels read
 * (the engine passes tfjs's own record; the planner computes it from explicit padding).
 */
export interface ConvInfo {
  readonly batchSize: number;
  readonly inHeight: number;
  readonly inWidth: number;
  readonly inChannels: number;
  readonly outHeight: number;
  readonly outWidth: number;
  readonly outChannels: number;
  readonly strideHeight: number;
  readonly strideWidth: number;
  readonly dilationHeight: number;
  readonly dilationWidth: number;
  readonly filterHeight: number;
  readonly filterWidth: number;
  readonly effectiveFilterHeight: number;
  readonly effectiveFilterWidth: number;
  readonly padInfo: {
    readonly top: number;
    readonly bottom: number;
    readonly left: number;
    readonly right: number;
  };
}

/** tfjs ops over NHWC float32 tensors of type T. Every op returns a new tensor the caller owns. */
export interface KernelOps<T> {
  shape(x: T): readonly number[];
  dtype(x: T): string;
  /** tf.tidy: tensors made inside and not returned are freed when `fn` returns. */
  tidy(fn: () => T): T;
  dispose(x: T): void;
  slice(x: T, begin: readonly number[], size: readonly number[]): T;
  pad(x: T, paddings: readonly (readonly [number, number])[]): T;
  reshape(x: T, shape: readonly number[]): T;
  transpose(x: T, perm: readonly number[]): T;
  stack(xs: readonly T[], axis: number): T;
  stridedSlice(x: T, begin: readonly number[], end: readonly number[], strides: readonly number[]): T;
  /** tf.sum over one axis or several. */
  sum(x: T, axes: number | readonly number[]): T;
  /** tf.mean over one axis. */
  mean(x: T, axis: number): T;
  zeros(shape: readonly number[]): T;
  /** Elementwise tf ops (a number is a scalar made inside the op, as tfjs does). */
  add(a: T, b: T | number): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T | number): T;
  erf(x: T): T;
  exp(x: T): T;
  square(x: T): T;
  rsqrt(x: T): T;
  /** tf.conv2d at stride 1 with explicit padding ('valid' when all zero). */
  conv2d(x: T, filter: T, pad: Pad4, dilations: Pair): T;
  /** tf.depthwiseConv2d at stride 1, 'valid'. */
  depthwiseConv2d(x: T, filter: T, dilations: Pair): T;
  /**
   * A tensor computed in JavaScript from the float32 data of `inputs` (a rotated filter, gathered
   * blocks): no kernel runs, the result is made with tf.tensor.
   */
  fromHost(
    shape: readonly number[],
    inputs: readonly T[],
    compute: (data: readonly Float32Array[]) => Float32Array,
  ): T;
}

/** A TensorFlow op's attributes that the native kernels set (padding is always VALID). */
export interface NativeConvAttrs {
  readonly strides: Pair;
  readonly dilations: Pair;
  readonly depthwise: boolean;
}

/** The native TensorFlow backend's extra operations: TensorFlow ops run without the engine. */
export interface NativeOps<T> extends KernelOps<T> {
  /**
   * A TensorFlow convolution gradient with VALID padding; `sizes` (its shape input, an int32
   * vector made and freed around the op) goes where TensorFlow expects it.
   */
  convBackprop(
    name: string,
    inputs: readonly (T | readonly number[])[],
    outShape: readonly number[],
    attrs: NativeConvAttrs,
  ): T;
  /** A float32 TensorFlow op of one input (Relu, Sign) run on the backend directly. */
  unary(name: 'Relu' | 'Sign', x: T): T;
  /** The backend's own kernel that a project kernel replaced, for the cases it hands back. */
  stock(kernelName: string, inputs: Readonly<Record<string, T>>, attrs: Readonly<Record<string, unknown>>): T;
}
