import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerSetupCommand } from './backend/native/cli.ts';
import { registerStreamingBenches } from './bench/cli.ts';
import { registerGpuBench } from './bench/gpu-cli.ts';
import { registerSlideBench, registerSlidesCommand } from './data/slide/cli.ts';
import { registerOpenslideSetup } from './data/slide/setup-cli.ts';
import { registerSynthCommand } from './data/synth-cli.ts';
import { registerPlanCommands } from './plan/cli.ts';
import { registerBenchMemory } from './plan-measure/cli.ts';
import { registerTrainCommand } from './train/cli.ts';

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** The version of the tilestream package, as in package.json. */
export const VERSION: string = packageJson.version;

/** Builds the `tilestream` command line. Each subcommand parses its own options. */
export function buildProgram(): Command {
  const program = new Command('tilestream')
    .description(
      'Train convolutional networks on multi-megapixel images by streaming them tile by tile, ' +
        'on a laptop or on Kubernetes GPU nodes.',
    )
    .version(VERSION, '-V, --version', 'print the tilestream version')
    .showHelpAfterError('(run with --help for usage)');
  registerTrainCommand(program);
  registerSynthCommand(program);
  registerPlanCommands(program);
  registerOpenslideSetup(registerSetupCommand(program));
  registerSlidesCommand(program);
  const bench = program
    .command('bench')
    .description('measure streaming against conventional training (JSON with --json)');
  registerStreamingBenches(bench);
  registerGpuBench(bench);
  registerBenchMemory(bench);
  registerSlideBench(bench);
  return program;
}
