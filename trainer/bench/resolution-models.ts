// The models `tilestream bench resolution` can train, named ARCHITECTURE-POOLING on the command line
// (`--models smallcnn-max,convnext-atto-attention`), and the StreamingTrainingJob each run trains.
// Pure: no I/O, so the option parsing and the job building are tested without training.

import { MODEL_MINIMUM_TILES } from '../../crds/v1alpha1/schema.ts';

export const RESOLUTION_POOLINGS = ['max', 'avg', 'attention'] as const;
export type ResolutionPooling = (typeof RESOLUTION_POOLINGS)[number];

/** What the bench needs to know of a body: its spec.model fields and the settings it trains with. */
interface BenchArchitecture {
  /** spec.model without the head. */
  model: { architecture: 'smallcnn' | 'convnext-atto'; width?: number; bodyEnd?: string };
  /** Tile of the full-resolution run (streamed) unless --tile is given. */
  tile: number;
  /** Adam's learning rate unless --learning-rate is given. */
  learningRate: number;
  why: string;
}

export const BENCH_ARCHITECTURES: Readonly<Record<string, BenchArchitecture>> = {
  smallcnn: {
    model: { architecture: 'smallcnn', width: 16 },
    tile: 256,
    learningRate: 0.003,
    why: '3×3 convs and 2×2 max-pools, width 16; 256² tiles: 9 per 512² image',
  },
  // The real ConvNeXt-atto (3.4 M parameters), streamed to stages.1 (stride 8, minimum tile 152): to
  // stages.2 its minimum tile is 752, larger than the 512² image, so it could not stream at all.
  // Stages 2–3 run conventionally as the trunk on the 64² stitched map. Tile 328 is the planner's
  // smallest for 2×2 tiles (`tilestream plan --model convnext-atto --body-end stages.1 --tile 384`
  // suggests it: area factor 1.64 where 9 tiles of 272 cost 2.54).
  'convnext-atto': {
    model: { architecture: 'convnext-atto', bodyEnd: 'stages.1' },
    tile: 328,
    learningRate: 0.001,
    why: 'ConvNeXt-atto streamed to stages.1 (stride 8), stages 2–3 the conventional trunk; 328² tiles: 4 per 512² image',
  },
};

export interface ResolutionModel {
  /** As given on the command line: `ARCHITECTURE-POOLING`. */
  name: string;
  architecture: string;
  pooling: ResolutionPooling;
}

/**
 * Parses `--models`: comma-separated ARCHITECTURE-POOLING names, e.g. `smallcnn-max,convnext-atto-attention`.
 * Throws naming the entry that is wrong and what is accepted.
 */
export function parseResolutionModels(list: string): ResolutionModel[] {
  const names = list
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  const accepted = `ARCHITECTURE-POOLING with ARCHITECTURE ${Object.keys(BENCH_ARCHITECTURES).join(', ')} and POOLING ${RESOLUTION_POOLINGS.join(', ')} (e.g. smallcnn-max,convnext-atto-attention)`;
  if (names.length === 0) throw new Error(`--models is empty: give ${accepted}`);
  const models = names.map((name): ResolutionModel => {
    const cut = name.lastIndexOf('-');
    const architecture = cut > 0 ? name.slice(0, cut) : name;
    const pooling = cut > 0 ? name.slice(cut + 1) : '';
    if (
      !(architecture in BENCH_ARCHITECTURES) ||
      !(RESOLUTION_POOLINGS as readonly string[]).includes(pooling)
    )
      throw new Error(`--models: unknown model '${name}': expected ${accepted}`);
    return { name, architecture, pooling: pooling as ResolutionPooling };
  });
  const twice = models.find((m, i) => models.findIndex((n) => n.name === m.name) !== i);
  if (twice) throw new Error(`--models names ${twice.name} twice; give each model once`);
  return models;
}

/** The smallest tile the model's body streams with (the planner's, as the CRD's admission table holds it). */
export function minimumTileOf(architecture: string): number {
  const model = BENCH_ARCHITECTURES[architecture]?.model;
  const row = MODEL_MINIMUM_TILES.find(
    (m) => m.architecture === model?.architecture && (m.bodyEnd ?? undefined) === model?.bodyEnd,
  );
  if (!row) throw new Error(`no minimum tile known for ${architecture} (${JSON.stringify(model)})`);
  return row.minimumPx;
}

export interface RunSettings {
  epochs: number;
  seed: number;
  backend: string;
  /** Overrides every model's tile of the full-resolution run. */
  tile?: number;
  /** Overrides every model's learning rate. */
  learningRate?: number;
}

/** One training of the bench: a model at one resolution, and the job that trains it. */
export interface ResolutionJob {
  /** File-name safe: `<model>-<resolution>`. */
  name: string;
  model: ResolutionModel;
  resolution: 'full' | 'downsampled';
  image: number;
  tile: number;
  /** Whether the image is cut into more than one tile; false: one tile, i.e. conventional training. */
  streamed: boolean;
  learningRate: number;
  /** Why the run is or is not streamed, for the report. */
  note: string;
  job: object;
}

/**
 * The two runs of a model: streamed at full resolution, and on the `factor`× downsampled copy. A
 * downsampled image smaller than the body's minimum tile is trained as one tile, i.e. conventionally
 * (the CRD accepts a tile below the minimum when it covers the whole image).
 */
export function resolutionJobs(
  model: ResolutionModel,
  data: { full: string; downsampled: string },
  size: number,
  factor: number,
  s: RunSettings,
): ResolutionJob[] {
  const arch = BENCH_ARCHITECTURES[model.architecture];
  if (!arch) throw new Error(`unknown architecture ${model.architecture}`);
  if (size % factor !== 0) throw new Error(`--size ${size} is not a multiple of --factor ${factor}`);
  const minimum = minimumTileOf(model.architecture);
  const tile = s.tile ?? arch.tile;
  if (tile < minimum && tile < size)
    throw new Error(
      `--tile ${tile} is below the minimum tile of ${model.architecture} (${minimum} px, from its receptive field and stride); use ${minimum} or more`,
    );
  const small = size / factor;
  const learningRate = s.learningRate ?? arch.learningRate;
  const one = (resolution: 'full' | 'downsampled', root: string, image: number, t: number): ResolutionJob => {
    const name = `${model.name}-${resolution}`;
    const streamed = t < image;
    const note = streamed
      ? `streamed with ${t}² tiles (minimum ${minimum})`
      : image < minimum
        ? `one tile (conventional): ${image}² is below the minimum tile ${minimum}`
        : 'one tile (conventional)';
    return {
      name,
      model,
      resolution,
      image,
      tile: t,
      streamed,
      learningRate,
      note,
      job: {
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name },
        spec: {
          model: { ...arch.model, head: { pooling: model.pooling, classes: 1 } },
          data: {
            root,
            train: 'train.csv',
            validation: 'val.csv',
            imageSize: { height: image, width: image },
            channels: 1,
            normalization: { mean: [0.5], std: [0.05] },
          },
          training: {
            epochs: s.epochs,
            batchSize: 8,
            loss: 'binary-cross-entropy',
            optimizer: { type: 'adam', learningRate },
            seed: s.seed,
            backend: s.backend,
          },
          streaming: { tileSize: t },
        },
      },
    };
  };
  return [
    one('full', data.full, size, Math.min(tile, size)),
    one('downsampled', data.downsampled, small, small),
  ];
}
