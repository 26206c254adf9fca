// Taints against tolerations, as the scheduler's TaintToleration filter decides (k8s.io/api
// core/v1 toleration.go ToleratesTaint). Pure.

import type { Taint } from '../kube/types.ts';

export interface TolerationLike {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

export function tolerates(t: TolerationLike, taint: Taint): boolean {
  if (t.effect !== undefined && t.effect !== taint.effect) return false;
  // An empty key with Exists tolerates every taint.
  if ((t.key ?? '') !== '' && t.key !== taint.key) return false;
  if ((t.operator ?? 'Equal') === 'Exists') return true;
  return (t.value ?? '') === (taint.value ?? '');
}

/** Taints that keep a pod with these tolerations off the node (PreferNoSchedule only prefers). */
export function untoleratedTaints(taints: readonly Taint[], tolerations: readonly TolerationLike[]): Taint[] {
  return taints.filter(
    (taint) => taint.effect !== 'PreferNoSchedule' && !tolerations.some((t) => tolerates(t, taint)),
  );
}

/**
 * The toleration the ExtendedResourceToleration admission plugin adds to pods that request an
 * extended resource such as nvidia.com/gpu; the trainer Job carries it explicitly, so GPU nodes
 * tainted that way are usable whether or not the plugin is on.
 */
export function resourceToleration(resourceName: string): TolerationLike {
  return { key: resourceName, operator: 'Exists', effect: 'NoSchedule' };
}
