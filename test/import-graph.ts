// The repository's module graph, read from the sources (for test/imports.test.ts). Parsed with the
// TypeScript compiler's parser, so imports inside strings, template literals and comments are not
// mistaken for imports. Nothing here runs the modules.

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/** How one module refers to another. */
export type ImportKind =
  /** `import … from`, `import '…'`, `export … from`: evaluated when the importer loads. */
  | 'static'
  /** `import type …`, or every named binding marked `type`: erased, never loaded. */
  | 'type'
  /** `import('…')` with a literal string: loaded when that line runs. */
  | 'dynamic';

export interface ImportEdge {
  /** The specifier as written. */
  readonly specifier: string;
  readonly kind: ImportKind;
  /** The file it resolves to, relative to the root with `/`, for a relative specifier. */
  readonly target?: string;
  /** The package name (`commander`, `@tensorflow/tfjs-core`) or built-in (`node:fs`), otherwise. */
  readonly external?: string;
  /** 1-based line of the import, for messages. */
  readonly line: number;
}

/** Every import of one source text. `file` is only used to resolve relative specifiers. */
export function parseImports(root: string, file: string, text: string): ImportEdge[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, scriptKind(file));
  const edges: ImportEdge[] = [];
  const add = (node: ts.Node, specifier: string, kind: ImportKind): void => {
    const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    edges.push({ specifier, kind, line, ...locate(root, file, specifier) });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node, node.moduleSpecifier.text, importIsTypeOnly(node) ? 'type' : 'static');
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      add(node, node.moduleSpecifier.text, node.isTypeOnly ? 'type' : 'static');
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length >= 1 &&
      ts.isStringLiteralLike(node.arguments[0] as ts.Expression)
    ) {
      // A computed specifier (import(name)) cannot be followed from the text; none is listed.
      add(node, (node.arguments[0] as ts.StringLiteralLike).text, 'dynamic');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

function scriptKind(file: string): ts.ScriptKind {
  return file.endsWith('.ts') ? ts.ScriptKind.TS : ts.ScriptKind.JS;
}

function importIsTypeOnly(node: ts.ImportDeclaration): boolean {
  // Only `import type …` is erased. `import { type A } from 'x'` still loads x: under
  // verbatimModuleSyntax it leaves `import {} from 'x'` behind, as Node's type stripping does.
  return node.importClause?.isTypeOnly === true;
}

function locate(root: string, file: string, specifier: string): { target?: string; external?: string } {
  if (specifier.startsWith('.') || specifier.startsWith('/')) {
    return {
      target: relative(root, resolve(file, '..', specifier))
        .split(sep)
        .join('/'),
    };
  }
  if (specifier.startsWith('node:')) return { external: specifier };
  const parts = specifier.split('/');
  return { external: specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string) };
}

/** The repository's modules: every .ts (and bin/'s .js) file outside node_modules and dot folders. */
export function sourceFiles(root: string, dirs: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(path);
    }
  };
  for (const d of dirs) walk(join(root, d));
  return out.map((f) => relative(root, f).split(sep).join('/')).sort();
}

/** Module → its imports, for the files given (paths relative to root). */
export type ImportGraph = ReadonlyMap<string, readonly ImportEdge[]>;

export function buildGraph(root: string, files: readonly string[]): ImportGraph {
  const graph = new Map<string, ImportEdge[]>();
  for (const f of files) {
    graph.set(f, parseImports(root, join(root, f), readFileSync(join(root, f), 'utf8')));
  }
  return graph;
}

/**
 * Everything `from` loads when it runs, following static and dynamic imports (not type-only ones,
 * which are erased), each mapped to the chain that reaches it: `[from, …, it]`. Externals (packages,
 * built-ins) are included by name and not followed.
 */
export function loadedBy(graph: ImportGraph, from: string): Map<string, readonly string[]> {
  const chains = new Map<string, readonly string[]>([[from, [from]]]);
  const queue = [from];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const chain = chains.get(next) as readonly string[];
    for (const e of graph.get(next) ?? []) {
      if (e.kind === 'type') continue;
      const to = e.target ?? (e.external as string);
      if (chains.has(to)) continue;
      chains.set(to, [...chain, to]);
      if (e.target !== undefined) queue.push(to);
    }
  }
  return chains;
}

/**
 * One cycle per strongly connected component of the graph (every edge kind counts: a type-only or
 * dynamic import still ties the two modules together), each as `[a, b, …, a]`, shortest from the
 * component's first module in sort order.
 */
export function findCycles(graph: ImportGraph): string[][] {
  const targets = (m: string): string[] =>
    [
      ...new Set(
        (graph.get(m) ?? []).flatMap((e) =>
          e.target !== undefined && graph.has(e.target) ? [e.target] : [],
        ),
      ),
    ].sort();
  // Tarjan's algorithm, iterative (no recursion limit on long chains).
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  for (const root of [...graph.keys()].sort()) {
    if (index.has(root)) continue;
    const work: { node: string; next: number; out: string[] }[] = [];
    const open = (node: string): void => {
      index.set(node, index.size);
      low.set(node, index.get(node) as number);
      stack.push(node);
      onStack.add(node);
      work.push({ node, next: 0, out: targets(node) });
    };
    open(root);
    while (work.length > 0) {
      const top = work[work.length - 1] as { node: string; next: number; out: string[] };
      const to = top.out[top.next++];
      if (to !== undefined) {
        if (!index.has(to)) open(to);
        else if (onStack.has(to))
          low.set(top.node, Math.min(low.get(top.node) as number, index.get(to) as number));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent !== undefined) {
        low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(top.node) as number));
      }
      if (low.get(top.node) === index.get(top.node)) {
        const component: string[] = [];
        let m: string;
        do {
          m = stack.pop() as string;
          onStack.delete(m);
          component.push(m);
        } while (m !== top.node);
        if (component.length > 1 || targets(top.node).includes(top.node)) components.push(component.sort());
      }
    }
  }
  return components.map((c) => shortestCycle(c, targets));
}

/** Breadth-first from the component's first module back to it, inside the component. */
function shortestCycle(component: readonly string[], targets: (m: string) => string[]): string[] {
  const start = component[0] as string;
  const inside = new Set(component);
  const previous = new Map<string, string>();
  const queue = [start];
  for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
    for (const to of targets(m)) {
      if (!inside.has(to)) continue;
      if (to === start) {
        const path = [start];
        for (let p: string | undefined = m; p !== start && p !== undefined; p = previous.get(p))
          path.unshift(p);
        return [start, ...path];
      }
      if (!previous.has(to)) {
        previous.set(to, m);
        queue.push(to);
      }
    }
  }
  return [...component]; // not reached: a component always has a cycle through its first module
}
