// Geometry and building blocks shared by the composed convolution kernels: pad-or-crop, a 'valid'
// convolution of a signed-padded input, zero spreading, and the typed-array filter transforms
// (done in JavaScript because filters are small and wasm's Reverse kernel is slow). Written
// against KernelOps, so the engine and the planner run these same lines.
import type { ConvInfo, KernelOps, Pad4, Pair } from './ops.ts';

/** Output length of a window sweep: floor((n + pads − k_eff) / s) + 1, as computeConv2DInfo. */
const windowOut = (n: number, lo: number, hi: number, effective: number, s: number): number =>
  Math.floor((n + lo + hi - effective) / s) + 1;

/**
 * tfjs's computeConv2DInfo for explicit padding [top, bottom, left, right] (the only padding the
 * planner sees: streamed convolutions always pad explicitly). `depthwise`: the filter is
 * [kh, kw, C, multiplier].
 */
export function explicitConvInfo(
  inShape: readonly number[],
  filterShape: readonly number[],
  strides: Pair,
  pad: Pad4,
  dilations: Pair,
  depthwise: boolean,
): ConvInfo {
  const [batchSize, inHeight, inWidth, inChannels] = inShape as [number, number, number, number];
  const [filterHeight, filterWidth, , fc] = filterShape as [number, number, number, number];
  const [strideHeight, strideWidth] = strides;
  const [dilationHeight, dilationWidth] = dilations;
  const effectiveFilterHeight = (filterHeight - 1) * dilationHeight + 1;
  const effectiveFilterWidth = (filterWidth - 1) * dilationWidth + 1;
  const [top, bottom, left, right] = pad;
  return {
    batchSize,
    inHeight,
    inWidth,
    inChannels,
    outHeight: windowOut(inHeight, top, bottom, effectiveFilterHeight, strideHeight),
    outWidth: windowOut(inWidth, left, right, effectiveFilterWidth, strideWidth),
    outChannels: depthwise ? fc * inChannels : fc,
    strideHeight,
    strideWidth,
    dilationHeight,
    dilationWidth,
    filterHeight,
    filterWidth,
    effectiveFilterHeight,
    effectiveFilterWidth,
    padInfo: { top, bottom, left, right },
  };
}

/** `info` with other strides and dilations (same padding and input): its output size recomputed. */
export function withStridesAndDilations(
  info: ConvInfo,
  strides: Pair,
  dilations: Pair,
  filter: Pair,
): ConvInfo {
  const effectiveFilterHeight = (filter[0] - 1) * dilations[0] + 1;
  const effectiveFilterWidth = (filter[1] - 1) * dilations[1] + 1;
  const p = info.padInfo;
  return {
    ...info,
    strideHeight: strides[0],
    strideWidth: strides[1],
    dilationHeight: dilations[0],
    dilationWidth: dilations[1],
    filterHeight: filter[0],
    filterWidth: filter[1],
    effectiveFilterHeight,
    effectiveFilterWidth,
    outHeight: windowOut(info.inHeight, p.top, p.bottom, effectiveFilterHeight, strides[0]),
    outWidth: windowOut(info.inWidth, p.left, p.right, effectiveFilterWidth, strides[1]),
  };
}

/**
 * Pads (positive amounts) or crops (negative amounts) the H and W axes of an NHWC tensor: a
 * slice for the crop, then a pad. Returns `x` itself when every amount is 0.
 */
export function padOrCrop<T>(ops: KernelOps<T>, x: T, amounts: Pad4): T {
  const [top, bottom, left, right] = amounts;
  let t = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = ops.shape(t) as [number, number, number, number];
    const ct = Math.max(0, -top);
    const cl = Math.max(0, -left);
    t = ops.slice(t, [0, ct, cl, 0], [n, h - ct - Math.max(0, -bottom), w - cl - Math.max(0, -right), c]);
  }
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    const p = (v: number) => Math.max(0, v);
    t = ops.pad(t, [
      [0, 0],
      [p(top), p(bottom)],
      [p(left), p(right)],
      [0, 0],
    ]);
  }
  return t;
}

/**
 * A 'valid' stride-1 convolution of `x` padded (positive) or cropped (negative) by `amounts`:
 * crops with a slice, and hands the padding to the convolution itself (XNNPACK pads through its
 * indirection buffer, which is cheaper than materialising a padded copy).
 */
