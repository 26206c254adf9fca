// The job's required node affinity (spec.pod.nodeAffinity) evaluated on a node's labels, so that
// placement only picks a GPU class whose nodes the scheduler would accept. Pure.

import type { NodeSelectorTerm, StreamingTrainingJobSpec } from '../../crds/index.ts';

/** A node with these labels meets the term (core/v1 NodeSelectorRequirement semantics). */
function termMatches(term: NodeSelectorTerm, labels: Record<string, string>): boolean {
  return term.matchExpressions.every((e) => {
    const v = labels[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        return v !== undefined && values.includes(v);
      case 'NotIn':
        return v === undefined || !values.includes(v);
      case 'Exists':
        return v !== undefined;
      case 'DoesNotExist':
        return v === undefined;
      case 'Gt':
      case 'Lt': {
        // The API server parses both as int64; a label that is no integer matches neither.
        if (v === undefined || !/^-?\d+$/.test(v)) return false;
        const [n, bound] = [Number(v), Number(values[0])];
        return e.operator === 'Gt' ? n > bound : n < bound;
      }
    }
    return false;
  });
}

/** Whether a node with these labels meets the job's required node affinity (placement filters on it). */
export function nodeAffinityAdmits(spec: StreamingTrainingJobSpec, labels: Record<string, string>): boolean {
  const terms = spec.pod?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  return terms === undefined || terms.length === 0 || terms.some((t) => termMatches(t, labels));
}
