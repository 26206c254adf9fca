// The placement policy: which GPU class a job runs on, and with which tile. Pure.
// Each usable class gets the planner's auto tile for its memory (the fewest tiles, made by the smallest
// tile giving that count), so a larger tile means fewer tiles; among classes with a free GPU the
// largest tile wins, else the largest tile overall (the pod waits for a GPU of that class).
// Ties go to the smaller GPU, leaving larger ones for jobs that need them. A fixed tileSize keeps
// only the classes where it fits; spec.resources.minGpuMemory keeps only GPUs at least that large.

import { parseQuantity, type StreamingTrainingJobSpec } from '../../crds/index.ts';
import { formatBytes } from '../../trainer/plan/planner.ts';
import type { Pod } from '../kube/types.ts';
import type { GpuClass, GpuOffer, Inventory } from './gpu-inventory.ts';
import { nodeAffinityAdmits } from './node-affinity.ts';
import { type Prediction, type Sizing, SizingError, type SizingRequest } from './tile-sizing.ts';
import { resourceToleration, type TolerationLike, untoleratedTaints } from './tolerations.ts';

/** GPUs in use per node and resource. */
export type GpuUsage = ReadonlyMap<string, ReadonlyMap<string, number>>;

export type Placement =
  | {
      kind: 'gpu';
      cls: GpuClass;
      tile: number;
      prediction?: Prediction;
      /** GPUs of the class not requested by the trainer pods the operator sees. */
      freeGpus: number;
      /** Trainer pods (each spec.resources.gpus GPUs on one node) that fit on those free GPUs now. */
      freePods: number;
      /** Trainer pods of the job (spec.resources.replicas). */
      pods?: number;
    }
  | { kind: 'cpu'; tile: number; budgetBytes: number; prediction?: Prediction }
  | {
      kind: 'unplaceable';
      reason: 'NoGPUNodes' | 'NoGPUWithSufficientMemory' | 'InvalidSpec';
      message: string;
    };

export interface PlacementInput {
  spec: StreamingTrainingJobSpec;
  inventory: Inventory;
  usage: GpuUsage;
  size: (req: SizingRequest) => Sizing;
  /** After an out-of-memory exit: no tile above this. */
  maxTile?: number;
}

const GiB = 2 ** 30;
/** The wasm backend's heap is 4 GB, of which the module keeps some (trainer/train/tile-choice.ts). */
const WASM_HEAP_BYTES = 3.5 * GiB;

/** GPUs requested (limits) by pods that hold them: bound and not finished. */
export function gpuUsage(pods: readonly Pod[]): Map<string, Map<string, number>> {
  const usage = new Map<string, Map<string, number>>();
  for (const pod of pods) {
    const node = pod.spec?.nodeName;
    const phase = pod.status?.phase;
    if (!node || phase === 'Succeeded' || phase === 'Failed') continue;
    for (const c of pod.spec?.containers ?? []) {
      for (const [res, q] of Object.entries(c.resources?.limits ?? {})) {
        if (!res.startsWith('nvidia.com/')) continue;
        const perNode = usage.get(node) ?? new Map<string, number>();
        perNode.set(res, (perNode.get(res) ?? 0) + Number(q));
        usage.set(node, perNode);
      }
    }
  }
  return usage;
}

/** Whether a pod of this spec may run on the offer's node: taints tolerated, nodeSelector and required node affinity met. */
export function admits(spec: StreamingTrainingJobSpec, offer: GpuOffer): boolean {
  const tolerations: TolerationLike[] = [
    ...(spec.resources.tolerations ?? []),
    resourceToleration(offer.resourceName),
  ];
  if (untoleratedTaints(offer.taints, tolerations).length > 0) return false;
  return (
    Object.entries(spec.resources.nodeSelector ?? {}).every(([k, v]) => offer.labels[k] === v) &&
    nodeAffinityAdmits(spec, offer.labels)
  );
}

export function freeGpus(cls: GpuClass, usage: GpuUsage, offers: readonly GpuOffer[] = cls.offers): number {
  return offers.reduce(
    (sum, o) => sum + Math.max(0, o.allocatable - (usage.get(o.node)?.get(o.resourceName) ?? 0)),
    0,
  );
}

/**
 * Trainer pods of `gpusPerPod` GPUs the offers hold: a pod's GPUs are on one node, so each node
 * holds floor(GPUs / gpusPerPod) of them; with `usage`, counted on the GPUs free now.
 */
export function podSlots(offers: readonly GpuOffer[], gpusPerPod: number, usage?: GpuUsage): number {
  const per = Math.max(gpusPerPod, 1);
  return offers.reduce((sum, o) => {
    const used = usage?.get(o.node)?.get(o.resourceName) ?? 0;
    return sum + Math.floor(Math.max(0, o.allocatable - used) / per);
  }, 0);
}

