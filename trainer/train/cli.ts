// `tilestream train`: the command users and the operator's pods run.

import { type Command, Option } from 'commander';
import { parseQuantity } from '../../crds/index.ts';
import { BACKEND_CHOICES, type BackendChoice } from '../backend/select.ts';
import { parseIntOption } from '../cli-util.ts';
import { EXIT } from './exit-codes.ts';
import { trainOrLaunch } from './launch.ts';

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description('train a StreamingTrainingJob manifest (YAML or JSON) locally or in a pod')
    .argument('<manifest>', 'StreamingTrainingJob manifest, the same file kubectl apply takes')
    .option('--tile-size <px>', 'tile side in pixels (overrides spec.streaming.tileSize)', parseIntOption)
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend (overrides spec.training.backend)').choices(
        BACKEND_CHOICES,
      ),
    )
    .option('--output-dir <dir>', 'write checkpoints to DIR/checkpoints instead of spec.checkpoint.path')
    .option('--epochs <n>', 'override spec.training.epochs', parseIntOption)
    .option(
      '--memory-budget <quantity>',
      "memory for tileSize 'auto' (e.g. 3Gi), and on TensorFlow without a GPU the limit a tile is checked against before training; default depends on the backend",
      (v) => parseQuantity(v),
    )
    .option(
      '--metrics-port <port>',
      'serve Prometheus metrics on this port (0 picks a free one)',
      parseIntOption,
    )
    .option('--json', 'JSON log lines even on a terminal')
    .addHelpText(
      'after',
      '\nExit codes: 0 done, 1 failed, 2 invalid manifest, 3 out of memory (retry with a smaller tile),\n' +
        '4 checkpoint volume full, 5 data not found, 6 peers unavailable (a rank of a multi-rank job lost\n' +
        'its peers; restart from the checkpoint), 143 stopped by SIGTERM/SIGINT after writing a checkpoint\n' +
        '(the next run resumes from it).\n\n' +
        'A job of several ranks (spec.resources.replicas × max(gpus, 1) > 1) starts one process per rank:\n' +
        'all on this machine when run locally, its own ranks in a trainer pod.',
    )
    .action(
      async (
        manifest: string,
        o: {
          tileSize?: number;
          backend?: BackendChoice;
          outputDir?: string;
          epochs?: number;
          memoryBudget?: number;
          metricsPort?: number;
          json?: boolean;
        },
      ) => {
        const code = await trainOrLaunch(manifest, o);
        // After an out-of-memory trap the wasm module is broken; any later call into it (tensor
        // finalisers, pending timers) would trap again, so leave now with the documented code.
        if (code === EXIT.outOfMemory) process.exit(code);
        process.exitCode = code;
      },
    );
}
