import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

function run(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
}

describe('tilestream CLI', () => {
  it('prints the package version', () => {
    const r = run('--version');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  it('prints help that names the program', () => {
    const r = run('--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: tilestream/);
  });

  it('refuses an unknown subcommand with a non-zero exit', () => {
    const r = run('no-such-command');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /unknown command|too many arguments/);
  });
});
