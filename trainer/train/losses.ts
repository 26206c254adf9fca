// Losses on the logits of one image [1, outputs]. Each returns a scalar built inside the caller's
// gradient tape; the label is a class index (softmax), 0/1 (binary) or a target value (mse).

import * as tf from '@tensorflow/tfjs-core';
import type { LossFn } from '../streaming/network.ts';

export type LossName = 'softmax-cross-entropy' | 'binary-cross-entropy' | 'mse';

export function lossFor(name: LossName, label: number, outputs: number): LossFn {
  switch (name) {
    case 'softmax-cross-entropy':
      if (!Number.isInteger(label) || label < 0 || label >= outputs) {
        throw new Error(
          `label ${label} is not a class index in [0, ${outputs - 1}] for softmax-cross-entropy`,
        );
      }
      return (logits) =>
        tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot([label], outputs)))) as tf.Scalar;
    case 'binary-cross-entropy':
      if (label !== 0 && label !== 1)
        throw new Error(`label ${label} must be 0 or 1 for binary-cross-entropy`);
      if (outputs !== 1) throw new Error(`binary-cross-entropy needs one output, the network has ${outputs}`);
      // Numerically stable: max(z, 0) − z·y + log(1 + e^−|z|).
      return (logits) =>
        tf.sum(
          tf.add(tf.sub(tf.relu(logits), tf.mul(logits, label)), tf.log1p(tf.exp(tf.neg(tf.abs(logits))))),
        ) as tf.Scalar;
    case 'mse':
      return (logits) => tf.mean(tf.square(tf.sub(logits, label))) as tf.Scalar;
  }
}

/** The score used for ROC AUC and the predicted class, from one image's logits. */
export function scoreOf(name: LossName, logits: ArrayLike<number>): { score: number; predicted: number } {
  if (name === 'binary-cross-entropy') {
    const z = logits[0] as number;
    return { score: z, predicted: z > 0 ? 1 : 0 };
  }
  if (name === 'mse') return { score: logits[0] as number, predicted: logits[0] as number };
  let best = 0;
  for (let i = 1; i < logits.length; i++) if ((logits[i] as number) > (logits[best] as number)) best = i;
  // For AUC with softmax, score the positive class (index 1) against the rest via its log-odds margin.
  const positive =
    logits.length > 1
      ? (logits[1] as number) - Math.max(...Array.from(logits).filter((_, i) => i !== 1))
      : (logits[0] as number);
  return { score: positive, predicted: best };
}
