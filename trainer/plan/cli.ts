// `tilestream plan` (predicted memory and the tile for a GPU) and `tilestream bench memory`
// (predictions next to measured peaks). This module loads no TensorFlow: the bench's measuring
// half is imported only when that command runs.

import { type Command, InvalidArgumentError, Option } from 'commander';
import { parseQuantity, QuantityError } from '../../crds/quantity.ts';
import type { StreamingTrainingJobSpec } from '../../crds/v1alpha1/types.ts';
import { formatProblems, loadJobFile } from '../../crds/validate.ts';
import { formatTable } from '../cli-util.ts';
import { ARCHITECTURES, type Architecture, builtinNetwork } from '../streaming/bodies.ts';
import { GeometryError } from '../streaming/geometry.ts';
import { BodyError } from '../streaming/graph.ts';
import {
  BACKEND_NAMES,
  type BackendName,
  DTYPES,
  type Dtype,
  type MemoryPrediction,
  OPTIMIZERS,
  type OptimizerName,
  optimizerFromSpec,
  type PlanNetwork,
  parameterCount,
  TERM_LABELS,
  TERMS,
} from './memory.ts';
import { formatPaperCheck, paperCheck } from './paper.ts';
import {
  checkTile,
  formatBytes,
  type NothingFits,
  PlanError,
  planAutoTile,
  type TileFits,
  type TilePlan,
  tileConstraints,
} from './planner.ts';

/** Exit codes: 2 for input that cannot be planned, 3 when no tile fits the memory. */
export const EXIT_INVALID = 2;
export const EXIT_DOES_NOT_FIT = 3;

const MAX_SIDE = 1 << 20;

/** `N` (square) or `HxW`, each a positive integer up to 2^20. */
export function parseImageSize(value: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×X]\s*(\d+))?\s*$/.exec(value);
  if (!m)
    throw new InvalidArgumentError(`expected N or HxW in pixels (e.g. 8192 or 4096x6144), got '${value}'`);
  const h = Number(m[1]);
  const w = m[2] === undefined ? h : Number(m[2]);
  for (const v of [h, w]) {
    if (v < 1 || v > MAX_SIDE)
      throw new InvalidArgumentError(`image sides must be from 1 to ${MAX_SIDE}, got '${value}'`);
  }
  return [h, w];
}

/** A memory quantity as Kubernetes writes it ('16Gi', '40960Mi', '17179869184'), in bytes. */
export function parseMemory(value: string): number {
  let bytes: number;
  try {
    bytes = parseQuantity(value.trim());
  } catch (e) {
    if (e instanceof QuantityError) throw new InvalidArgumentError(e.message);
    throw e;
  }
  if (!(bytes > 0)) throw new InvalidArgumentError(`memory must be more than zero, got '${value}'`);
  return bytes;
}

function parsePositiveInt(value: string): number {
  if (!/^\s*\d+\s*$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError(`expected a positive whole number, got '${value}'`);
  }
  return Number(value);
}

function parseFraction(value: string): number {
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || v < 0 || v >= 1) {
    throw new InvalidArgumentError(
      `expected a fraction from 0 to below 1 (e.g. 0.1 for 10%), got '${value}'`,
    );
  }
  return v;
}

interface PlanFlags {
  model?: Architecture;
  bodyEnd?: string;
  width?: number;
  channels?: number;
  imageSize?: [number, number];
  gpuMemory?: number;
  headroom?: number;
  minTile?: number;
  tile?: number;
  optimizer?: OptimizerName;
  dtype?: Dtype;
  backend?: BackendName;
  pooling?: 'max' | 'avg';
  classes?: number;
  saliency?: boolean;
  json?: boolean;
}

/** Everything `plan` needs, from flags over a manifest over defaults. */
export interface PlanInputs {
  readonly model: Architecture;
  readonly bodyEnd?: string;
  readonly width?: number;
  readonly channels: number;
  readonly image: [number, number];
  readonly budgetBytes?: number;
  readonly headroom: number;
  readonly minTile?: number;
  /** With `auto`: no tile above this (the operator after an out-of-memory exit). */
  readonly maxTile?: number;
  readonly tile?: number;
  /** A manifest's tileSize is rounded down to the stride (as the trainer does); --tile must be exact. */
  readonly roundTile?: boolean;
  readonly optimizer: OptimizerName;
  readonly dtype: Dtype;
  readonly backend: BackendName;
  readonly pooling: 'max' | 'avg';
  readonly classes: number;
  readonly saliency: boolean;
  /** Where the settings came from, for the report. */
  readonly source: string;
}

