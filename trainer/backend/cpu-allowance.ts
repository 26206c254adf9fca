// How many CPUs this process may use: the CPU affinity (os.availableParallelism) capped by the CFS
// quota of its cgroup and every ancestor (a pod's CPU limit lands there as cpu.max on cgroup v2,
// cpu.cfs_quota_us on v1). A 4-CPU limit on a 64-core node must give 4 compute threads, not 64:
// more threads than quota only adds throttling.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { type Read, readOrUndefined, tightestCgroupLimit } from './cgroup.ts';

export interface CpuAllowance {
  /** Whole CPUs to size thread pools with (at least 1). */
  cpus: number;
  /** Where the figure comes from, for the log. */
  source: string;
}

/** cgroup v2 cpu.max ("max 100000" or "250000 100000") as CPUs, undefined when unlimited. */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return undefined;
  const q = Number(quota);
  const p = Number(period ?? '100000');
  return q > 0 && p > 0 ? q / p : undefined;
}

/** cgroup v1 cfs quota/period in microseconds as CPUs, undefined when unlimited (-1). */
export function parseCfsQuota(quotaText: string, periodText: string): number | undefined {
  const q = Number(quotaText.trim());
  const p = Number(periodText.trim());
  return q > 0 && p > 0 ? q / p : undefined;
}

/**
 * The smallest CFS quota on the way from this process's cgroup to the root, in CPUs (fractional),
 * or undefined when none is set. `read` is injectable for tests.
 */
export function cgroupCpuQuota(read: Read = readOrUndefined, root = '/sys/fs/cgroup'): number | undefined {
  const v2 = (dir: string): number | undefined => {
    const t = read(join(dir, 'cpu.max')); // the root has none
    return t === undefined ? undefined : parseCpuMax(t);
  };
  const v1 = (dir: string): number | undefined => {
    const q = read(join(dir, 'cpu.cfs_quota_us'));
    const p = read(join(dir, 'cpu.cfs_period_us'));
    return q === undefined || p === undefined ? undefined : parseCfsQuota(q, p);
  };
  return tightestCgroupLimit({ v2, v1, v1Controller: 'cpu', v1Mounts: ['cpu', 'cpu,cpuacct'] }, read, root);
}

/** CPUs this process may use; a fractional quota rounds up (1.5 CPUs → 2 threads, throttled to 1.5). */
export function cpuAllowance(read: Read = readOrUndefined, affinity = availableParallelism()): CpuAllowance {
  const quota = cgroupCpuQuota(read);
  if (quota !== undefined && Math.ceil(quota) < affinity) {
    return { cpus: Math.max(1, Math.ceil(quota)), source: `cgroup CPU quota ${quota.toFixed(2)}` };
  }
  return { cpus: affinity, source: `CPU affinity (${affinity} CPUs)` };
}
