#!/usr/bin/env node
// The `tilestream` entry. Plain JavaScript so that any node can parse it: the project runs on
// Node 24 (pinned through the npm package `node`), but a shell may start this file with an older
// system node; then it re-executes itself with the pinned runtime instead of failing obscurely.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
const here = dirname(fileURLToPath(import.meta.url));

if (major >= REQUIRED_MAJOR) {
  await import('./cli.ts');
} else {
  const pinned = join(here, '..', 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(pinned)) {
    process.stderr.write(
      `tilestream needs Node ${REQUIRED_MAJOR} or newer (this is ${process.version}). ` +
        `Run 'npm ci' in ${join(here, '..')} to install the pinned runtime, or use 'npx tilestream'.\n`,
    );
    process.exit(1);
  }
  const child = spawn(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
