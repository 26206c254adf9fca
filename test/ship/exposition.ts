// Reads Prometheus text exposition (what /metrics serves) into metric families and sample names, and
// says whether a name used in a query is exported: a family itself, or a histogram's/summary's
// _bucket/_sum/_count series.

export interface Exposition {
  /** Family name → type from `# TYPE` lines (declared even when it has no samples yet). */
  families: Map<string, string>;
  /** Names of the sample lines. */
  samples: Set<string>;
  /** Sample lines, for label checks. */
  lines: string[];
}

export function parseExposition(text: string): Exposition {
  const families = new Map<string, string>();
  const samples = new Set<string>();
  const lines: string[] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)\s*$/.exec(line);
    if (type) families.set(type[1] as string, type[2] as string);
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!name) throw new Error(`not an exposition sample line: ${line}`);
    samples.add(name[0]);
    lines.push(line);
  }
  return { families, samples, lines };
}

/** Merges expositions (operator and trainer) into one. */
export function unionOf(...parts: Exposition[]): Exposition {
  return {
    families: new Map(parts.flatMap((p) => [...p.families])),
    samples: new Set(parts.flatMap((p) => [...p.samples])),
    lines: parts.flatMap((p) => p.lines),
  };
}

const SERIES_SUFFIX = /^(.*)_(bucket|sum|count)$/;

/** The family a series name belongs to, if the exposition declares it. */
export function familyOf(e: Exposition, name: string): string | undefined {
  if (e.families.has(name)) return name;
  const m = SERIES_SUFFIX.exec(name);
  if (!m) return undefined;
  const type = e.families.get(m[1] as string);
  if (type === 'histogram' || (type === 'summary' && m[2] !== 'bucket')) return m[1];
  return undefined;
}
