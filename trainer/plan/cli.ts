// `tilestream plan`: predicted memory and the tile for a GPU. The command only: the inputs and their
// defaults are inputs.ts, the plan run.ts, the report format.ts (the operator imports the first two,
// never this module, which loads commander).

import { type Command, InvalidArgumentError, Option } from 'commander';
import { QuantityError } from '../../crds/quantity.ts';
import { formatProblems, loadJobFile } from '../../crds/validate.ts';
import { commandOutput, parseMemory, parsePositiveInt } from '../cli-util.ts';
import { ARCHITECTURES, type Architecture } from '../streaming/bodies.ts';
import { GeometryError } from '../streaming/geometry.ts';
import { BodyError } from '../streaming/graph.ts';
import { ATTENTION_HIDDEN_DEFAULT, type Pooling } from '../streaming/network-shape.ts';
import { formatPlan, planJson } from './format.ts';
import { completeInputs, inputsFromSpec, type PlanInputs } from './inputs.ts';
import {
  BACKEND_NAMES,
  type BackendName,
  DTYPES,
  type Dtype,
  OPTIMIZERS,
  type OptimizerName,
  type PlanNetwork,
} from './memory.ts';
import { PlanError, type TilePlan } from './planner.ts';
import { runPlan } from './run.ts';

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
  pooling?: Pooling;
  attentionHiddenSize?: number;
  classes?: number;
  saliency?: boolean;
  json?: boolean;
}

/**
 * Flags over the manifest over PLAN_DEFAULTS. --model drops the manifest's body end and width (they
 * belong to its network), and --tile is exact where a manifest's tileSize is rounded to the stride.
 */
function merge(flags: PlanFlags, m: Partial<PlanInputs>): PlanInputs {
  const manifestNetwork = flags.model === undefined;
  // A hidden size for a head without attention would be ignored: say so rather than plan without it.
  if (flags.attentionHiddenSize !== undefined && (flags.pooling ?? m.pooling) !== 'attention') {
    throw new PlanError(
      '--attention-hidden-size applies only to the attention head: add --pooling attention ' +
        '(or head.pooling: attention in the manifest)',
    );
  }
  return completeInputs({
    model: flags.model ?? m.model,
    bodyEnd: flags.bodyEnd ?? (manifestNetwork ? m.bodyEnd : undefined),
    width: flags.width ?? (manifestNetwork ? m.width : undefined),
    channels: flags.channels ?? m.channels,
    image: flags.imageSize ?? m.image,
    budgetBytes: flags.gpuMemory ?? m.budgetBytes,
    headroom: flags.headroom ?? m.headroom,
    minTile: flags.minTile ?? m.minTile,
    tile: flags.tile ?? m.tile,
    roundTile: flags.tile === undefined ? m.roundTile : undefined,
    optimizer: flags.optimizer ?? m.optimizer,
    dtype: flags.dtype,
    backend: flags.backend ?? m.backend,
    pooling: flags.pooling ?? m.pooling,
    attentionHiddenSize: flags.attentionHiddenSize ?? m.attentionHiddenSize,
    classes: flags.classes ?? m.classes,
    saliency: flags.saliency ?? m.saliency,
    source: m.source,
  });
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
    .option(
      '--body-end <layer>',
      'last layer of the streamed body (ResNet: layer1..layer4; ConvNeXt, InceptionNeXt: stages.0..stages.3; or a block name)',
    )
    .option(
      '--width <n>',
      'smallcnn channels, the ResNet base width (64 in torchvision) or the ConvNeXt/InceptionNeXt stage-0 width',
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
      new Option('--pooling <kind>', 'global pooling of the head (default max)').choices([
        'max',
        'avg',
        'attention',
      ]),
    )
    .option(
      '--attention-hidden-size <n>',
      `hidden size of the attention head's gates (default ${ATTENTION_HIDDEN_DEFAULT})`,
      parsePositiveInt,
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
      const write = commandOutput(cmd);
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
