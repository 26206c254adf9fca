// Each rank's output, labelled with its rank as the launcher passes it on: a JSON log line gets a
// "rank" field (it stays one JSON object per line for log collectors), any other line a "[rank r] "
// prefix. Pure, so the launcher's streams and the tests share it.

import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

export function labelLine(line: string, rank: number): string {
  if (line.startsWith('{') && line.endsWith('}')) {
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        return JSON.stringify({ rank, ...(value as Record<string, unknown>) });
      }
    } catch {
      // Not JSON after all: prefixed like any other line.
    }
  }
  return `[rank ${rank}] ${line}`;
}

/** Copies `from` to `to` line by line, labelled; resolves when `from` ends. */
export function pipeLabelled(from: Readable, to: Writable, rank: number): Promise<void> {
  const lines = createInterface({ input: from, crlfDelay: Number.POSITIVE_INFINITY });
  lines.on('line', (line) => {
    to.write(`${labelLine(line, rank)}\n`);
  });
  return new Promise((resolve) => lines.once('close', () => resolve()));
}
