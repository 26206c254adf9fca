// Condition and Event messages: one sentence with the numbers and, where something is wrong, the
// field to change. Pure.

import type { StreamingTrainingJob } from '../../crds/index.ts';
import { formatQuantity, type JobPlan } from '../children/job-plan.ts';
import { queueNameOf } from '../children/pod-customisation.ts';

export function describePlan(plan: JobPlan): string {
  const where =
    plan.gpuClass !== undefined
      ? `GPU class ${plan.gpuClass} (${plan.gpuProduct}, ${formatQuantity(plan.gpuMemoryBytes ?? 0)} per GPU)`
      : `CPU (memory budget ${formatQuantity(plan.budgetBytes ?? 0)})`;
  let text = `tile ${plan.tileSize} px on ${where}`;
  if (plan.predictedPeakStreamedBytes !== undefined && plan.predictedPeakConventionalBytes !== undefined) {
    text +=
      `: predicted peak ${formatQuantity(plan.predictedPeakStreamedBytes)} streamed vs ` +
      `${formatQuantity(plan.predictedPeakConventionalBytes)} conventional`;
    if (plan.savingsRatio !== undefined) text += ` (${Math.round(plan.savingsRatio * 100)}% saved)`;
  } else {
    text += ' (spec.streaming.tileSize; no memory prediction for a TensorFlow.js model)';
  }
  return text;
}

export function suspendedMessage(stj: StreamingTrainingJob, bySpec: boolean): string {
  if (bySpec) return 'spec.runPolicy.suspend is true: no trainer pod runs until it is false again';
  return `waiting for Kueue to admit the trainer Job from LocalQueue ${queueNameOf(stj)}`;
}

export function tileReducedMessage(
  before: number,
  after: number,
  reductions: number,
  max: number,
  plan: JobPlan,
): string {
  return (
    `the trainer ran out of memory at tile ${before} px; re-planned with tile ${after} px ` +
    `(reduction ${reductions} of at most ${max}): ${describePlan(plan)}`
  );
}

function fieldList(fields: readonly string[]): string {
  return fields.length === 1 ? fields[0]! : `${fields.slice(0, -1).join(', ')} and ${fields.at(-1)}`;
}

export function specChangeAppliedMessage(fields: readonly string[], plan: JobPlan): string {
  return `${fieldList(fields)} changed while no trainer was running; re-planned with the new spec: ${describePlan(plan)}`;
}

export function specChangePendingMessage(
  fields: readonly string[],
  jobName: string,
  generation: number,
): string {
  return (
    `${fieldList(fields)} changed (generation ${generation}) while trainer Job ${jobName} runs; the running trainer ` +
    'keeps its settings, and the change applies at its next attempt. To apply it now, suspend the job ' +
    '(spec.runPolicy.suspend: true; the trainer writes a checkpoint) and resume it'
  );
}

export function exhaustedMessage(tile: number, reductions: number, max: number): string {
  return (
    `the trainer ran out of memory at tile ${tile} px after ${reductions} tile reduction(s), the most ` +
    `spec.runPolicy.maxTileReductions (${max}) allows; raise maxTileReductions, set a smaller ` +
    'spec.streaming.tileSize, or add memoryHeadroom'
  );
}

export function minimumTileOomMessage(tile: number): string {
  return (
    `the trainer ran out of memory even at the minimum tile (${tile} px); lower spec.streaming.minTileSize, ` +
    'use a smaller image (spec.data.imageSize) or a later body end, or run on a GPU with more memory'
  );
}

export function exitCodeUnreadableMessage(jobName: string): string {
  return (
    `trainer Job ${jobName} failed by its pod failure policy: the trainer exited with exit code 2 (invalid ` +
    'input), 3 (out of memory), 4 (checkpoint volume full) or 5 (data not found), but its pod is gone, so ' +
    'which cannot be read; check spec.data and its volume, spec.streaming.tileSize and the free space of the ' +
    'checkpoint volume, then create the job again'
  );
}

/** Planned, when a data-parallel attempt failed and all its ranks start again from the last checkpoint. */
export function ranksRestartedMessage(
  failure: string,
  restarts: number,
  limit: number,
  plan: JobPlan,
): string {
  return (
    `${failure}; all ranks restart from the last checkpoint (restart ${restarts} of at most ` +
    `spec.runPolicy.backoffLimit ${limit}): ${describePlan(plan)}`
  );
}

/** Failed, when a data-parallel attempt failed and backoffLimit allows no further restart. */
export function ranksExhaustedMessage(
  failure: string,
  restarts: number,
  limit: number,
  peersUnavailable: boolean,
): string {
  return (
    `${failure}; the job's ranks were restarted ${restarts - 1} time(s), the most spec.runPolicy.backoffLimit ` +
    `(${limit}) allows` +
    (peersUnavailable
      ? '. Ranks wait for their peers only for the peer timeout: with no Kueue queue, all pods must find a GPU ' +
        'at once; name a Kueue LocalQueue (spec.runPolicy.queueName) to admit them together'
      : '')
  );
}

/** Planned, when the chosen class has free GPUs for fewer than all of a data-parallel job's pods. */
export function ranksWaitingMessage(plan: JobPlan, freePods: number, pods: number): string {
  return (
    `GPU class ${plan.gpuClass} has free GPUs for ${freePods} of the job's ${pods} trainer pods now: the others ` +
    'wait for GPUs, and ranks wait for their peers only up to the peer timeout (exit code 6, PeersUnavailable); ' +
    'a Kueue queue (spec.runPolicy.queueName) admits all pods together'
  );
}
