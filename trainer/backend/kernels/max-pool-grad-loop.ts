// MaxPoolGrad as a typed-array loop, for both backends.
// - wasm: the stock kernel (tfjs-backend-wasm 4.22 MaxPoolGrad.cc) starts each window's running
//   maximum at std::numeric_limits<float>::min(), the smallest *positive* float, so a window whose
//   maximum is <= 0 sends its gradient nowhere (or to element 0). Pooling after a frozen-BN affine,
//   or any negative activations, gets wrong gradients. Found by test/ops (maxPool2d on wasm).
// - cpu: the stock kernel goes through TensorBuffer.get per tap and is one of the slowest kernels
//   of a training step (tfjs-notes §2b).
// Ties go to the first maximum in row-major window order, as in PyTorch and tfjs-backend-cpu.
import * as tf from '@tensorflow/tfjs-core';
import type { Conv2DInfo } from './conv-geometry.ts';
import { float32Kernel } from './tensor-data.ts';

export function maxPoolGradLoop(x: Float32Array, dy: Float32Array, c: Conv2DInfo, dx: Float32Array): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo } = c;
  const { strideHeight: sH, strideWidth: sW, dilationHeight: dH, dilationWidth: dW } = c;
  const { filterHeight: KH, filterWidth: KW } = c;
  const { top, left } = c.padInfo;
  dx.fill(0);
  const best = new Float32Array(C);
  const bestAt = new Int32Array(C);
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < Ho; yr++) {
      for (let yc = 0; yc < Wo; yc++) {
        let seen = false;
        for (let kr = 0; kr < KH; kr++) {
          const xr = yr * sH + kr * dH - top;
          if (xr < 0 || xr >= H) continue;
          for (let kc = 0; kc < KW; kc++) {
            const xc = yc * sW + kc * dW - left;
            if (xc < 0 || xc >= W) continue;
            const xOff = ((b * H + xr) * W + xc) * C;
            if (!seen) {
              // The first cell of the window starts every channel's running maximum.
              for (let ch = 0; ch < C; ch++) {
                best[ch] = x[xOff + ch] as number;
                bestAt[ch] = xOff + ch;
              }
              seen = true;
              continue;
            }
            for (let ch = 0; ch < C; ch++) {
              const v = x[xOff + ch] as number;
              // Strictly greater: the first maximum wins.
              if (v > (best[ch] as number)) {
                best[ch] = v;
                bestAt[ch] = xOff + ch;
              }
            }
          }
        }
        if (!seen) continue; // a window entirely in the padding has no input to credit
        const dOff = ((b * Ho + yr) * Wo + yc) * C;
        for (let ch = 0; ch < C; ch++) dx[bestAt[ch] as number]! += dy[dOff + ch] as number;
      }
    }
  }
}

export const maxPoolGradLoopKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as tf.MaxPoolGradInputs;
  const a = attrs as unknown as tf.MaxPoolGradAttrs;
  const info = tf.backend_util.computePool2DInfo(
    input!.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
  return float32Kernel(tf.MaxPoolGrad, backend, [input!, dy!], input!.shape, ([xv, dyv], out) =>
    maxPoolGradLoop(xv!, dyv!, info, out),
  );
};