/** The planning settings of a StreamingTrainingJob. */
export function inputsFromSpec(spec: StreamingTrainingJobSpec, source: string): Partial<PlanInputs> {
  const model = spec.model;
  if (model.architecture === 'tfjs') {
    throw new PlanError(
      `${source}: spec.model.architecture is tfjs; 'tilestream plan' plans the built-in networks ` +
        `(${ARCHITECTURES.join(', ')}) only so far; pass --model to plan a comparable built-in one`,
    );
  }
  const s = spec.streaming;
  const gpuMemory = spec.resources.minGpuMemory;
  return {
    model: model.architecture,
    ...(model.bodyEnd !== undefined && { bodyEnd: model.bodyEnd }),
    ...(model.width !== undefined && { width: model.width }),
    channels: spec.data.channels,
    image: [spec.data.imageSize.height, spec.data.imageSize.width],
    ...(gpuMemory !== undefined && { budgetBytes: parseQuantity(gpuMemory) }),
    headroom: s.memoryHeadroom,
    minTile: s.minTileSize,
    ...(typeof s.tileSize === 'number' && { tile: s.tileSize, roundTile: true }),
    optimizer: optimizerFromSpec(spec.training.optimizer),
    // The operator runs the trainer on GPU nodes: plan for tfjs-node-gpu unless a backend is fixed.
    backend:
      spec.training.backend === 'auto'
        ? spec.resources.gpus > 0
          ? 'tensorflow'
          : 'wasm'
        : spec.training.backend,
    pooling: model.head.pooling,
    classes: model.head.classes,
    saliency: s.saliency,
    source,
  };
}

function merge(flags: PlanFlags, fromManifest: Partial<PlanInputs>): PlanInputs {
  const model = flags.model ?? fromManifest.model;
  if (model === undefined) {
    throw new PlanError('say which network to plan: a StreamingTrainingJob manifest, or --model <arch>');
  }
  const image = flags.imageSize ?? fromManifest.image;
  if (image === undefined) throw new PlanError('say how large the images are: --image-size N or HxW');
  const bodyEnd = flags.bodyEnd ?? (flags.model !== undefined ? undefined : fromManifest.bodyEnd);
  const width = flags.width ?? (flags.model !== undefined ? undefined : fromManifest.width);
  const budgetBytes = flags.gpuMemory ?? fromManifest.budgetBytes;
  const minTile = flags.minTile ?? fromManifest.minTile;
  const tile = flags.tile ?? fromManifest.tile;
  return {
    model,
    ...(bodyEnd !== undefined && { bodyEnd }),
    ...(width !== undefined && { width }),
    channels: flags.channels ?? fromManifest.channels ?? 3,
    image,
    ...(budgetBytes !== undefined && { budgetBytes }),
    headroom: flags.headroom ?? fromManifest.headroom ?? 0.1,
    ...(minTile !== undefined && { minTile }),
    ...(tile !== undefined && { tile }),
    ...(flags.tile === undefined && fromManifest.roundTile && { roundTile: true }),
    optimizer: flags.optimizer ?? fromManifest.optimizer ?? 'adam',
    dtype: flags.dtype ?? 'float32',
    backend: flags.backend ?? fromManifest.backend ?? 'tensorflow',
    pooling: flags.pooling ?? fromManifest.pooling ?? 'max',
    classes: flags.classes ?? fromManifest.classes ?? 2,
    saliency: flags.saliency ?? fromManifest.saliency ?? false,
    source: fromManifest.source ?? 'command line',
  };
}

export function networkOf(
  i: Pick<PlanInputs, 'model' | 'bodyEnd' | 'width' | 'channels' | 'pooling' | 'classes'>,
) {
  const split = builtinNetwork(i.model, {
    ...(i.bodyEnd !== undefined && { bodyEnd: i.bodyEnd }),
    ...(i.width !== undefined && { width: i.width }),
    inputChannels: i.channels,
  });
  const net: PlanNetwork = { ...split, pooling: i.pooling, outputs: i.classes };
  return net;
}

