// The two depthwise-convolution gradient kernels as typed-array loops. The wasm backend has
// neither; tfjs-backend-cpu's filter gradient calls TensorBuffer.get per multiply-add. NHWC,
// filter [KH, KW, C, M] with output channel c·M + m, any stride, dilation and explicit padding.
import * as tf from '@tensorflow/tfjs-core';
import { type Conv2DInfo, convInfo } from './conv-geometry.ts';
import { float32Kernel } from './tensor-data.ts';

/** dW[kr,kc,c,m] = Σ_{b,yr,yc} x[b, yr·sH + kr·dH − top, yc·sW + kc·dW − left, c] · dy[b,yr,yc,c·M+m]. */
export function depthwiseBackpropFilterLoop(
  x: Float32Array,
  dy: Float32Array,
  c: Conv2DInfo,
  out: Float32Array,
): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo } = c;
  const { outChannels: Co, strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  const { dilationHeight: dH, dilationWidth: dW } = c;
  const M = Co / C;
  const { top, left } = c.padInfo;
  const acc = new Float64Array(KH * KW * Co);
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < Ho; yr++) {
      for (let yc = 0; yc < Wo; yc++) {
        const dOff = ((b * Ho + yr) * Wo + yc) * Co;
        for (let kr = 0; kr < KH; kr++) {
          const xr = yr * sH + kr * dH - top;
          if (xr < 0 || xr >= H) continue;
          for (let kc = 0; kc < KW; kc++) {
            const xc = yc * sW + kc * dW - left;
            if (xc < 0 || xc >= W) continue;
            const xOff = ((b * H + xr) * W + xc) * C;
            const wOff = (kr * KW + kc) * Co;
            if (M === 1) {
              for (let ch = 0; ch < C; ch++)
                acc[wOff + ch]! += (x[xOff + ch] as number) * (dy[dOff + ch] as number);
            } else {
              for (let ch = 0; ch < C; ch++) {
                const xv = x[xOff + ch] as number;
                const o = ch * M;
                for (let m = 0; m < M; m++) acc[wOff + o + m]! += xv * (dy[dOff + o + m] as number);
              }
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i] as number;
}

/** dx[b,xr,xc,c] = Σ over the windows covering (xr,xc) of Σ_m dy[b,yr,yc,c·M+m] · w[kr,kc,c,m]. */
export function depthwiseBackpropInputLoop(
  dy: Float32Array,
  w: Float32Array,
  c: Conv2DInfo,
  out: Float32Array,
): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo } = c;
  const { outChannels: Co, strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  const { dilationHeight: dH, dilationWidth: dW } = c;
  const M = Co / C;
  const { top, left } = c.padInfo;
  // Scatter form: each dy sample adds into the inputs its window read. Handles any stride and
  // dilation without divisibility tests; float64 keeps the overlapping sums exact enough.
  const acc = new Float64Array(B * H * W * C);
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < Ho; yr++) {
      for (let yc = 0; yc < Wo; yc++) {
        const dOff = ((b * Ho + yr) * Wo + yc) * Co;
        for (let kr = 0; kr < KH; kr++) {
          const xr = yr * sH + kr * dH - top;
          if (xr < 0 || xr >= H) continue;
          for (let kc = 0; kc < KW; kc++) {
            const xc = yc * sW + kc * dW - left;
            if (xc < 0 || xc >= W) continue;
            const xOff = ((b * H + xr) * W + xc) * C;
            const wOff = (kr * KW + kc) * Co;
            if (M === 1) {
              for (let ch = 0; ch < C; ch++)
                acc[xOff + ch]! += (dy[dOff + ch] as number) * (w[wOff + ch] as number);
            } else {
              for (let ch = 0; ch < C; ch++) {
                const o = ch * M;
                let s = 0;
                for (let m = 0; m < M; m++) s += (dy[dOff + o + m] as number) * (w[wOff + o + m] as number);
                acc[xOff + ch]! += s;
              }
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i] as number;
}

type DepthwiseAttrs = tf.DepthwiseConv2dNativeBackpropFilterAttrs &
  tf.DepthwiseConv2dNativeBackpropInputAttrs;

function depthwiseInfo(
  name: string,
  inShape: readonly number[],
  filterShape: readonly number[],
  a: DepthwiseAttrs,
) {
  return convInfo(name, inShape, filterShape, a, a.dilations ?? 1, true);
}

export const depthwiseBackpropFilterLoopKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as tf.DepthwiseConv2dNativeBackpropFilterInputs;
  const a = attrs as unknown as DepthwiseAttrs;
  const name = tf.DepthwiseConv2dNativeBackpropFilter;
  const info = depthwiseInfo(name, x!.shape, a.filterShape, a);
  return float32Kernel(name, backend, [x!, dy!], a.filterShape, ([xv, dyv], out) =>
    depthwiseBackpropFilterLoop(xv!, dyv!, info, out),
  );
};

export const depthwiseBackpropInputLoopKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, filter } = inputs as tf.DepthwiseConv2dNativeBackpropInputInputs;
  const a = attrs as unknown as DepthwiseAttrs;
  const name = tf.DepthwiseConv2dNativeBackpropInput;
  const info = depthwiseInfo(name, a.inputShape, filter!.shape, a);
  return float32Kernel(name, backend, [dy!, filter!], a.inputShape, ([dyv, wv], out) =>
    depthwiseBackpropInputLoop(dyv!, wv!, info, out),
  );
};