export function planPlacement(input: PlacementInput): Placement {
  try {
    return input.spec.resources.gpus === 0 ? placeOnCpu(input) : placeOnGpu(input);
  } catch (e) {
    if (e instanceof SizingError) return { kind: 'unplaceable', reason: 'InvalidSpec', message: e.message };
    throw e;
  }
}

/** What the planner is asked for a CPU job; a SizingError when the spec gives no budget. */
function cpuSizing(
  spec: StreamingTrainingJobSpec,
  maxTile?: number,
): SizingRequest & { budgetBytes: number } {
  const backend = spec.training.backend === 'cpu' ? 'cpu' : 'wasm';
  const memory = spec.resources.memory !== undefined ? parseQuantity(spec.resources.memory) : undefined;
  const budgetBytes = backend === 'wasm' ? Math.min(memory ?? WASM_HEAP_BYTES, WASM_HEAP_BYTES) : memory;
  if (budgetBytes === undefined) {
    throw new SizingError(
      'a CPU job (resources.gpus: 0) on the cpu backend needs spec.resources.memory to size its tile; set it, or set spec.streaming.tileSize',
    );
  }
  return { spec, budgetBytes, backend, ...(maxTile !== undefined && { maxTile }) };
}

function placeOnCpu({ spec, size, maxTile }: PlacementInput): Placement {
  const req = cpuSizing(spec, maxTile);
  const { budgetBytes, backend } = req;
  const s = size(req);
  if (!s.fits) {
    return {
      kind: 'unplaceable',
      reason: 'NoGPUWithSufficientMemory',
      message: `CPU job (${backend}, ${formatBytes(budgetBytes)}): ${s.reason}`,
    };
  }
  return { kind: 'cpu', tile: s.tile, budgetBytes, ...(s.prediction && { prediction: s.prediction }) };
}

interface Candidate {
  cls: GpuClass;
  free: number;
  freePods: number;
  sizing: Sizing;
}

/**
 * The classes a GPU job may run on: those whose nodes admit it and can hold all its pods at once
 * (spec.resources.replicas pods of spec.resources.gpus GPUs, each pod on one node: all ranks of a
 * job run on one class, so they get one tile), and of them those with at least minGpuMemory.
 * `tooSmall`: admitting classes without room for all the pods.
 */
function gpuClassesFor(spec: StreamingTrainingJobSpec, inventory: Inventory) {
  const replicas = spec.resources.replicas ?? 1;
  const admitting = inventory.classes
    .map((cls) => ({ cls, offers: cls.offers.filter((o) => admits(spec, o)) }))
    .filter((c) => c.offers.length > 0);
  const usable = admitting.filter((c) => podSlots(c.offers, spec.resources.gpus) >= replicas);
  const tooSmall = admitting.filter((c) => podSlots(c.offers, spec.resources.gpus) < replicas);
  const minMemory =
    spec.resources.minGpuMemory !== undefined ? parseQuantity(spec.resources.minGpuMemory) : 0;
  return { usable, tooSmall, minMemory, bigEnough: usable.filter((c) => c.cls.memoryBytes >= minMemory) };
}

/** What the planner is asked for one GPU class. */
function classSizing(spec: StreamingTrainingJobSpec, cls: GpuClass, maxTile?: number): SizingRequest {
  return {
    spec,
    budgetBytes: cls.memoryBytes,
    backend: 'tensorflow',
    ...(maxTile !== undefined && { maxTile }),
  };
}

/**
 * Every sizing planPlacement will ask `size` for, with the same `maxTile`: one per GPU class it
 * considers, or the CPU budget. The operator plans these off its event loop first (async-sizer.ts),
 * so that planPlacement, which is synchronous, only looks them up. None when the spec cannot be
 * placed before any sizing (no usable class, no CPU budget): planPlacement says why.
 */
export function sizingRequests(
  spec: StreamingTrainingJobSpec,
  inventory: Inventory,
  maxTile?: number,
): SizingRequest[] {
  if (spec.resources.gpus === 0) {
    try {
      return [cpuSizing(spec, maxTile)];
    } catch (e) {
      if (e instanceof SizingError) return [];
      throw e;
    }
  }
  return gpuClassesFor(spec, inventory).bigEnough.map(({ cls }) => classSizing(spec, cls, maxTile));
}

