import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const crds = join(root, 'crds');

function* tsFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) yield* tsFiles(join(dir, e.name));
    else if (e.name.endsWith('.ts')) yield join(dir, e.name);
  }
}

describe('crds/ dependencies', () => {
  it('import only each other, node: built-ins and yaml (crds ← trainer ← operator)', () => {
    const offending: string[] = [];
    for (const file of tsFiles(crds)) {
      const text = readFileSync(file, 'utf8');
      for (const [, spec] of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)) {
        const inside = spec!.startsWith('.') && relative(root, join(file, '..', spec!)).startsWith('crds/');
        if (!(inside || spec!.startsWith('node:') || spec === 'yaml'))
          offending.push(`${relative(root, file)} → ${spec}`);
      }
    }
    assert.deepEqual(offending, []);
  });
});
