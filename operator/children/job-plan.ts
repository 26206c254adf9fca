// The plan of one trainer Job: what placement decided, in the form stored on the Job (annotation)
// and shown in status.plan. Pure.

import type { PlanStatus } from '../../crds/index.ts';
import type { LabelRequirement } from '../cluster/gpu-inventory.ts';
import type { Placement } from '../cluster/placement.ts';

export interface JobPlan {
  tileSize: number;
  /** GPU placements only. */
  gpuClass?: string;
  gpuProduct?: string;
  gpuMemoryBytes?: number;
  resourceName?: string;
  selector?: LabelRequirement[];
  /** CPU placements: the memory budget planned for. */
  budgetBytes?: number;
  predictedPeakStreamedBytes?: number;
  predictedPeakConventionalBytes?: number;
  savingsRatio?: number;
  overheadFactor?: number;
}

export function jobPlanOf(p: Exclude<Placement, { kind: 'unplaceable' }>): JobPlan {
  const predicted = p.prediction && {
    predictedPeakStreamedBytes: p.prediction.streamedBytes,
    predictedPeakConventionalBytes: p.prediction.conventionalBytes,
    savingsRatio: round(p.prediction.savingsRatio, 4),
    overheadFactor: round(p.prediction.overheadFactor, 3),
  };
  if (p.kind === 'cpu') return { tileSize: p.tile, budgetBytes: p.budgetBytes, ...predicted };
  return {
    tileSize: p.tile,
    gpuClass: p.cls.name,
    gpuProduct: p.cls.product,
    gpuMemoryBytes: p.cls.memoryBytes,
    resourceName: p.cls.resourceName,
    selector: p.cls.selector,
    ...predicted,
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Bytes as a Kubernetes-style quantity with one decimal: 46.2Gi, 512.0Mi. */
export function formatQuantity(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? String(Math.round(v)) : `${v.toFixed(1)}${units[u]}`;
}

/** status.plan, as printed by `kubectl get stj` (Tile, GPU, Saved). */
export function planStatus(plan: JobPlan): PlanStatus {
  const saved =
    plan.predictedPeakConventionalBytes !== undefined && plan.predictedPeakStreamedBytes !== undefined
      ? Math.max(0, plan.predictedPeakConventionalBytes - plan.predictedPeakStreamedBytes)
      : undefined;
  return {
    tileSize: plan.tileSize,
    ...(plan.gpuClass !== undefined && { gpuClass: plan.gpuClass }),
    ...(plan.gpuProduct !== undefined && { gpuProduct: plan.gpuProduct }),
    ...(plan.gpuMemoryBytes !== undefined && { gpuMemoryBytes: plan.gpuMemoryBytes }),
    ...(plan.predictedPeakStreamedBytes !== undefined && {
      predictedPeakStreamedBytes: plan.predictedPeakStreamedBytes,
    }),
    ...(plan.predictedPeakConventionalBytes !== undefined && {
      predictedPeakConventionalBytes: plan.predictedPeakConventionalBytes,
    }),
    ...(plan.savingsRatio !== undefined && { savingsRatio: plan.savingsRatio }),
    ...(saved !== undefined &&
      plan.savingsRatio !== undefined && {
        memorySaved: `${formatQuantity(saved)} (${Math.round(plan.savingsRatio * 100)}%)`,
      }),
    ...(plan.overheadFactor !== undefined && { overheadFactor: plan.overheadFactor }),
  };
}

/** Reads the plan annotation of a trainer Job; undefined when missing or not a plan. */
export function parseJobPlan(text: string | undefined): JobPlan | undefined {
  if (text === undefined) return undefined;
  try {
    const p = JSON.parse(text) as JobPlan;
    return typeof p === 'object' && p !== null && Number.isInteger(p.tileSize) ? p : undefined;
  } catch {
    return undefined;
  }
}
