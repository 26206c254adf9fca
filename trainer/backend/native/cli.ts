// `tilestream setup tensorflow [--gpu]`: the one way the native backend is provided — locally, by
// `npm test` before its suites start, and in the images.
import type { Command } from 'commander';
import { cacheRoot, type NativeVariant } from './builds.ts';
import { SetupPrerequisiteError, setupTensorflow } from './setup.ts';

/** Exit code when the machine lacks a build tool (the suites skip with the reason, CI fails). */
export const EXIT_PREREQUISITES = 2;

/** Adds `setup` with its `tensorflow` subcommand; returns `setup` so other native parts add theirs. */
export function registerSetupCommand(program: Command): Command {
  const setup = program
    .command('setup')
    .description('provide optional native parts (see: setup tensorflow, setup openslide)');
  setup
    .command('tensorflow')
    .description(
      'build the native TensorFlow backend (@tensorflow/tfjs-node, or -gpu with --gpu) against the pinned ' +
        'PyPI TensorFlow wheel, into a cache folder; a no-op when already built',
    )
    .option('--gpu', 'the CUDA 12 build (tfjs-node-gpu + tensorflow and its CUDA wheels, ≈ 3.3 GB download)')
    .option('--force', 'rebuild even when a finished build is present')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `\nNeeds python3 with pip, make and a C++ compiler. Cache: ${cacheRoot()} ` +
        '(override with TILESTREAM_TENSORFLOW_CACHE).\n' +
        `Exit codes: 0 built or present, 1 a step failed (nothing is left half-built), ${EXIT_PREREQUISITES} a prerequisite is missing.`,
    )
    .action(async (o: { gpu?: boolean; force?: boolean; json?: boolean }) => {
      const variant: NativeVariant = o.gpu === true ? 'gpu' : 'cpu';
      const progress = (line: string): void => {
        process.stderr.write(`setup tensorflow (${variant}): ${line}\n`);
      };
      try {
        const r = await setupTensorflow({ variant, force: o.force === true, progress });
        if (o.json === true) {
          process.stdout.write(
            `${JSON.stringify({ status: r.status, dir: r.build.dir, ...r.build.stamp })}\n`,
          );
        } else if (r.status === 'present') {
          process.stdout.write(`already built: ${r.build.dir}\n`);
        } else {
          const mb = (r.build.stamp.bytes / 2 ** 20).toFixed(0);
          process.stdout.write(`built in ${r.seconds.toFixed(0)} s (${mb} MiB): ${r.build.dir}\n`);
        }
      } catch (err) {
        process.stderr.write(`setup tensorflow (${variant}): ${(err as Error).message}\n`);
        process.exitCode = err instanceof SetupPrerequisiteError ? EXIT_PREREQUISITES : 1;
      }
    });
  return setup;
}
