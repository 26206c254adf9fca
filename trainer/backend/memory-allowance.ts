// How much memory this process may use: the machine's RAM capped by the memory limit of its cgroup
// and every ancestor (a pod's memory limit lands there as memory.max on cgroup v2,
// memory.limit_in_bytes on v1). Used where the backend cannot report running out cleanly — on
// TensorFlow's CPU build, oneDNN convolutions crash on a failed allocation instead of raising
// "OOM when allocating" — so the planner's prediction is checked against it before training.
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { type Read, readOrUndefined, tightestCgroupLimit } from './cgroup.ts';

/** A cgroup memory limit in bytes, undefined when unlimited ("max", or v1's page-rounded 2^63). */
export function parseMemoryLimit(text: string): number | undefined {
  const t = text.trim();
  if (t === 'max' || t === '') return undefined;
  const v = Number(t);
  return Number.isFinite(v) && v > 0 && v < 2 ** 60 ? v : undefined;
}

/** The tightest memory limit from this process's cgroup up to the root, or undefined. */
export function cgroupMemoryLimit(read: Read = readOrUndefined, root = '/sys/fs/cgroup'): number | undefined {
  const file = (name: string) => (dir: string) => {
    const t = read(join(dir, name));
    return t === undefined ? undefined : parseMemoryLimit(t);
  };
  return tightestCgroupLimit(
    {
      v2: file('memory.max'),
      v1: file('memory.limit_in_bytes'),
      v1Controller: 'memory',
      v1Mounts: ['memory'],
    },
    read,
    root,
  );
}

/** Bytes this process may use, and where the figure comes from. */
export function memoryAllowance(
  read: Read = readOrUndefined,
  ram = totalmem(),
): { bytes: number; source: string } {
  const limit = cgroupMemoryLimit(read);
  return limit !== undefined && limit < ram
    ? { bytes: limit, source: 'the cgroup memory limit' }
    : { bytes: ram, source: 'the machine RAM' };
}
