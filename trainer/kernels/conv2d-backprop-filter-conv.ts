// Conv2DBackpropFilter composed from one ordinary convolution, for the wasm backend (which has no
// such kernel) so that the work runs on XNNPACK. Swapping batch and channels turns the weight
// gradient into a convolution of the input (channels as batch) with dy (as the filter, batch as
// its input channels); the forward stride becomes the filter's dilation. tfjs-notes §4b measured
// this at ~8 GFLOP/s on wasm against ~1.5 for slice/matMul variants.
import { conv2dSignedPad } from './conv-geometry.ts';
import type { ConvInfo, KernelOps } from './ops.ts';

export function conv2dBackpropFilterViaConv<T>(ops: KernelOps<T>, x: T, dy: T, c: ConvInfo): T {
  const { strideHeight: sH, strideWidth: sW, filterHeight: KH, filterWidth: KW } = c;
  return ops.tidy(() => {
    // Keep exactly the rows/columns some window touches, so the convolution below yields KH×KW
    // outputs and computes nothing that is cropped away afterwards.
    const usedH = (c.outHeight - 1) * sH + KH;
    const usedW = (c.outWidth - 1) * sW + KW;
    const { top, left } = c.padInfo;
    const xT = ops.transpose(x, [3, 1, 2, 0]); // [Ci, H, W, B]
    const dyT = ops.transpose(dy, [1, 2, 0, 3]); // [Ho, Wo, B, Co] used as a filter
    const amounts = [top, usedH - c.inHeight - top, left, usedW - c.inWidth - left] as const;
    const r = conv2dSignedPad(ops, xT, dyT, amounts, [sH, sW]); // [Ci, KH, KW, Co]
    return ops.transpose(r, [1, 2, 0, 3]);
  });
}

/** Output block edge of the tiled form: 16×16 blocks gave the best times in the measurements. */
const BLOCK = 16;

/** How the tiled form cuts dy into blocks, and the input window each block reads. */
interface Blocks {
  readonly bh: number;
  readonly bw: number;
  readonly nbh: number;
  readonly nbw: number;
  /** Blocks over the whole batch. */
  readonly count: number;
  readonly winH: number;
  readonly winW: number;
}

function blocksOf(c: ConvInfo): Blocks {
  const bh = Math.min(BLOCK, c.outHeight);
  const bw = Math.min(BLOCK, c.outWidth);
  const nbh = Math.ceil(c.outHeight / bh);
  const nbw = Math.ceil(c.outWidth / bw);
  return {
    bh,
    bw,
    nbh,
    nbw,
    count: c.batchSize * nbh * nbw,
    winH: (bh - 1) * c.strideHeight + c.filterHeight, // input rows one output block reads
    winW: (bw - 1) * c.strideWidth + c.filterWidth,
  };
}

/** xb[t, i, j, ci] = x[b, blockRow·bh·sH + i − top, blockCol·bw·sW + j − left, ci] (0 outside), whole-row copies. */
export function gatherInputBlocks(xv: Float32Array, c: ConvInfo, k: Blocks): Float32Array {
  const { inHeight: H, inWidth: W, inChannels: Ci } = c;
  const { top, left } = c.padInfo;
  const xb = new Float32Array(k.count * k.winH * k.winW * Ci);
  let t = 0;
  for (let b = 0; b < c.batchSize; b++) {
    for (let br = 0; br < k.nbh; br++) {
      for (let bc = 0; bc < k.nbw; bc++, t++) {
        const r0 = br * k.bh * c.strideHeight - top;
        const c0 = bc * k.bw * c.strideWidth - left;
        const j0 = Math.max(0, -c0); // first window column inside the image
        const j1 = Math.min(k.winW, W - c0); // one past the last
        for (let i = 0; i < k.winH && j1 > j0; i++) {
          const xr = r0 + i;
          if (xr < 0 || xr >= H) continue;
          const src = ((b * H + xr) * W + c0 + j0) * Ci;
          xb.set(xv.subarray(src, src + (j1 - j0) * Ci), ((t * k.winH + i) * k.winW + j0) * Ci);
        }
      }
    }
  }
  return xb;
}

