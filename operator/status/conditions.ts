// metav1.Condition bookkeeping (apimachinery meta.SetStatusCondition): reason, message and
// observedGeneration always follow the newest state, lastTransitionTime moves only when the status
// flips. Pure; time comes in as an argument.

import type { Condition, ConditionReason, ConditionType } from '../../crds/index.ts';

export interface ConditionUpdate {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: ConditionReason;
  message: string;
}

/** The schema allows 32 KiB; a condition message is for people, so keep it readable. */
const MESSAGE_MAX = 4096;

/** Kubernetes Time: RFC 3339, whole seconds. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Milliseconds of an RFC 3339 time, or undefined when the text is not one (Date.parse alone
 * accepts other, implementation-defined forms, and gives NaN for the rest).
 */
export function parseTime(text: string | undefined): number | undefined {
  if (text === undefined || !RFC3339.test(text.toUpperCase())) return undefined;
  const ms = Date.parse(text.toUpperCase());
  return Number.isFinite(ms) ? ms : undefined;
}

export function truncate(message: string, max = MESSAGE_MAX): string {
  return message.length <= max ? message : `${message.slice(0, max - 14)}… (truncated)`;
}

export function setCondition(
  conditions: readonly Condition[],
  update: ConditionUpdate,
  generation: number,
  now: number,
): Condition[] {
  const existing = conditions.find((c) => c.type === update.type);
  const next: Condition = {
    type: update.type,
    status: update.status,
    reason: update.reason,
    message: truncate(update.message),
    observedGeneration: generation,
    lastTransitionTime:
      existing && existing.status === update.status ? existing.lastTransitionTime : rfc3339(now),
  };
  const others = conditions.filter((c) => c.type !== update.type);
  return sortConditions([...others, next]);
}

/** The conditions in a stable order, so that equal condition sets compare equal. */
export function sortConditions(conditions: readonly Condition[]): Condition[] {
  return [...conditions].sort((a, b) => CONDITION_ORDER.indexOf(a.type) - CONDITION_ORDER.indexOf(b.type));
}

/** A stable order, so that equal condition sets compare equal. */
const CONDITION_ORDER: readonly string[] = [
  'Planned',
  'Running',
  'Suspended',
  'SpecApplied',
  'Succeeded',
  'Failed',
];

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: ConditionType,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: ConditionType): boolean {
  return findCondition(conditions, type)?.status === 'True';
}
