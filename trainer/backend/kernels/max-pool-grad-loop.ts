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
import { readFloat32, writeFloat32 } from './tensor-data.ts';

export function maxPoolGradLoop(x: Float32Array, dy: Float32Array, c: Conv2DInfo): Float32Array {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo } = c;
  const { strideHeight: sH, strideWidth: sW, dilationHeight: dH, dilationWidth: dW } = c;
  const { filterHeight: KH, filterWidth: KW } = c;
  const { top, left } = c.padInfo;
  const dx = new Float32Array(B * H * W * C);
  const best = new Float32Array(C);
  const bestAt = new Int32Array(C);
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < Ho; yr++) {
      for (let yc = 0; yc < Wo; yc++) {
        best.fill(Number.NEGATIVE_INFINITY);
        bestAt.fill(-1);
        for (let kr = 0; kr < KH; kr++) {
          const xr = yr * sH + kr * dH - top;
          if (xr < 0 || xr >= H) continue;
          for (let kc = 0; kc < KW; kc++) {
            const xc = yc * sW + kc * dW - left;
            if (xc < 0 || xc >= W) continue;
            const xOff = ((b * H + xr) * W + xc) * C;
            for (let ch = 0; ch < C; ch++) {
              const v = x[xOff + ch] as number;
              // Strictly greater: the first maximum wins. bestAt -1 also takes a -Infinity cell.
              if (v > (best[ch] as number) || bestAt[ch] === -1) {
                best[ch] = v;
                bestAt[ch] = xOff + ch;
              }
            }
          }
        }
        const dOff = ((b * Ho + yr) * Wo + yc) * C;
        for (let ch = 0; ch < C; ch++) {
          const at = bestAt[ch] as number;
          if (at >= 0) dx[at]! += dy[dOff + ch] as number;
        }
      }
    }
  }
  return dx;
}

export const maxPoolGradLoopKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, input } = inputs as tf.MaxPoolGradInputs;
  const a = attrs as unknown as tf.MaxPoolGradAttrs;
  const be = backend as tf.KernelBackend;
  const info = tf.backend_util.computePool2DInfo(
    input!.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
  return writeFloat32(be, input!.shape, maxPoolGradLoop(readFloat32(be, input!), readFloat32(be, dy!), info));
};
