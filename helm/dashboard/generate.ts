// Writes the chart's dashboard file from helm/dashboard/dashboard.ts. Run with
// `npm run generate:dashboard`; test/ship/dashboard.test.ts fails when the committed file is stale.

import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildDashboard } from './dashboard.ts';

export const DASHBOARD_FILE = fileURLToPath(
  new URL('../tilestream/files/dashboards/tilestream.generated.json', import.meta.url),
);

/** The dashboard file's exact content: JSON with 2-space indentation and a final newline. */
export function renderDashboardJson(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(DASHBOARD_FILE, renderDashboardJson());
  console.log(`wrote ${DASHBOARD_FILE}`);
}
