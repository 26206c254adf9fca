// `tilestream bench gpu`: see bench/gpu.ts. Exit 0 when every check ran and passed, 1 when one
// failed, 2 when this machine has no GPU (or no GPU build) to check.
import type { Command } from 'commander';
import { parseIntOption } from '../cli-util.ts';
import { formatTable } from '../text-table.ts';
import { benchGpu, GPU_BENCH_SIZES, type GpuBenchStep } from './gpu.ts';

export const EXIT_NO_GPU = 2;

export function registerGpuBench(bench: Command): void {
  bench
    .command('gpu')
    .description(
      'GPU acceptance check, once per GPU class: devices TensorFlow sees, equivalence on the GPU, peak device ' +
        'memory of streamed and conventional ResNet-34 steps against the planner, and their times (≈ 10 min)',
    )
    .option('--sizes <list>', 'image sides to time', (v) => v.split(',').map((s) => parseIntOption(s)), [
      ...GPU_BENCH_SIZES,
    ])
    .option('--repeats <n>', 'timed steps per measurement (after one warm-up)', parseIntOption, 2)
    .option('--cases <n>', 'random bodies in the equivalence check', parseIntOption, 20)
    .option('--json', 'print JSON')
    .action(async (o: { sizes: number[]; repeats: number; cases: number; json?: boolean }) => {
      const report = await benchGpu({ ...o, log: (l) => process.stderr.write(`${l}\n`) });
      if (!report.gpu) {
        if (o.json) process.stdout.write(`${JSON.stringify(report)}\n`);
        else process.stderr.write(`bench gpu: ${report.reason}\n`);
        process.exitCode = EXIT_NO_GPU;
        return;
      }
      const passed =
        report.equivalence.ok &&
        report.equivalence.pass === true &&
        report.steps.every((s) => s.streamed.seconds !== undefined);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        const cell = (x: number | undefined, digits = 2): string =>
          x === undefined ? '—' : x.toFixed(digits);
        const conv = (s: GpuBenchStep): string =>
          s.conventional.outOfMemory ? 'out of memory' : cell(s.conventional.seconds);
        process.stdout.write(
          `${report.devices.map((d) => `GPU ${d.index}: ${d.name}, ${d.memoryMiB} MiB, driver ${d.driver}`).join('\n')}\n` +
            `TensorFlow: ${report.tensorflow.ok ? report.tensorflow.reason : report.tensorflow.error}\n` +
            `equivalence: ${report.equivalence.ok ? JSON.stringify(report.equivalence.worst) : report.equivalence.error}\n\n` +
            formatTable(
              [
                'image',
                'tile',
                'streamed s',
                'conventional s',
                'streamed MiB (predicted)',
                'conventional MiB (predicted)',
              ],
              report.steps.map((s) => [
                `${s.image}²`,
                String(s.tile),
                cell(s.streamed.seconds),
                conv(s),
                `${cell(s.streamed.deviceMiB, 0)} (${s.predictedStreamedMiB})`,
                `${cell(s.conventional.deviceMiB, 0)} (${s.predictedConventionalMiB})`,
              ]),
            ),
        );
      }
      process.exitCode = passed ? 0 : 1;
    });
}