/** Runs the plan for resolved inputs. A budget is needed unless a tile is given. */
export function runPlan(i: PlanInputs): { net: PlanNetwork; plan: TilePlan } {
  const net = networkOf(i);
  const common = {
    net,
    image: i.image,
    headroom: i.headroom,
    optimizer: i.optimizer,
    dtype: i.dtype,
    backend: i.backend,
    inputGrad: i.saliency,
    ...(i.minTile !== undefined && { minTile: i.minTile }),
    ...(i.maxTile !== undefined && { maxTile: i.maxTile }),
  };
  if (i.tile !== undefined) {
    const { stride } = tileConstraints(net, i.minTile ?? 0);
    const tile = i.roundTile && i.tile < Math.max(...i.image) ? Math.floor(i.tile / stride) * stride : i.tile;
    // Without a budget, a fixed tile is reported as it is (an unlimited budget).
    return {
      net,
      plan: checkTile({ ...common, budgetBytes: i.budgetBytes ?? Number.MAX_VALUE, tile }),
    };
  }
  if (i.budgetBytes === undefined) {
    throw new PlanError(
      'say how much memory the GPU has: --gpu-memory <quantity> (e.g. 16Gi), resources.minGpuMemory in the manifest, or a fixed --tile',
    );
  }
  return { net, plan: planAutoTile({ ...common, budgetBytes: i.budgetBytes }) };
}

