// The `tilestream bench` subcommands of the streaming engine. Each prints a readable table, or
// JSON with --json; progress goes to stderr so stdout stays machine-readable.

import { type Command, Option } from 'commander';
import { BACKEND_CHOICES, type BackendChoice, initBackend } from '../backend/select.ts';
import { formatTable, parseIntOption } from '../cli-util.ts';
import { benchEquivalence } from './equivalence.ts';
import { benchResolution } from './resolution.ts';
import { compareBackends, measureRatio, THROUGHPUT_CASES, type ThroughputResult } from './throughput.ts';

const progress = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

export function registerStreamingBenches(bench: Command): void {
  bench
    .command('equivalence')
    .description(
      'stream random bodies and ResNet-18 and compare with conventional training (worst relative errors)',
    )
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend').choices(BACKEND_CHOICES).default('wasm'),
    )
    .option('--seed <n>', 'seed of the random cases', parseIntOption, 1)
    .option('--cases <n>', 'number of random bodies', parseIntOption, 40)
    .option('--max-pixels <n>', 'largest image area of a random case', parseIntOption, 200 * 200)
    .option('--no-fixed', 'skip the ResNet-18 512² cases (tiles 256 and 320)')
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
      'CPU time per training step, streamed vs conventional, as a ratio next to the predicted 4·A/3; and wasm vs cpu',
    )
    .option(
      '--cases <list>',
      `comma-separated: ${Object.keys(THROUGHPUT_CASES).join(', ')}`,
      'smallcnn,resnet18',
    )
    .addOption(
      new Option('--backend <name>', 'backend for the streamed/conventional ratios')
        .choices(BACKEND_CHOICES)
        .default('wasm'),
    )
    .option(
      '--compare-backends <list>',
      'backends for the conventional-step comparison (empty to skip)',
      'wasm,cpu',
    )
    .option('--compare-size <n>', 'image size of the backend comparison', parseIntOption, 512)
    .option(
      '--repeats <n>',
      'timed steps per measurement after one warm-up (median reported)',
      parseIntOption,
      2,
    )
    .option('--json', 'print JSON')
    .action(
      async (o: {
        cases: string;
        backend: BackendChoice;
        compareBackends: string;
        compareSize: number;
        repeats: number;
        json?: boolean;
      }) => {
        const ratios: ThroughputResult[] = [];
        const info = await initBackend(o.backend);
        for (const name of o.cases.split(',').filter(Boolean)) {
          const c = THROUGHPUT_CASES[name];
          if (!c)
            throw new Error(
              `unknown case '${name}'; choose from ${Object.keys(THROUGHPUT_CASES).join(', ')}`,
            );
          ratios.push(await measureRatio(c, info.name, o.repeats, progress));
        }
        const backends = o.compareBackends.split(',').filter(Boolean);
        const backendsResult = backends.length
          ? await compareBackends(backends, o.compareSize, o.repeats, progress)
          : null;
        if (o.json) {
          process.stdout.write(`${JSON.stringify({ ratios, backends: backendsResult }, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          formatTable(
            [
              'case',
              'backend',
              'image',
              'tile',
              'tiles',
              'A',
              'predicted 4A/3',
              'measured',
              'deviation',
              'conv cpu s',
              'streamed cpu s',
            ],
            ratios.map((r) => [
              r.case,
              r.backend,
              `${r.image}²`,
              `${r.tile}²`,
              String(r.tiles),
              r.areaFactor.toFixed(3),
              r.predictedRatio.toFixed(3),
              r.measuredRatio.toFixed(3),
              `${(100 * r.deviation).toFixed(1)}%`,
              r.tileCalibratedRatio.toFixed(3),
              `${(100 * r.tileCalibratedDeviation).toFixed(1)}%`,
              r.conventionalSeconds.toFixed(2),
              r.streamedSeconds.toFixed(2),
            ]),
          ),
        );
        if (backendsResult) {
          const parts = Object.entries(backendsResult.seconds).map(([b, s]) => `${b} ${s.toFixed(2)} s`);
          process.stdout.write(
            `\nconventional step, smallcnn ${backendsResult.image}²: ${parts.join(', ')}; wasm speed-up over cpu ${backendsResult.wasmSpeedup.toFixed(1)}x\n`,
          );
        }
      },
    );

  bench
    .command('resolution')
    .description(
      'train the same network on the synthetic lesion task at full resolution (streamed) and 8× downsampled',
    )
    .option('--out <dir>', 'folder for the data, manifests and checkpoints', 'runs/resolution')
    .option('--size <px>', 'full image size', parseIntOption, 512)
    .option('--tile <px>', 'tile size of the full-resolution run', parseIntOption, 256)
    .option('--factor <n>', 'downsampling factor', parseIntOption, 8)
    .option('--count <n>', 'training images', parseIntOption, 160)
    .option('--val-count <n>', 'validation images', parseIntOption, 200)
    .option('--epochs <n>', 'epochs of each run', parseIntOption, 3)
    .option('--seed <n>', 'seed of the data and the training', parseIntOption, 1)
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend').choices(BACKEND_CHOICES).default('auto'),
    )
    .option('--json', 'print JSON')
    .action(
      async (o: {
        out: string;
        size: number;
        tile: number;
        factor: number;
        count: number;
        valCount: number;
        epochs: number;
        seed: number;
        backend: string;
        json?: boolean;
      }) => {
        const r = await benchResolution({ ...o, validationCount: o.valCount, log: progress });
        if (o.json) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          formatTable(
            ['run', 'image', 'tile', 'validation AUC', 'accuracy', 'AUC per epoch', 'seconds'],
            [r.full, r.downsampled].map((x) => [
              x.resolution,
              `${x.image}²`,
              `${x.tile}²`,
              x.validationAuc.toFixed(3),
              x.validationAccuracy.toFixed(3),
              x.aucPerEpoch.map((a) => a.toFixed(2)).join(' '),
              x.seconds.toFixed(0),
            ]),
          ),
        );
        process.stdout.write(
          `paper (CAMELYON17, TPAMI abstract): AUC ${r.paper.lowResolutionAuc} at 4 MP vs ${r.paper.highResolutionAuc} at 66 MP\n`,
        );
      },
    );
}
