// `tilestream setup openslide`: the one way the OpenSlide library is provided — locally, by `npm
// test` before its suites start (test/prepare.ts), and in the trainer images (bin/setup-openslide.ts
// loads just this, so the image layer survives other source edits).
import type { Command } from 'commander';
import { OPENSLIDE_CACHE_ENV, openslideCacheRoot } from './openslide-lib.ts';
import { EXIT_PREREQUISITES, OpenslidePrerequisiteError, setupOpenslide } from './openslide-setup.ts';

export function registerOpenslideSetup(setup: Command): void {
  setup
    .command('openslide')
    .description(
      'fetch the OpenSlide 4 library (the pinned openslide-bin wheel from PyPI) that reads whole-slide ' +
        'formats (.svs, .ndpi, .mrxs, .scn, .bif, Philips TIFF, DICOM WSI) into a cache folder; a no-op when present',
    )
    .option('--force', 'fetch again even when present')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `\nNeeds python3 with pip. Cache: ${openslideCacheRoot()} (override with ${OPENSLIDE_CACHE_ENV}).\n` +
        `Exit codes: 0 installed or present, 1 a step failed, ${EXIT_PREREQUISITES} a prerequisite is missing.`,
    )
    .action((o: { force?: boolean; json?: boolean }) => {
      try {
        const r = setupOpenslide({
          force: o.force === true,
          progress: (line) => process.stderr.write(`setup openslide: ${line}\n`),
        });
        if (o.json === true) {
          process.stdout.write(`${JSON.stringify({ status: r.status, ...r.located })}\n`);
        } else if (r.status === 'present') {
          process.stdout.write(`already present: ${r.located.library}\n`);
        } else {
          process.stdout.write(`installed in ${r.seconds.toFixed(1)} s: ${r.located.library}\n`);
        }
      } catch (err) {
        process.stderr.write(`setup openslide: ${(err as Error).message}\n`);
        process.exitCode = err instanceof OpenslidePrerequisiteError ? EXIT_PREREQUISITES : 1;
      }
    });
}
