// One rule for suites that cannot run here: skip with the reason, except under
// TILESTREAM_REQUIRE_ALL=1 (set by .ci/run), where a suite that would skip fails instead, so CI never
// passes by skipping what it was meant to check.
export const REQUIRE_ALL_ENV = 'TILESTREAM_REQUIRE_ALL';

export function requireAll(env: Record<string, string | undefined> = process.env): boolean {
  return env[REQUIRE_ALL_ENV] === '1';
}

/**
 * Returns `reason` for node:test's `skip` option, or throws (failing the suite) when every suite
 * must run. Pass undefined when the suite can run.
 */
export function skipUnlessRequired(reason: string | undefined): string | undefined {
  if (reason === undefined) return undefined;
  if (requireAll()) throw new Error(`${reason} — and ${REQUIRE_ALL_ENV}=1 forbids skipping`);
  return reason;
}