function describeNetwork(i: PlanInputs, net: PlanNetwork): string {
  const { stride, minimum } = tileConstraints(net, i.minTile ?? 0);
  const params = parameterCount(net);
  const width = i.width !== undefined ? `, width ${i.width}` : '';
  return (
    `${i.model}${width}, streamed to ${net.body.output} (stride ${stride}, minimum tile ${minimum}), ` +
    `${(params / 1e6).toFixed(params < 1e5 ? 3 : 1)} M parameters`
  );
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x > 0.999 ? 2 : 1)}%`;
}

function breakdownRows(columns: readonly MemoryPrediction[]): string[][] {
  const rows: string[][] = [];
  for (const t of TERMS) {
    if (columns.every((c) => c.breakdown[t] === 0)) continue;
    rows.push([TERM_LABELS[t], ...columns.map((c) => formatBytes(c.breakdown[t]))]);
  }
  rows.push(['total', ...columns.map((c) => formatBytes(c.requiredBytes))]);
  return rows;
}

/** The readable report of a plan. */
export function formatPlan(i: PlanInputs, net: PlanNetwork, plan: TilePlan): string {
  const lines: string[] = [];
  const budget =
    i.budgetBytes !== undefined && i.budgetBytes < Number.MAX_VALUE
      ? `${formatBytes(i.budgetBytes)}, headroom ${pct(i.headroom)} → ${formatBytes(i.budgetBytes * (1 - i.headroom))} usable`
      : 'none given';
  lines.push(`model         ${describeNetwork(i, net)}`);
  lines.push(
    `image         ${i.image[0]} × ${i.image[1]}, ${i.channels} channel${i.channels > 1 ? 's' : ''}`,
  );
  lines.push(`budget        ${budget}`);
  lines.push(
    `settings      backend ${i.backend}, ${i.dtype}, optimizer ${i.optimizer}${i.saliency ? ', saliency' : ''} (from ${i.source})`,
  );
  lines.push('');
  if (!plan.fits) {
    lines.push(`does not fit  ${plan.reason}`);
    lines.push('');
    lines.push(
      formatTable(['term', `streamed, tile ${plan.smallestTile}`], breakdownRows([plan.streamed])).trimEnd(),
    );
    return `${lines.join('\n')}\n`;
  }
  const s = plan.streamed;
  const c = plan.conventional;
  const tile = s.tile[0] === s.tile[1] ? `${s.tile[0]}` : `${s.tile[0]} × ${s.tile[1]}`;
  lines.push(
    `tile          ${tile}: ${s.tiles} tile${s.tiles > 1 ? 's' : ''}, area factor ${s.areaFactor.toFixed(2)}, ` +
      `predicted time ${s.timeRatio.toFixed(2)}× conventional`,
  );
  const lean = plan.leanTile;
  if (plan.largestTile !== undefined) {
    lines.push(
      `              (the fewest tiles, least overlap: the largest tile that fits, ${plan.largestTile}, ` +
        `makes the same ${s.tiles} tiles with more compute and memory)`,
    );
  } else if (lean.tile < plan.tile && lean.areaFactor < s.areaFactor * 0.98) {
    lines.push(
      `              (tile ${lean.tile} needs the same ${lean.tiles} tiles with area factor ${lean.areaFactor.toFixed(2)}: ` +
        `${pct(1 - lean.areaFactor / s.areaFactor)} less compute and less memory; --tile ${lean.tile})`,
    );
  }
  lines.push(`streamed      ${formatBytes(s.requiredBytes)} at peak (in the ${s.peakPhase} pass)`);
  lines.push(
    `conventional  ${formatBytes(c.requiredBytes)} at peak${plan.conventionalFits ? ' (would fit too)' : ' (does not fit)'}`,
  );
  lines.push(`saving        ${formatBytes(plan.savedBytes)} (${pct(plan.savingsRatio)} less memory)`);
  lines.push('');
  lines.push(formatTable(['term', 'streamed', 'conventional'], breakdownRows([s, c])).trimEnd());
  lines.push('');
  lines.push(
    'Bytes are distinct tensor buffers at the peak plus the backend estimate; tf.profile counts every handle ' +
      `(streamed ${formatBytes(s.peakBytes)}, conventional ${formatBytes(c.peakBytes)}).`,
  );
  return `${lines.join('\n')}\n`;
}

/** The JSON report of a plan. */
export function planJson(i: PlanInputs, net: PlanNetwork, plan: TilePlan): unknown {
  const { stride, minimum } = tileConstraints(net, i.minTile ?? 0);
  const inputs = {
    model: i.model,
    bodyEnd: net.body.output,
    ...(i.width !== undefined && { width: i.width }),
    channels: i.channels,
    image: { height: i.image[0], width: i.image[1] },
    ...(i.budgetBytes !== undefined && i.budgetBytes < Number.MAX_VALUE && { budgetBytes: i.budgetBytes }),
    headroom: i.headroom,
    optimizer: i.optimizer,
    dtype: i.dtype,
    backend: i.backend,
    saliency: i.saliency,
    stride,
    minimumTile: minimum,
    parameters: parameterCount(net),
    source: i.source,
  };
  if (!plan.fits) {
    const { streamed, ...rest } = plan as NothingFits;
    return { ...inputs, ...rest, streamed: predictionJson(streamed) };
  }
  const p = plan as TileFits;
  return {
    ...inputs,
    fits: true,
    tile: p.tile,
    usableBytes: p.usableBytes,
    tiles: p.streamed.tiles,
    areaFactor: p.streamed.areaFactor,
    timeRatio: p.streamed.timeRatio,
    savingsRatio: p.savingsRatio,
    savedBytes: p.savedBytes,
    conventionalFits: p.conventionalFits,
    leanTile: p.leanTile,
    ...(p.largestTile !== undefined && { largestTile: p.largestTile }),
    streamed: predictionJson(p.streamed),
    conventional: predictionJson(p.conventional),
  };
}

function predictionJson(p: MemoryPrediction): Record<string, unknown> {
  return {
    requiredBytes: p.requiredBytes,
    bufferPeakBytes: p.bufferPeakBytes,
    workspaceBytes: p.workspaceBytes,
    peakPhase: p.peakPhase,
    breakdown: p.breakdown,
    phases: p.phases,
    tfprofilePeakBytes: p.peakBytes,
    tfprofileBreakdown: p.tfjsBreakdown,
    savedBytesPerPixel: p.savedBytesPerPixel,
  };
}

/** Where a command prints: commander's configured output (tests capture it), else stdout. */
function output(cmd: Command): (text: string) => void {
  const out = cmd.configureOutput().writeOut;
  return out ?? ((text: string) => void process.stdout.write(text));
}

/** Turns the planner's and the geometry's refusals into a command error (exit code 2). */
function fail(cmd: Command, e: unknown): never {
  if (
    e instanceof PlanError ||
    e instanceof GeometryError ||
    e instanceof BodyError ||
    e instanceof QuantityError
  ) {
    cmd.error(`error: ${e.message}`, { exitCode: EXIT_INVALID, code: 'tilestream.plan.invalid' });
  }
  throw e;
}

/** Adds `tilestream plan`. */
export function registerPlanCommands(program: Command): void {
  program
    .command('plan')
    .description(
      'predict the peak memory of streamed and conventional training and choose the largest tile that fits a GPU ' +
        `(exit code ${EXIT_INVALID}: invalid input; ${EXIT_DOES_NOT_FIT}: no tile fits)`,
    )
    .argument(
      '[manifest]',
      'a StreamingTrainingJob (YAML or JSON): its model, image size, optimizer and streaming settings',
    )
    .addOption(
      new Option('--model <arch>', 'a built-in network (overrides the manifest)').choices(ARCHITECTURES),
    )
    .option('--body-end <layer>', 'last layer of the streamed body (ResNet: layer1..layer4 or a block name)')
    .option(
      '--width <n>',
      'smallcnn channels, or the ResNet base width (64 in torchvision)',
      parsePositiveInt,
    )
    .option('--channels <n>', 'input channels (default 3)', parsePositiveInt)
    .option('--image-size <N[xM]>', 'image size in pixels: N for N×N, or HxW', parseImageSize)
    .option(
      '--gpu-memory <quantity>',
      'memory of one GPU as a Kubernetes quantity (16Gi, 40960Mi)',
      parseMemory,
    )
    .option(
      '--headroom <fraction>',
      'fraction of the memory kept free (default 0.1; the manifest’s memoryHeadroom)',
      parseFraction,
    )
    .option('--min-tile <T>', 'smallest tile side to consider', parsePositiveInt)
    .option('--tile <T>', 'report this tile instead of choosing one', parsePositiveInt)
    .addOption(
      new Option('--optimizer <name>', 'optimizer whose state is kept (default adam)').choices(OPTIMIZERS),
    )
    .addOption(new Option('--dtype <dtype>', 'float size on the device (default float32)').choices(DTYPES))
    .addOption(
      new Option('--backend <name>', 'backend to plan for (default tensorflow, i.e. tfjs-node-gpu)').choices(
        BACKEND_NAMES,
      ),
    )
    .addOption(
      new Option('--pooling <kind>', 'global pooling of the head (default max)').choices(['max', 'avg']),
    )
    .option('--classes <n>', 'outputs of the dense layer (default 2)', parsePositiveInt)
    .option('--saliency', 'also compute input gradients (saliency maps)')
    .option('--json', 'print JSON')
    .action(async (manifest: string | undefined, flags: PlanFlags, cmd: Command) => {
      let inputs: PlanInputs;
      let result: { net: PlanNetwork; plan: TilePlan };
      try {
        let fromManifest: Partial<PlanInputs> = {};
        if (manifest !== undefined) {
          const loaded = await loadJobFile(manifest);
          if (!loaded.ok)
            throw new PlanError(
              `${manifest} is not a valid StreamingTrainingJob:\n${formatProblems(loaded.problems)}`,
            );
          fromManifest = inputsFromSpec(loaded.job.spec, manifest);
        }
        inputs = merge(flags, fromManifest);
        result = runPlan(inputs);
      } catch (e) {
        fail(cmd, e);
      }
      const { net, plan } = result;
      const write = output(cmd);
      write(
        flags.json
          ? `${JSON.stringify(planJson(inputs, net, plan), null, 2)}\n`
          : formatPlan(inputs, net, plan),
      );
      if (!plan.fits) {
        cmd.error(`error: no tile fits: ${plan.reason}`, {
          exitCode: EXIT_DOES_NOT_FIT,
          code: 'tilestream.plan.doesNotFit',
        });
      }
    });
}

export interface BenchMemoryFlags {
  backend: 'wasm' | 'cpu';
  sizes: number[];
  memory: number;
  tile: number;
  measure: boolean;
  maxSeconds: number;
  paper?: boolean;
  json?: boolean;
  /** Only these architectures. */
  networks?: Architecture[];
}

function parseNetworks(value: string): Architecture[] {
  const names = value.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(ARCHITECTURES as readonly string[]).includes(n)) {
      throw new InvalidArgumentError(`unknown network '${n}'; expected some of ${ARCHITECTURES.join(', ')}`);
    }
  }
  return names as Architecture[];
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
    .option('--no-measure', 'predictions only')
    .option('--max-seconds <n>', 'skip a measurement predicted to take longer', parsePositiveInt, 300)
    .option(
      '--paper',
      'print the paper check instead: MIDL 2018 at 64 MP and ResNet-34 at 8192², planner vs claims',
    )
    .option('--json', 'print JSON')
    .action(async (flags: BenchMemoryFlags, cmd: Command) => {
      const write = output(cmd);
      if (flags.paper) {
        const report = paperCheck();
        write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatPaperCheck(report));
        return;
      }
      // The measuring half runs TensorFlow (in child processes); loaded only when measuring.
      const { benchMemory, formatBenchMemory } = await import('../plan-measure/bench.ts');
      const report = await benchMemory(flags, (line) => process.stderr.write(`${line}\n`));
      write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatBenchMemory(report));
    });
}