function placeOnGpu({ spec, inventory, usage, size, maxTile }: PlacementInput): Placement {
  const { usable, tooSmall, minMemory, bigEnough } = gpuClassesFor(spec, inventory);
  if (usable.length === 0 && tooSmall.length > 0) return noRoomForRanks(spec, tooSmall);
  if (usable.length === 0) return noGpuNodes(inventory);
  if (bigEnough.length === 0) {
    const largest = Math.max(...usable.map((c) => c.cls.memoryBytes));
    return {
      kind: 'unplaceable',
      reason: 'NoGPUWithSufficientMemory',
      message:
        `spec.resources.minGpuMemory is ${spec.resources.minGpuMemory} (${formatBytes(minMemory)}) but the largest ` +
        `usable GPU has ${formatBytes(largest)}; lower minGpuMemory or add a node with a larger GPU`,
    };
  }
  const replicas = spec.resources.replicas ?? 1;
  const candidates: Candidate[] = bigEnough.map(({ cls, offers }) => ({
    cls,
    free: freeGpus(cls, usage, offers),
    freePods: podSlots(offers, spec.resources.gpus, usage),
    sizing: size(classSizing(spec, cls, maxTile)),
  }));
  const fitting = candidates.filter((c) => c.sizing.fits);
  if (fitting.length === 0) return nothingFits(spec, candidates);
  // Classes with free GPUs for every pod now first (for one pod of one GPU: any free GPU).
  const pool = fitting.some((c) => c.freePods >= replicas)
    ? fitting.filter((c) => c.freePods >= replicas)
    : fitting;
  const best = pool.sort(byPreference)[0] as Candidate;
  const s = best.sizing as Extract<Sizing, { fits: true }>;
  return {
    kind: 'gpu',
    cls: best.cls,
    tile: s.tile,
    freeGpus: best.free,
    freePods: best.freePods,
    pods: replicas,
    ...(s.prediction && { prediction: s.prediction }),
  };
}

/** Larger tile first; on a tie the smaller GPU (or, with no prediction to trust, the larger one), then the name. */
function byPreference(a: Candidate, b: Candidate): number {
  const ta = (a.sizing as { tile: number }).tile;
  const tb = (b.sizing as { tile: number }).tile;
  if (ta !== tb) return tb - ta;
  const predicted = (a.sizing as { prediction?: unknown }).prediction !== undefined;
  const mem = predicted ? a.cls.memoryBytes - b.cls.memoryBytes : b.cls.memoryBytes - a.cls.memoryBytes;
  return mem || a.cls.name.localeCompare(b.cls.name);
}

function noRoomForRanks(
  spec: StreamingTrainingJobSpec,
  classes: readonly { cls: GpuClass; offers: GpuOffer[] }[],
): Placement {
  const { replicas = 1, gpus } = spec.resources;
  const room = classes
    .map((c) => `${c.cls.name} holds ${podSlots(c.offers, gpus)} on ${c.offers.length} node(s)`)
    .join(', ');
  return {
    kind: 'unplaceable',
    reason: 'NoGPUNodes',
    message:
      `the job needs ${replicas} trainer pod(s) of ${gpus} GPU(s) each on one GPU class (each pod's GPUs on one ` +
      `node), and no class that admits it has room for all of them even when idle (${room}); lower ` +
      'spec.resources.replicas or gpus, or add GPU nodes',
  };
}

function noGpuNodes(inventory: Inventory): Placement {
  const offers = inventory.classes.reduce((n, c) => n + c.offers.length, 0);
  const parts: string[] = [];
  if (offers > 0) {
    parts.push(
      `${offers} GPU node offer(s) exist but none admits this job (untolerated taints, spec.resources.nodeSelector ` +
        'or the required terms of spec.pod.nodeAffinity); add tolerations or relax the nodeSelector or node affinity',
    );
  } else parts.push('no Ready, schedulable node offers nvidia.com/gpu with a known memory size');
  for (const x of inventory.excluded.slice(0, 5)) parts.push(`${x.node}: ${x.reason}`);
  if (inventory.excluded.length > 5) parts.push(`and ${inventory.excluded.length - 5} more excluded node(s)`);
  return { kind: 'unplaceable', reason: 'NoGPUNodes', message: parts.join('; ') };
}

function nothingFits(spec: StreamingTrainingJobSpec, candidates: readonly Candidate[]): Placement {
  const largest = [...candidates].sort((a, b) => b.cls.memoryBytes - a.cls.memoryBytes)[0] as Candidate;
  const s = largest.sizing as Extract<Sizing, { fits: false }>;
  const headroom = spec.streaming.memoryHeadroom;
  const needed = s.needsBytes / (1 - headroom);
  const tile =
    typeof spec.streaming.tileSize === 'number'
      ? `the tile spec.streaming.tileSize=${spec.streaming.tileSize}`
      : `the minimum tile (${s.smallestTile} px)`;
  return {
    kind: 'unplaceable',
    reason: 'NoGPUWithSufficientMemory',
    message:
      `${tile} needs ${formatBytes(s.needsBytes)}; the largest GPU (${largest.cls.product}, class ${largest.cls.name}) ` +
      `has ${formatBytes(largest.cls.memoryBytes)}, ${formatBytes(largest.cls.memoryBytes * (1 - headroom))} usable ` +
      `after ${Math.round(headroom * 100)}% headroom. ${s.reason}. Lower spec.streaming.minTileSize or ` +
      `memoryHeadroom, or add a node with at least ${formatBytes(needed)} of GPU memory`,
  };
}
