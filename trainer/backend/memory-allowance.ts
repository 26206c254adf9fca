// How much memory this process may use: the machine's RAM capped by the memory limit of its cgroup
// and every ancestor (a pod's memory limit lands there as memory.max on cgroup v2,
// memory.limit_in_bytes on v1). Used where the backend cannot report running out cleanly — on
// TensorFlow's CPU build, oneDNN convolutions crash on a failed allocation instead of raising
// "OOM when allocating" — so the planner's prediction is checked against it before training.
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';

type Read = (path: string) => string | undefined;

const readOrUndefined: Read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** A cgroup memory limit in bytes, undefined when unlimited ("max", or v1's page-rounded 2^63). */
export function parseMemoryLimit(text: string): number | undefined {
  const t = text.trim();
  if (t === 'max' || t === '') return undefined;
  const v = Number(t);
  return Number.isFinite(v) && v > 0 && v < 2 ** 60 ? v : undefined;
}

/** The tightest memory limit from this process's cgroup up to the root, or undefined. */
export function cgroupMemoryLimit(read: Read = readOrUndefined, root = '/sys/fs/cgroup'): number | undefined {
  let limit: number | undefined;
  for (const line of (read('/proc/self/cgroup') ?? '').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (path === undefined || controllers === undefined) continue;
    const [file, mount] =
      controllers === ''
        ? ['memory.max', root]
        : controllers.split(',').includes('memory')
          ? ['memory.limit_in_bytes', join(root, 'memory')]
          : [undefined, undefined];
    if (file === undefined || mount === undefined) continue;
    const parts = path.split('/').filter((p) => p !== '');
    for (let i = parts.length; i >= 0; i--) {
      const text = read(join(mount, ...parts.slice(0, i), file));
      const v = text === undefined ? undefined : parseMemoryLimit(text);
      if (v !== undefined && (limit === undefined || v < limit)) limit = v;
    }
  }
  return limit;
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
