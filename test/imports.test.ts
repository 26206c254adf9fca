// The import rules of the layout (DESIGN.md §2), checked on the sources: crds ← trainer ← operator;
// commands are wired only by the CLI entry; the planner stands apart from its measurements; the
// operator loads no TensorFlow and no commander; no import cycles. Imports are read with
// test/import-graph.ts: static imports and `export … from` always count; `import type` counts for
// the layout rules and cycles but not for what a module loads (it is erased); `import('literal')`
// counts everywhere (it loads that module when the line runs). A computed `import(name)` is not seen.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  buildGraph,
  findCycles,
  type ImportEdge,
  loadedBy,
  parseImports,
  sourceFiles,
} from './import-graph.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const files = sourceFiles(root, ['bin', 'crds', 'helm', 'operator', 'trainer', 'test']);
const graph = buildGraph(root, files);

/** Every import, as `importer:line → specifier`, where keep says so. */
function imports(keep: (from: string, e: ImportEdge) => boolean): string[] {
  const out: string[] = [];
  for (const [from, edges] of graph) {
    for (const e of edges) if (keep(from, e)) out.push(`${from}:${e.line} → ${e.specifier}`);
  }
  return out;
}

const under = (dir: string) => (path: string | undefined) => path?.startsWith(`${dir}/`) === true;

/** A command module: `cli.ts` or `<name>-cli.ts` (registers subcommands, loads commander). */
const isCommand = (path: string | undefined) => path !== undefined && /(^|\/)([\w-]+-)?cli\.ts$/.test(path);

/**
 * Who may import a command: the CLI entry, i.e. bin/ (the `tilestream` program, assembling both
 * halves), and each half's command root for its own subcommands (trainer/cli.ts for trainer/,
 * operator/cli.ts for operator/). Tests may too: they run a command as a user would.
 */
function mayImportCommand(from: string, target: string): boolean {
  if (under('bin')(from) || under('test')(from)) return true;
  if (from === 'trainer/cli.ts') return under('trainer')(target);
  if (from === 'operator/cli.ts') return under('operator')(target);
  return false;
}

describe('the import parser', () => {
  const edges = (text: string) =>
    parseImports(root, `${root}trainer/x.ts`, text).map((e) => [e.kind, e.target ?? e.external]);

  it('reads static, type-only, re-export, side-effect and literal dynamic imports', () => {
    const text = [
      "import { a } from './a.ts';",
      "import type { B } from './b.ts';",
      "import { type C } from './c.ts';",
      "import d, * as e from '@tensorflow/tfjs-core/dist/x.js';",
      "export { f } from '../f.ts';",
      "export type { G } from './g.ts';",
      "export * from 'commander';",
      "import 'node:fs';",
      'const m = await import(`./m.ts`);',
      "if (x) await import('./n.ts');",
    ].join('\n');
    assert.deepEqual(edges(text), [
      ['static', 'trainer/a.ts'],
      ['type', 'trainer/b.ts'],
      ['static', 'trainer/c.ts'], // `{ type C }` still loads c.ts (an empty import remains)
      ['static', '@tensorflow/tfjs-core'],
      ['static', 'f.ts'],
      ['type', 'trainer/g.ts'],
      ['static', 'commander'],
      ['static', 'node:fs'],
      ['dynamic', 'trainer/m.ts'],
      ['dynamic', 'trainer/n.ts'],
    ]);
  });

  it('ignores imports in strings, templates and comments, and computed specifiers', () => {
    const text = [
      "// import { a } from './a.ts';",
      "/* await import('./b.ts') */",
      'const s = "import x from \'./c.ts\'";',
      "const script = `await import('./d.ts')`;",
      'const e = await import(name);',
      "const re = /import\\('.\\/f.ts'\\)/;",
    ].join('\n');
    assert.deepEqual(edges(text), []);
  });
});

describe('import rules', () => {
  it('every relative import names a file of the repository (else the rules below would miss it)', () => {
    assert.deepEqual(
      imports((_, e) => e.target !== undefined && !graph.has(e.target) && !existsSync(root + e.target)),
      [],
    );
  });

  it('crds/ imports only crds/, node: built-ins and yaml (crds ← trainer ← operator)', () => {
    const allowed = (e: ImportEdge) =>
      e.target !== undefined
        ? under('crds')(e.target)
        : e.external?.startsWith('node:') || e.external === 'yaml';
    assert.deepEqual(
      imports((from, e) => under('crds')(from) && !allowed(e)),
      [],
    );
  });

  it('trainer/ imports nothing from operator/ (a trainer pod loads no controller code)', () => {
    assert.deepEqual(
      imports((from, e) => under('trainer')(from) && under('operator')(e.target)),
      [],
    );
  });

  it('a command module (cli.ts, *-cli.ts) is imported only by the CLI entry and tests', () => {
    assert.deepEqual(
      imports((from, e) => isCommand(e.target) && !mayImportCommand(from, e.target as string)),
      [],
    );
  });

  it('trainer/plan/ never imports trainer/plan-measure/ (the measurements use the planner, not back)', () => {
    assert.deepEqual(
      imports((from, e) => under('trainer/plan')(from) && under('trainer/plan-measure')(e.target)),
      [],
    );
  });

  it('the operator (all but its command, operator/cli.ts) loads no @tensorflow/* and no commander', () => {
    const offending: string[] = [];
    for (const file of files) {
      if (!under('operator')(file) || file === 'operator/cli.ts') continue;
      for (const [loaded, chain] of loadedBy(graph, file)) {
        if (loaded.startsWith('@tensorflow/') || loaded === 'commander') offending.push(chain.join(' → '));
      }
    }
    assert.deepEqual(offending, []);
  });

  it('trainer/plan/ loads no @tensorflow/* (the operator runs the planner)', () => {
    const offending: string[] = [];
    for (const file of files) {
      if (!under('trainer/plan')(file)) continue;
      for (const [loaded, chain] of loadedBy(graph, file)) {
        if (loaded.startsWith('@tensorflow/')) offending.push(chain.join(' → '));
      }
    }
    assert.deepEqual(offending, []);
  });

  it('no import cycles anywhere (static, type-only or dynamic imports)', () => {
    assert.deepEqual(
      findCycles(graph).map((c) => c.join(' → ')),
      [],
    );
  });
});