/** db[t, u, v, co] = dy[b, blockRow·bh + u, blockCol·bw + v, co] (0 past the last row/column). */
export function gatherOutputBlocks(dv: Float32Array, c: ConvInfo, k: Blocks): Float32Array {
  const { outHeight: Ho, outWidth: Wo, outChannels: Co } = c;
  const db = new Float32Array(k.count * k.bh * k.bw * Co);
  let t = 0;
  for (let b = 0; b < c.batchSize; b++) {
    for (let br = 0; br < k.nbh; br++) {
      for (let bc = 0; bc < k.nbw; bc++, t++) {
        const v1 = Math.min(k.bw, Wo - bc * k.bw);
        for (let u = 0; u < k.bh; u++) {
          const yr = br * k.bh + u;
          if (yr >= Ho) break;
          const src = ((b * Ho + yr) * Wo + bc * k.bw) * Co;
          db.set(dv.subarray(src, src + v1 * Co), (t * k.bh + u) * k.bw * Co);
        }
      }
    }
  }
  return db;
}

/**
 * The same convolution with the reduction laid out for XNNPACK. In the plain form the filter's
 * input channels are the batch (usually 1), so XNNPACK walks Ho·Wo taps one float at a time.
 * Here dy is cut into BLOCK×BLOCK output blocks, each paired with the input window it read, and
 * the blocks (of every image in the batch) become the channels: the reduction runs over
 * BLOCK² taps × (number of blocks) contiguous channels. The gathers are block-major with
 * whole-row copies; XNNPACK transposes then put the blocks innermost.
 */
export function conv2dBackpropFilterTiled<T>(ops: KernelOps<T>, x: T, dy: T, c: ConvInfo): T {
  const k = blocksOf(c);
  return ops.tidy(() => {
    const xb = ops.fromHost([k.count, k.winH, k.winW, c.inChannels], [x], ([xv]) =>
      gatherInputBlocks(xv as Float32Array, c, k),
    );
    const xt = ops.transpose(xb, [3, 1, 2, 0]); // [Ci, winH, winW, T]
    const db = ops.fromHost([k.count, k.bh, k.bw, c.outChannels], [dy], ([dv]) =>
      gatherOutputBlocks(dv as Float32Array, c, k),
    );
    const dt = ops.transpose(db, [1, 2, 0, 3]); // [bh, bw, T, Co]
    const r = ops.conv2d(xt, dt, [0, 0, 0, 0], [c.strideHeight, c.strideWidth]); // [Ci, KH, KW, Co]
    return ops.transpose(r, [1, 2, 0, 3]);
  });
}

/**
 * Picks the faster form. Measured on wasm (CPU ms, min of 7; forward / plain / tiled):
 * 128² 64→64 3×3: 68 / 165 / 136; 64² 128→128: 73 / 148 / 104; 32² 256→256: 70 / 142 / 109;
 * 128² 64→128 3×3/2: 33 / 81 / 66; but 128² 16→16: 6 / 12 / 13 and 128² 3→16: 2 / 5 / 7, where
 * the gathers cost more than the better reduction saves.
 */
export function useTiledFilterGradient(filterShape: readonly number[]): boolean {
  const [, , ci, co] = filterShape as [number, number, number, number];
  return ci >= 32 && co >= 32;
}

/** The wasm Conv2DBackpropFilter kernel: dW [KH, KW, Ci, Co] of x and dy. */
export function conv2dBackpropFilterConv<T>(ops: KernelOps<T>, x: T, dy: T, c: ConvInfo): T {
  const tiled = useTiledFilterGradient([c.filterHeight, c.filterWidth, c.inChannels, c.outChannels]);
  return (tiled ? conv2dBackpropFilterTiled : conv2dBackpropFilterViaConv)(ops, x, dy, c);
}
