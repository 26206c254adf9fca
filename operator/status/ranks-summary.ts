// status.distributed of a data-parallel job: how many of its ranks run (from its pods) and, from
// the entries its ranks report in status.ranks, the job's throughput (their sum) and the slowest
// rank, which every all-reduce waits for. Only entries reported during the current attempt count:
// an entry of a rank that has not reported since the attempt started describes an earlier one.
// Pure.

import type { DistributedStatus, RankStatus, StreamingTrainingJob } from '../../crds/index.ts';
import { rankLayout } from '../children/ranks.ts';
import { parseTime } from './conditions.ts';

export interface RanksSummary {
  status: DistributedStatus;
  /** The status.ranks entries the summary counted. */
  counted: RankStatus[];
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/**
 * The summary for a job of more than one rank (undefined otherwise). `attemptStart`: when the current
 * attempt's Job was created; `runningPods`: its pods running now.
 */
export function ranksSummary(
  stj: StreamingTrainingJob,
  attemptStart: string | undefined,
  runningPods: number,
): RanksSummary | undefined {
  const layout = rankLayout(stj.spec);
  if (layout.worldSize <= 1) return undefined;
  const since = parseTime(attemptStart);
  const counted = (stj.status?.ranks ?? [])
    .filter((r) => r.rank < layout.worldSize)
    .filter((r) => since === undefined || (parseTime(r.lastReportTime) ?? -Infinity) >= since)
    .sort((a, b) => a.rank - b.rank);
  const measured = counted.filter(
    (r): r is RankStatus & { imagesPerSecond: number } =>
      typeof r.imagesPerSecond === 'number' && Number.isFinite(r.imagesPerSecond),
  );
  const status: DistributedStatus = {
    worldSize: layout.worldSize,
    replicas: layout.replicas,
    ranksReporting: counted.length,
    ranks: `${Math.min(runningPods, layout.replicas) * layout.ranksPerReplica}/${layout.worldSize}`,
  };
  if (measured.length > 0) {
    status.imagesPerSecond = round(measured.reduce((sum, r) => sum + r.imagesPerSecond, 0));
    // Lowest throughput; on a tie the lower rank.
    const slow = measured.reduce((a, b) => (b.imagesPerSecond < a.imagesPerSecond ? b : a));
    status.slowestRank = slow.rank;
    status.slowestRankImagesPerSecond = round(slow.imagesPerSecond);
    if (slow.pod !== undefined) status.slowestRankPod = slow.pod;
  }
  return { status, counted };
}
