// Running a plan: completed inputs (inputs.ts) in, the network and its tile plan out. Pure; the
// command (cli.ts) prints the result with format.ts, the operator reads it (operator/cluster).

import { builtinNetwork } from '../streaming/bodies.ts';
import type { PlanInputs } from './inputs.ts';
import type { PlanNetwork } from './memory.ts';
import { checkTile, PlanError, planAutoTile, type TilePlan, tileConstraints } from './planner.ts';

/** The built-in network the inputs name, with its head. */
export function networkOf(
  i: Pick<
    PlanInputs,
    'model' | 'bodyEnd' | 'width' | 'channels' | 'pooling' | 'attentionHiddenSize' | 'classes'
  >,
): PlanNetwork {
  const split = builtinNetwork(i.model, {
    ...(i.bodyEnd !== undefined && { bodyEnd: i.bodyEnd }),
    ...(i.width !== undefined && { width: i.width }),
    inputChannels: i.channels,
  });
  return {
    ...split,
    pooling: i.pooling,
    ...(i.pooling === 'attention' &&
      i.attentionHiddenSize !== undefined && { attentionHiddenSize: i.attentionHiddenSize }),
    outputs: i.classes,
  };
}

/** Runs the plan for resolved inputs. A budget is needed unless a tile is given. */
export function runPlan(i: PlanInputs): { net: PlanNetwork; plan: TilePlan } {
  const net = networkOf(i);
  const common = {
    net,
    image: i.image,
    headroom: i.headroom,
    optimizer: i.optimizer,
    dtype: i.dtype,
    backend: i.backend,
    inputGrad: i.saliency,
    ...(i.minTile !== undefined && { minTile: i.minTile }),
    ...(i.maxTile !== undefined && { maxTile: i.maxTile }),
  };
  if (i.tile !== undefined) {
    const { stride } = tileConstraints(net, i.minTile ?? 0);
    const tile = i.roundTile && i.tile < Math.max(...i.image) ? Math.floor(i.tile / stride) * stride : i.tile;
    // Without a budget, a fixed tile is reported as it is (an unlimited budget).
    return {
      net,
      plan: checkTile({ ...common, budgetBytes: i.budgetBytes ?? Number.MAX_VALUE, tile }),
    };
  }
  if (i.budgetBytes === undefined) {
    throw new PlanError(
      'say how much memory the GPU has: --gpu-memory <quantity> (e.g. 16Gi), resources.minGpuMemory in the manifest, or a fixed --tile',
    );
  }
  return { net, plan: planAutoTile({ ...common, budgetBytes: i.budgetBytes }) };
}
