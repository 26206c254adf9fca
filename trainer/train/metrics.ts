// Validation metrics: accuracy and ROC AUC (Mann–Whitney U with ties counted as one half).

/** ROC AUC of scores for binary labels (1 = positive). NaN when one class is absent or a score is NaN. */
export function rocAuc(scores: readonly number[], labels: readonly number[]): number {
  // A diverged model scores NaN; NaN equals nothing, so the tie loop below would never advance.
  if (scores.some(Number.isNaN)) return Number.NaN;
  const items = scores.map((s, i) => ({ s, y: labels[i] === 1 ? 1 : 0 })).sort((a, b) => a.s - b.s);
  const positives = items.filter((it) => it.y === 1).length;
  const negatives = items.length - positives;
  if (positives === 0 || negatives === 0) return Number.NaN;
  // Rank sum of the positives, with average ranks for ties.
  let rankSum = 0;
  for (let i = 0; i < items.length; ) {
    let j = i;
    while (j < items.length && (items[j] as { s: number }).s === (items[i] as { s: number }).s) j++;
    const avgRank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) if ((items[k] as { y: number }).y === 1) rankSum += avgRank;
    i = j;
  }
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

export function accuracy(predicted: readonly number[], labels: readonly number[]): number {
  if (predicted.length === 0) return Number.NaN;
  let right = 0;
  for (let i = 0; i < predicted.length; i++) if (predicted[i] === labels[i]) right++;
  return right / predicted.length;
}
