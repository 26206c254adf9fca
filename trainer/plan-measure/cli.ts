// `tilestream bench memory`: the planner's predictions next to measured peaks (bench.ts), or the
// paper check. The measuring half is imported only when that command runs.

import { type Command, InvalidArgumentError, Option } from 'commander';
import { commandOutput, parseMemory, parsePositiveInt } from '../cli-util.ts';
import { formatPaperCheck, paperCheck } from '../plan/paper.ts';
import { ARCHITECTURES, type Architecture } from '../streaming/bodies.ts';
import type { BenchMemoryFlags } from './bench.ts';

function parseNetworks(value: string): Architecture[] {
  const names = value.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(ARCHITECTURES as readonly string[]).includes(n)) {
      throw new InvalidArgumentError(`unknown network '${n}'; expected some of ${ARCHITECTURES.join(', ')}`);
    }
  }
  return names as Architecture[];
}

function parseHeadroom(value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || v < 0 || v >= 1)
    throw new InvalidArgumentError(
      `expected a fraction from 0 to below 1 (e.g. 0.1 for 10%), got '${value}'`,
    );
  return v;
}

function parseSizes(value: string): number[] {
  const sizes = value.split(',').map((s) => parsePositiveInt(s));
  if (sizes.length === 0) throw new InvalidArgumentError('expected a comma-separated list of sizes');
  return sizes;
}

/** Adds `tilestream bench memory` under the `bench` command. */
export function registerBenchMemory(bench: Command): void {
  bench
    .command('memory')
    .description(
      'predicted peak memory, conventional vs streamed, of the built-in networks at 1024² … 16384², ' +
        'next to measured peaks (tf.profile, buffers, wasm heap) wherever they fit this machine; --paper for the paper check',
    )
    .addOption(
      new Option('--backend <name>', 'backend to measure and predict for')
        .choices(['wasm', 'cpu'])
        .default('wasm'),
    )
    .option('--sizes <list>', 'image sides', parseSizes, [1024, 2048, 4096, 8192, 16384])
    .option('--networks <list>', `only these networks (${ARCHITECTURES.join(', ')})`, parseNetworks)
    .option(
      '--memory <quantity>',
      'memory budget the streamed tile is planned for (default 4Gi, the wasm heap)',
      parseMemory,
      4 * 2 ** 30,
    )
    .option(
      '--tile <T>',
      'largest tile to use (each image uses at most half its side)',
      parsePositiveInt,
      1024,
    )
    .option(
      '--auto-tile',
      "stream with the planner's auto tile for --memory (the trainer's tileSize: auto), not capped by --tile",
    )
    .option(
      '--headroom <fraction>',
      'fraction of --memory kept free when planning the tile (default 0.1)',
      parseHeadroom,
    )
    .option('--no-measure', 'predictions only')
    .option('--max-seconds <n>', 'skip a measurement predicted to take longer', parsePositiveInt, 300)
    .option(
      '--paper',
      'print the paper check instead: MIDL 2018 at 64 MP and ResNet-34 at 8192², planner vs claims',
    )
    .option('--json', 'print JSON')
    .action(async (flags: BenchMemoryFlags, cmd: Command) => {
      const write = commandOutput(cmd);
      if (flags.paper) {
        const report = paperCheck();
        write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatPaperCheck(report));
        return;
      }
      // The measuring half runs TensorFlow (in child processes); loaded only when measuring.
      const { benchMemory, formatBenchMemory } = await import('./bench.ts');
      const report = await benchMemory(flags, (line) => process.stderr.write(`${line}\n`));
      write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatBenchMemory(report));
    });
}