export function conv2dSignedPad<T>(
  ops: KernelOps<T>,
  x: T,
  filter: T,
  amounts: Pad4,
  dilations: Pair = [1, 1],
): T {
  const crop = amounts.map((v) => Math.min(0, v)) as unknown as Pad4;
  const [n, h, w] = ops.shape(x) as [number, number, number];
  const [kh, kw, , co] = ops.shape(filter) as [number, number, number, number];
  if (h + crop[0] + crop[1] <= 0 || w + crop[2] + crop[3] <= 0) {
    // Everything real was cropped: the window sees padding only. XNNPACK refuses an empty input
    // (xnn_setup_convolution2d_nhwc_f32 status 2, leaving the output unwritten), so answer here.
    const outH = h + amounts[0] + amounts[1] - ((kh - 1) * dilations[0] + 1) + 1;
    const outW = w + amounts[2] + amounts[3] - ((kw - 1) * dilations[1] + 1) + 1;
    return ops.zeros([n, Math.max(0, outH), Math.max(0, outW), co]);
  }
  const xc = crop.some((v) => v < 0) ? padOrCrop(ops, x, crop) : x;
  return ops.conv2d(xc, filter, amounts.map((v) => Math.max(0, v)) as unknown as Pad4, dilations);
}

/** Inserts s−1 zeros after every sample along H and W: [B,H,W,C] → [B,H·sH,W·sW,C]. */
export function spreadWithZeros<T>(ops: KernelOps<T>, t: T, sH: number, sW: number): T {
  if (sH === 1 && sW === 1) return t;
  const [b, h, w, ch] = ops.shape(t) as [number, number, number, number];
  const padded = ops.pad(ops.reshape(t, [b, h, 1, w, 1, ch]), [
    [0, 0],
    [0, 0],
    [0, sH - 1],
    [0, 0],
    [0, sW - 1],
    [0, 0],
  ]);
  return ops.reshape(padded, [b, h * sH, w * sW, ch]);
}

/**
 * A [kh, kw, a, b] filter rotated by 180° in space, with its channel axes swapped when
 * `swapChannels` ([kh, kw, b, a]). The shape of the result is `rotatedShape`.
 */
export function rotateFilter(w: Float32Array, shape: readonly number[], swapChannels: boolean): Float32Array {
  const [kh, kw, a, b] = shape as [number, number, number, number];
  const out = new Float32Array(w.length);
  for (let r = 0; r < kh; r++) {
    for (let c = 0; c < kw; c++) {
      const src = ((kh - 1 - r) * kw + (kw - 1 - c)) * a * b;
      const dst = (r * kw + c) * a * b;
      for (let i = 0; i < a; i++) {
        for (let j = 0; j < b; j++)
          out[dst + (swapChannels ? j * a + i : i * b + j)] = w[src + i * b + j] as number;
      }
    }
  }
  return out;
}

export const rotatedShape = (shape: readonly number[], swapChannels: boolean): number[] => {
  const [kh, kw, a, b] = shape as [number, number, number, number];
  return swapChannels ? [kh, kw, b, a] : [kh, kw, a, b];
};

/** The filter rotated by 180° (channels swapped when asked), made from JavaScript. */
export function rotatedFilter<T>(ops: KernelOps<T>, filter: T, swapChannels: boolean): T {
  const shape = ops.shape(filter);
  return ops.fromHost(rotatedShape(shape, swapChannels), [filter], ([w]) =>
    rotateFilter(w as Float32Array, shape, swapChannels),
  );
}

/** A filter's taps spread dilation−1 zeros apart, in JavaScript (filters are small). */
export function dilateFilter<T>(ops: KernelOps<T>, f: T, [dh, dw]: Pair): T {
  const [kh, kw, a, b] = ops.shape(f) as [number, number, number, number];
  const ekh = (kh - 1) * dh + 1;
  const ekw = (kw - 1) * dw + 1;
  return ops.fromHost([ekh, ekw, a, b], [f], ([src]) => {
    const out = new Float32Array(ekh * ekw * a * b);
    const tap = a * b;
    for (let r = 0; r < kh; r++) {
      for (let c = 0; c < kw; c++)
        out.set(
          (src as Float32Array).subarray((r * kw + c) * tap, (r * kw + c + 1) * tap),
          (r * dh * ekw + c * dw) * tap,
        );
    }
    return out;
  });
}
