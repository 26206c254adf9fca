// Reading a limit of this process's cgroups (v2 unified, or the v1 controller's own hierarchy),
// tightest from its own folder up to the root: a pod's limit sits in one of the ancestors of the
// container's cgroup, or in the container's own folder under a cgroup namespace.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Reads a file, or undefined when it does not exist; injectable for tests. */
export type Read = (path: string) => string | undefined;

export const readOrUndefined: Read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/** The folders from a cgroup's own up to the hierarchy root. */
function upToRoot(mount: string, cgroupPath: string): string[] {
  const parts = cgroupPath.split('/').filter((s) => s !== '');
  const dirs: string[] = [];
  for (let i = parts.length; i >= 0; i--) dirs.push(join(mount, ...parts.slice(0, i)));
  return dirs;
}

export interface CgroupLimitReader {
  /** The limit in one folder of the unified (v2) hierarchy, undefined when none. */
  v2: (dir: string) => number | undefined;
  /** The v1 controller whose hierarchy holds the limit, and its possible mount folder names. */
  v1Controller: string;
  v1Mounts: readonly string[];
  v1: (dir: string) => number | undefined;
}

/** The smallest limit found on the way from each of this process's cgroups to the root, or undefined. */
export function tightestCgroupLimit(
  limit: CgroupLimitReader,
  read: Read = readOrUndefined,
  root = '/sys/fs/cgroup',
): number | undefined {
  let tightest: number | undefined;
  const tighten = (v: number | undefined): void => {
    if (v !== undefined && (tightest === undefined || v < tightest)) tightest = v;
  };
  for (const line of (read('/proc/self/cgroup') ?? '').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (path === undefined || controllers === undefined) continue;
    if (controllers === '') {
      for (const dir of upToRoot(root, path)) tighten(limit.v2(dir));
    } else if (controllers.split(',').includes(limit.v1Controller)) {
      for (const mount of limit.v1Mounts) {
        for (const dir of upToRoot(join(root, mount), path)) tighten(limit.v1(dir));
      }
    }
  }
  return tightest;
}
