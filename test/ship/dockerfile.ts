// A small Dockerfile reader for the ship tests: instructions with line continuations joined,
// stages with their base image (ARG defaults substituted). Pure: text in, structure out.

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

export interface Stage {
  name: string | undefined;
  /** The base as written, e.g. `node:${NODE_VERSION}-bookworm-slim`. */
  from: string;
  /** The base with global ARG defaults substituted. */
  image: string;
  instructions: Instruction[];
}

export function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let current = lines[i] ?? '';
    if (/^\s*(#|$)/.test(current)) continue;
    while (/\\\s*$/.test(current) && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      // comment lines inside a continuation are dropped by Docker's parser
      if (/^\s*#/.test(next)) {
        current = `${current.replace(/\\\s*$/, '')}\\`;
        continue;
      }
      current = `${current.replace(/\\\s*$/, ' ')}${next.trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(current);
    if (!m?.[1]) throw new Error(`Dockerfile line ${start + 1}: cannot parse '${current}'`);
    out.push({ keyword: m[1].toUpperCase(), args: (m[2] ?? '').trim(), line: start + 1 });
  }
  return out;
}

function substitute(value: string, args: ReadonlyMap<string, string>): string {
  return value.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (whole, name: string) => args.get(name) ?? whole);
}

export function parseStages(text: string): Stage[] {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of parseInstructions(text)) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m?.[1]) throw new Error(`Dockerfile line ${ins.line}: cannot parse FROM '${ins.args}'`);
      stages.push({ name: m[2], from: m[1], image: substitute(m[1], globalArgs), instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) {
      if (ins.keyword === 'ARG') {
        const [name, value] = ins.args.split('=', 2);
        if (name && value !== undefined) globalArgs.set(name.trim(), value.trim());
      }
      continue;
    }
    stage.instructions.push(ins);
  }
  return stages;
}

/**
 * Why `image` is not pinned, or undefined when it is: a digest, or a tag that names a version
 * (a digit in it), not `latest` and not a bare major like `24`.
 */
export function unpinnedReason(image: string, stageNames: ReadonlySet<string>): string | undefined {
  if (stageNames.has(image)) return undefined;
  if (/\$/.test(image)) return `'${image}' has an unresolved variable`;
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return undefined;
  const slash = image.lastIndexOf('/');
  const colon = image.indexOf(':', slash + 1);
  if (colon < 0) return `'${image}' has no tag (means latest)`;
  const tag = image.slice(colon + 1);
  if (/^latest$/i.test(tag)) return `'${image}' uses latest`;
  if (!/^v?\d+\.\d+/.test(tag)) return `'${image}' tag '${tag}' is not a major.minor version`;
  return undefined;
}
