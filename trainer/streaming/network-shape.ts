// A whole network as pure data: the streamed body, an optional trunk run conventionally on the
// stitched feature map, global pooling and a dense layer. No TensorFlow import, so the planner and
// the operator share it with the executors.

import { type Body, inferChannels, parameterShapes } from './graph.ts';

export type Pooling = 'max' | 'avg' | 'attention';

/** Hidden size of the gated attention head when none is given: CLAM's small model (D = 128). */
export const ATTENTION_HIDDEN_DEFAULT = 128;

export interface Network {
  readonly body: Body;
  readonly trunk?: Body;
  readonly pooling: Pooling;
  /** Hidden size H of the gated attention (pooling 'attention'; ATTENTION_HIDDEN_DEFAULT when absent). */
  readonly attentionHiddenSize?: number;
  /** Outputs of the dense layer: classes for softmax, 1 for a binary logit or a regression value. */
  readonly outputs: number;
}

/** Shapes of every parameter of the network, by prefixed name. Pure. */
export function networkParameterShapes(net: Network): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const [n, s] of parameterShapes(net.body)) shapes.set(`body/${n}`, s);
  let features = inferChannels(net.body).get(net.body.output) as number;
  if (net.trunk) {
    if (net.trunk.inputChannels !== features) {
      throw new Error(`trunk expects ${net.trunk.inputChannels} channels but the body gives ${features}`);
    }
    for (const [n, s] of parameterShapes(net.trunk)) shapes.set(`trunk/${n}`, s);
    features = inferChannels(net.trunk).get(net.trunk.output) as number;
  }
  if (net.pooling === 'attention') {
    const hidden = net.attentionHiddenSize ?? ATTENTION_HIDDEN_DEFAULT;
    for (const g of ['V', 'U']) {
      shapes.set(`head/attention/${g}/kernel`, [features, hidden]);
      shapes.set(`head/attention/${g}/bias`, [hidden]);
    }
    shapes.set('head/attention/w/kernel', [hidden, 1]);
  }
  shapes.set('head/dense/kernel', [features, net.outputs]);
  shapes.set('head/dense/bias', [net.outputs]);
  return shapes;
}

/**
 * Parameters that start at a constant, by prefixed name: layer-norm gamma 1 and beta 0, and
 * layer scale at its op's `init` (ConvNeXt's 1e-6). The rest are drawn by initParams.
 */
export function constantInits(net: Network): Map<string, number> {
  const out = new Map<string, number>();
  const add = (prefix: string, body: Body | undefined): void => {
    for (const node of body?.nodes ?? []) {
      if (node.op.kind === 'layerNorm') {
        out.set(`${prefix}/${node.name}/gamma`, 1);
        out.set(`${prefix}/${node.name}/beta`, 0);
      } else if (node.op.kind === 'layerScale') {
        out.set(`${prefix}/${node.name}/gamma`, node.op.init);
      }
    }
  };
  add('body', net.body);
  add('trunk', net.trunk);
  return out;
}
