// Small measuring helpers for the benchmarks: a process's memory from /proc, Prometheus text
// sums, percentiles. Pure except readProcMemory.

import { readFileSync } from 'node:fs';

export interface ProcMemory {
  /** Resident set size now (VmRSS). */
  rssBytes: number;
  /** Peak resident set size over the process's life (VmHWM, the high-water mark). */
  peakRssBytes: number;
}

/** VmRSS and VmHWM of a /proc/<pid>/status text (values in kB). */
export function parseProcStatus(text: string): ProcMemory {
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(text);
    if (!m) throw new Error(`/proc status has no ${field} line (not Linux, or the process is a zombie)`);
    return Number(m[1]) * 1024;
  };
  return { rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

/** The memory of a live process; undefined when /proc has no entry (exited, or not Linux). */
export function readProcMemory(pid: number): ProcMemory | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStatus(text);
}

/**
 * User + system CPU seconds of a /proc/<pid>/stat text. Fields 14 and 15 count clock ticks
 * (USER_HZ, 100 on Linux); the command name in parentheses may hold spaces, so count after it.
 */
export function parseProcStatCpuSeconds(text: string, ticksPerSecond = 100): number {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`/proc stat text has no utime/stime fields: ${text.slice(0, 120)}`);
  }
  return (utime + stime) / ticksPerSecond;
}

export function readProcCpuSeconds(pid: number): number | undefined {
  try {
    return parseProcStatCpuSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Sum of the samples of metric `name` in a Prometheus text exposition whose labels include all
 * of `labels`; 0 when there is none (a counter never incremented has no sample).
 */
export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      have.set(l[1] as string, l[2] as string);
    }
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[4]);
  }
  return sum;
}

/** Nearest-rank percentile (p in [0, 100]) of a non-empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export const MiB = 2 ** 20;
// `+ 0` turns -0 (a tiny negative rounded) into 0, which JSON would otherwise print as 0 and read back unequal.
export const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits + 0;
