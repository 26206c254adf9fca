// The `tilestream bench` subcommands of the streaming engine. Each prints a readable table, or
// JSON with --json; progress goes to stderr so stdout stays machine-readable.

import { type Command, InvalidArgumentError, Option } from 'commander';
import { BACKEND_CHOICES, type BackendChoice, initBackend } from '../backend/select.ts';
import { parseIntOption } from '../cli-util.ts';
import { formatTable } from '../text-table.ts';
import { registerAllreduceBench } from './allreduce.ts';
import { benchEquivalence } from './equivalence.ts';
import { benchResolution, formatResolution } from './resolution.ts';
import {
  BENCH_ARCHITECTURES,
  parseResolutionModels,
  RESOLUTION_POOLINGS,
  type ResolutionModel,
} from './resolution-models.ts';
import { registerScalingBench } from './scaling.ts';
import { THROUGHPUT_CASES, throughputCase } from './throughput.ts';
import { benchThroughput, formatThroughput } from './throughput-report.ts';

const list = (s: string): string[] =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/** Commander parser of `bench resolution --models`. */
export function parseModelsOption(value: string): ResolutionModel[] {
  try {
    return parseResolutionModels(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/** Commander parser of a learning rate: a number above 0 and at most 10 (the CRD's bounds). */
export function parseLearningRate(value: string): number {
  const x = Number(value);
  if (value.trim() === '' || !(x > 0 && x <= 10))
    throw new InvalidArgumentError(`expected a learning rate above 0 and at most 10, got '${value}'`);
  return x;
}

const progress = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

export function registerStreamingBenches(bench: Command): void {
  registerAllreduceBench(bench);
  registerScalingBench(bench);
  bench
    .command('equivalence')
    .description(
      'stream random bodies, ResNet-18 (max pooling and the attention head), ResNet-50, ConvNeXt-atto and InceptionNeXt-atto and compare with conventional training (worst relative errors)',
    )
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend').choices(BACKEND_CHOICES).default('wasm'),
    )
    .option('--seed <n>', 'seed of the random cases', parseIntOption, 1)
    .option('--cases <n>', 'number of random bodies', parseIntOption, 40)
    .option('--max-pixels <n>', 'largest image area of a random case', parseIntOption, 200 * 200)
    .option(
      '--no-fixed',
      'skip the ResNet-18 512² (tiles 256, 320; with the attention head, tile 256), ResNet-50 384² (tiles 160, 224), ConvNeXt-atto 384² (tiles 184, 248) and InceptionNeXt-atto 384² (tiles 232, 296) cases',
    )
    .option('--json', 'print JSON')
    .action(
      async (o: {
        backend: BackendChoice;
        seed: number;
        cases: number;
        maxPixels: number;
        fixed: boolean;
        json?: boolean;
      }) => {
        const info = await initBackend(o.backend);
        const report = await benchEquivalence({ ...o, backend: info.name, log: progress });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        } else {
          const e = (x: number): string => x.toExponential(2);
          process.stdout.write(
            formatTable(
              ['cases', 'output', 'parameter grads', 'input grads', 'tiles', 'seconds'],
              [
                [
                  `${report.randomCases} random`,
                  e(report.worst.output),
                  e(report.worst.paramGrad),
                  e(report.worst.inputGrad),
                  '',
                  '',
                ],
                ...report.fixed.map((f) => [
                  f.name,
                  e(f.output),
                  e(f.paramGrad),
                  e(f.inputGrad),
                  String(f.tiles),
                  f.seconds.toFixed(1),
                ]),
                [
                  'tolerance',
                  e(report.tolerances.output),
                  e(report.tolerances.paramGrad),
                  e(report.tolerances.inputGrad),
                  '',
                  '',
                ],
              ],
            ),
          );
          process.stdout.write(
            `backend ${report.backend}, seed ${report.seed}: ${report.pass ? 'PASS' : 'FAIL'}\n`,
          );
        }
        if (!report.pass) process.exitCode = 1;
      },
    );

  bench
    .command('throughput')
    .description(
      'time per training step in one run: streamed vs conventional (next to the predicted ratios), and a conventional step on several backends',
    )
    .option(
      '--cases <list>',
      `cases of the streamed/conventional ratios, comma-separated: ${Object.keys(THROUGHPUT_CASES).join(', ')}`,
      'smallcnn,resnet18',
    )
    .option(
      '--sizes <list>',
      "image sides of the ratios, comma-separated (tile: half the image); default each case's own (smallcnn 1024, resnet18 2048)",
    )
    .addOption(
      new Option('--backend <name>', 'backend for the streamed/conventional ratios')
        .choices(BACKEND_CHOICES)
        .default('auto'),
    )
    .option(
      '--compare-backends <list>',
      "backends for the conventional-step comparison; 'auto': tensorflow,wasm when the tensorflow backend is built, else wasm,cpu; empty to skip",
      'auto',
    )
    .option('--compare-cases <list>', 'cases of the backend comparison', 'smallcnn,resnet18,resnet18-full')
    .option('--compare-size <n>', 'image side of the backend comparison', parseIntOption, 1024)
    .option('--repeats <n>', 'timed rounds after one warm-up (medians reported)', parseIntOption, 2)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        cases: string;
        sizes?: string;
        backend: BackendChoice;
        compareBackends: string;
        compareCases: string;
        compareSize: number;
        repeats: number;
        json?: boolean;
      }) => {
        const report = await benchThroughput(
          {
            cases: list(o.cases).map(throughputCase),
            ...(o.sizes !== undefined && { sizes: list(o.sizes).map((s) => parseIntOption(s)) }),
            backend: o.backend,
            compareBackends: o.compareBackends,
            compareCases: list(o.compareCases).map(throughputCase),
            compareSize: o.compareSize,
            repeats: o.repeats,
          },
          progress,
        );
        process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatThroughput(report));
      },
    );

  bench
    .command('resolution')
    .description(
      'train each model on the synthetic lesion task at full resolution (streamed) and 8× downsampled; one table of validation AUC',
    )
    .addOption(
      new Option(
        '--models <list>',
        `models, comma-separated ARCHITECTURE-POOLING: ARCHITECTURE ${Object.keys(BENCH_ARCHITECTURES).join(', ')}, POOLING ${RESOLUTION_POOLINGS.join(', ')}; e.g. smallcnn-max,convnext-atto-attention`,
      )
        .argParser(parseModelsOption)
        .default(parseResolutionModels('smallcnn-max'), 'smallcnn-max'),
    )
    .option(
      '--out <dir>',
      'folder for the data, manifests, checkpoints and attention maps',
      'runs/resolution',
    )
    .option('--size <px>', 'full image size', parseIntOption, 512)
    .option(
      '--tile <px>',
      "tile of every full-resolution run (default each architecture's: smallcnn 256, convnext-atto 328)",
      parseIntOption,
    )
    .option('--factor <n>', 'downsampling factor', parseIntOption, 8)
    .option('--count <n>', 'training images', parseIntOption, 160)
    .option('--val-count <n>', 'validation images', parseIntOption, 200)
    .option('--epochs <n>', 'epochs of each run', parseIntOption, 3)
    .option(
      '--learning-rate <x>',
      "Adam's learning rate of every run (default each architecture's: smallcnn 0.003, convnext-atto 0.001)",
      parseLearningRate,
    )
    .option('--seed <n>', 'seed of the data and the training', parseIntOption, 1)
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend').choices(BACKEND_CHOICES).default('auto'),
    )
    .option('--json', 'print JSON')
    .action(
      async (o: {
        models: ResolutionModel[];
        out: string;
        size: number;
        tile?: number;
        factor: number;
        count: number;
        valCount: number;
        epochs: number;
        learningRate?: number;
        seed: number;
        backend: string;
        json?: boolean;
      }) => {
        const r = await benchResolution({ ...o, validationCount: o.valCount, log: progress });
        process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : formatResolution(r));
      },
    );
}
