// Used by the equivalence tests and `tilestream bench equivalence`: run one network both ways on
// one image and measure how far the streamed results are from the conventional ones.

import * as tf from '@tensorflow/tfjs-core';
import { runBody, streamForward, tensorSource } from './executor.ts';
import { tileGrid } from './geometry.ts';
import { conventionalStep, initParams, type LossFn, type Network, scoped, streamedStep } from './network.ts';

export interface Discrepancy {
  /** max|streamed − conventional| / max|conventional| over the body's output feature map. */
  output: number;
  /** The same over the logits. */
  logits: number;
  /** The worst, over parameter tensors, of max|Δ| / max|g| of that tensor. */
  paramGrad: number;
  /** Name of that worst parameter. */
  worstParam: string;
  /** max|Δ| / max|g| of the input gradient. */
  inputGrad: number;
  tiles: number;
}

export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return scale === 0 ? diff : diff / scale;
}

/** A loss that exercises every logit with a fixed random weight: Σ logits·r. */
export function linearLoss(outputs: number, seed: number): LossFn {
  const r = Array.from({ length: outputs }, (_, i) => Math.sin(seed * 31 + i * 7) + 0.5);
  return (logits) => tf.sum(tf.mul(logits, tf.tensor2d([r], [1, outputs])));
}

/**
 * Streams one training step and runs it conventionally on the same image, same weights.
 * Needs the final feature map to be small; the conventional pass holds the whole image's activations.
 */
export async function compareStep(
  net: Network,
  image: readonly [number, number],
  tile: readonly [number, number],
  seed: number,
  inputGrad = true,
): Promise<Discrepancy> {
  const params = initParams(net, seed);
  const x = tf.randomNormal(
    [1, image[0], image[1], net.body.inputChannels],
    0,
    1,
    'float32',
    seed + 1,
  ) as tf.Tensor4D;
  const loss = linearLoss(net.outputs, seed);
  const grid = tileGrid(net.body, image, tile);
  try {
    const bodyParams = scoped(params, 'body');
    const fConv = runBody(net.body, bodyParams, x);
    const fStream = await streamForward(net.body, bodyParams, tensorSource(x), grid);
    const output = relativeError(fStream.dataSync(), fConv.dataSync());
    fConv.dispose();
    fStream.dispose();
    const conv = conventionalStep(net, params, x, loss, { inputGrad });
    const streamed = await streamedStep(net, params, tensorSource(x), grid, loss, { inputGrad });
    let paramGrad = 0;
    let worstParam = '';
    for (const [name, g] of conv.grads) {
      const s = streamed.grads.get(name);
      if (!s) throw new Error(`streamed step has no gradient for ${name}`);
      const e = relativeError(s.dataSync(), g.dataSync());
      if (e >= paramGrad) {
        paramGrad = e;
        worstParam = name;
      }
    }
    const result: Discrepancy = {
      output,
      logits: relativeError(streamed.logits, conv.logits),
      paramGrad,
      worstParam,
      inputGrad: inputGrad ? relativeError(streamed.inputGrad ?? [], conv.inputGrad ?? []) : 0,
      tiles: grid.tiles.length,
    };
    for (const g of [...conv.grads.values(), ...streamed.grads.values()]) g.dispose();
    return result;
  } finally {
    x.dispose();
    for (const p of params.values()) p.dispose();
  }
}
