// Conv2DBackpropFilter as a plain typed-array loop. tfjs-backend-cpu's stock kernel calls
// TensorBuffer.get per multiply-add and runs ~70x slower (tfjs-notes §2a); this one is the cpu
// kernel of the project. NHWC, any stride, explicit padding, batch > 1.
import * as tf from '@tensorflow/tfjs-core';
import { type Conv2DInfo, convInfo } from './conv-geometry.ts';
import { float32Kernel } from './tensor-data.ts';

/** dW[kr,kc,ci,co] = Σ_{b,yr,yc} x[b, yr·sH + kr·dH − top, yc·sW + kc·dW − left, ci] · dy[b,yr,yc,co]. */
export function conv2dBackpropFilterLoop(
  x: Float32Array,
  dy: Float32Array,
  c: Conv2DInfo,
  out: Float32Array,
): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: Ci, outHeight: Ho, outWidth: Wo } = c;
  const { outChannels: Co, strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  const { dilationHeight: dH, dilationWidth: dW } = c;
  const top = c.padInfo.top;
  const left = c.padInfo.left;
  // float64 accumulation: sums run over every output position and would lose digits in float32.
  const acc = new Float64Array(KH * KW * Ci * Co);
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
            const xOff = ((b * H + xr) * W + xc) * Ci;
            const wOff = (kr * KW + kc) * Ci * Co;
            for (let c1 = 0; c1 < Ci; c1++) {
              const xv = x[xOff + c1] as number;
              if (xv === 0) continue; // post-ReLU activations are often exactly zero
              const base = wOff + c1 * Co;
              for (let c2 = 0; c2 < Co; c2++) acc[base + c2]! += xv * (dy[dOff + c2] as number);
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i] as number;
}

export const conv2dBackpropFilterLoopKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as tf.Conv2DBackpropFilterInputs;
  const a = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const info = convInfo(tf.Conv2DBackpropFilter, x!.shape, a.filterShape, a);
  return float32Kernel(tf.Conv2DBackpropFilter, backend, [x!, dy!], a.filterShape, ([xv, dyv], out) =>
    conv2dBackpropFilterLoop(xv!, dyv!, info, out),
  );
};
