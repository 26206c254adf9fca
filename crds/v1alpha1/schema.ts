// The StreamingTrainingJob API (tilestream.io/v1alpha1), written once: this schema is the CRD's
// openAPIV3Schema (crds/generate.ts), the source of the TypeScript types (types.ts) and what
// validateJob checks locally (crds/validate.ts). Every CEL rule carries its JavaScript twin.
// Imports nothing from the trainer or the operator.

import { parseQuantity, QUANTITY_PATTERN } from '../quantity.ts';
import { exactlyOneOf, immutable, onlyWhen, requiredWhen } from '../rule-builder.ts';
import {
  array,
  boolean,
  defaulted,
  enumeration,
  integer,
  intOrString,
  map,
  type Node,
  narrow,
  number,
  object,
  string,
  type ValidationRule,
} from '../schema-builder.ts';
import { PHASES } from './conditions.ts';
import { MANAGED_BY_OPERATOR } from './names.ts';

// ---------------------------------------------------------------- shared pieces

const INT32_MAX = 2 ** 31 - 1;
const PATH_MAX = 4096;
/** DNS-1123 subdomain (object names: PVCs). */
const DNS1123_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/**
 * Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue): a key is an
 * optional DNS-subdomain prefix of at most 253 characters and '/', then a name of at most 63; a value
 * is at most 63 characters, alphanumeric at both ends. RE2 and ECMAScript read these alike.
 */
export const LABEL_NAME_PATTERN = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?';
export const LABEL_KEY_PATTERN = `^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?${LABEL_NAME_PATTERN}$`;
/** The prefix of a key, when it has one, is at most 253 characters. */
export const LABEL_PREFIX_PATTERN = '^[^/]{1,253}/';
export const LABEL_VALUE_PATTERN = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';
const LABEL_KEY_HINT =
  "must be a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of " +
  "at most 63 letters, digits, '-', '_' and '.' that starts and ends with a letter or digit";
const LABEL_VALUE_HINT =
  "must be a label value: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
/** A regular expression as a single-quoted CEL string literal's text (backslashes escaped). */
const celText = (re: string) => re.replace(/\\/g, '\\\\');
/** A label key as validateJob checks it (the CEL rules say the same with matches()). */
export function isLabelKey(k: string): boolean {
  return (
    new RegExp(LABEL_KEY_PATTERN).test(k) && (!k.includes('/') || new RegExp(LABEL_PREFIX_PATTERN).test(k))
  );
}

/** Tile sizes are bounded so that the memory model's arithmetic stays far inside int32. */
export const TILE_SIZE_MIN = 64;
export const TILE_SIZE_MAX = 65536;
/** GPUs of one trainer pod: one node's GPUs (8 on the usual GPU servers). */
export const GPUS_PER_POD_MAX = 8;
/** Trainer pods of one job; with GPUS_PER_POD_MAX a world of up to 512 ranks. */
export const REPLICAS_MAX = 64;
export const WORLD_SIZE_MAX = REPLICAS_MAX * GPUS_PER_POD_MAX;
/** Ranks of a job: replicas × max(gpus, 1) (trainer/distributed's world size; contract of issue 18). */
export function worldSize(r: { replicas: number; gpus: number }): number {
  return r.replicas * Math.max(r.gpus, 1);
}
/** worldSize in CEL over spec.resources (`self` the spec): CEL has no max() before the math library. */
const CEL_WORLD_SIZE = 'self.resources.replicas * (self.resources.gpus > 0 ? self.resources.gpus : 1)';

/** The longest StreamingTrainingJob name: it names the trainer Job, whose pods add a suffix, like CronJob's 52. */
export const NAME_MAX_LENGTH = 52;

const path = (description: string) => string({ description, minLength: 1, maxLength: PATH_MAX });
const relativePath = (description: string) =>
  string({
    description,
    minLength: 1,
    maxLength: PATH_MAX,
    pattern: '^[^/]',
    patternHint: "must be relative to root (must not start with '/')",
  });

function quantityHint(q: string): string {
  if (q.startsWith('-')) return 'must not be negative';
  try {
    parseQuantity(q);
    return 'must be a Kubernetes quantity';
  } catch (e) {
    // parseQuantity's message quotes the value first; the path already shows it.
    return (e as Error).message.replace(/^'.*?' is not/, 'is not');
  }
}

/** Memory or CPU as a Kubernetes quantity: a string such as '16Gi' or a plain integer. */
const quantity = (description: string) =>
  intOrString({
    description: `${description} A Kubernetes quantity, e.g. '16Gi', '40960Mi', '1.5G', '500m'.`,
    pattern: QUANTITY_PATTERN,
    patternHint: quantityHint,
    maxLength: 64,
    rules: [
      {
        rule: 'type(self) == string || self >= 0',
        message: 'must not be negative',
        check: (q) => typeof q === 'string' || q >= 0,
      },
    ],
  });

/** The volumes a job may mount: a restricted core/v1 VolumeSource (exactly one member). */
/** A hostPath volume: the same shape for the checkpoint/data volumes and for spec.pod.volumes. */
const hostPathSource = (description: string) =>
  object({
    description,
    properties: {
      path: string({
        description: 'Absolute path on the node.',
        maxLength: PATH_MAX,
        pattern: '^/',
        patternHint: 'must be an absolute path',
      }),
    },
    required: ['path'],
  });

const volumeSource = (description: string) =>
  object({
    description: `${description} Exactly one of persistentVolumeClaim or hostPath.`,
    properties: {
      persistentVolumeClaim: object({
        description: 'A PersistentVolumeClaim in the job namespace.',
        properties: {
          claimName: string({
            description: 'Name of the PersistentVolumeClaim.',
            minLength: 1,
            maxLength: 253,
            pattern: DNS1123_SUBDOMAIN,
            patternHint: "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'",
          }),
        },
        required: ['claimName'],
      }),
      hostPath: hostPathSource(
        'A directory on the node (single-node and test clusters; needs a privileged namespace policy).',
      ),
    },
    rules: [exactlyOneOf(['persistentVolumeClaim', 'hostPath'])],
  });

// ---------------------------------------------------------------- spec.model

export const CONVNEXT_ARCHITECTURES = [
  'convnext-atto',
  'convnext-femto',
  'convnext-pico',
  'convnext-nano',
  'convnext-tiny',
] as const;
export const INCEPTIONNEXT_ARCHITECTURES = ['inceptionnext-atto', 'inceptionnext-tiny'] as const;
export const RESNET_ARCHITECTURES = ['resnet18', 'resnet34', 'resnet50'] as const;
export const ARCHITECTURES = [
  ...RESNET_ARCHITECTURES,
  ...CONVNEXT_ARCHITECTURES,
  ...INCEPTIONNEXT_ARCHITECTURES,
  'midl2018',
  'smallcnn',
  'tfjs',
] as const;
export const RESNET_STAGES = ['layer1', 'layer2', 'layer3', 'layer4'] as const;
/** Where a ResNet body ends when spec.model.bodyEnd is unset (set by the trainer, not by the schema). */
export const RESNET_DEFAULT_BODY_END = 'layer3';
export const CONVNEXT_STAGES = ['stages.0', 'stages.1', 'stages.2', 'stages.3'] as const;
/** Networks cut by stage (`stages.N`, default CONVNEXT_DEFAULT_BODY_END): ConvNeXt and InceptionNeXt. */
const STAGED_ARCHITECTURES = [...CONVNEXT_ARCHITECTURES, ...INCEPTIONNEXT_ARCHITECTURES];
/** Where a ConvNeXt or InceptionNeXt body ends when spec.model.bodyEnd is unset (set by the trainer). */
export const CONVNEXT_DEFAULT_BODY_END = 'stages.2';
const celList = (xs: readonly string[]): string => `[${xs.map((x) => `'${x}'`).join(', ')}]`;
/** Channels of the smallcnn body when spec.model.width is unset. */
export const SMALLCNN_DEFAULT_WIDTH = 16;
/** Hidden size of the attention head when head.attention.hiddenSize is unset (CLAM's small model's D). */
export const ATTENTION_HIDDEN_DEFAULT = 128;

const model = object({
  description:
    'The network: a streamed convolutional body and a head. Immutable: a different model is a different job.',
  properties: {
    architecture: enumeration(ARCHITECTURES, {
      description:
        "Built-in body ('resnet18', 'resnet34', 'resnet50' with frozen batch-norm; 'convnext-atto' … 'convnext-tiny', " +
        "ConvNeXt with per-pixel layer norm; 'inceptionnext-atto', 'inceptionnext-tiny', InceptionNeXt with frozen " +
        "batch-norm; 'midl2018', the network of the MIDL 2018 abstract; 'smallcnn', a " +
        "small conv net), or 'tfjs' for a TensorFlow.js layers model in tfjsModel.",
    }),
    bodyEnd: string({
      description:
        `Where the streamed body ends. For resnet18/resnet34/resnet50 a stage, ${RESNET_STAGES.join(', ')} ` +
        `(default ${RESNET_DEFAULT_BODY_END}); for ConvNeXt and InceptionNeXt a stage, ${CONVNEXT_STAGES.join(', ')} ` +
        `(default ${CONVNEXT_DEFAULT_BODY_END}); for tfjs the name of the last layer of the body (required). ` +
        'Everything after it is the head.',
      minLength: 1,
      maxLength: 253,
      pattern: '^[A-Za-z_][A-Za-z0-9_./:-]*$',
      patternHint: "must be a layer name: a letter or '_', then letters, digits, '_', '.', '/', ':' or '-'",
    }),
    tfjsModel: path(
      'Path of a TensorFlow.js layers model.json (weights beside it). Required when architecture is tfjs. ' +
        'Relative paths are resolved against spec.data.root.',
    ),
    width: integer({
      description: `Channels of the smallcnn body (default ${SMALLCNN_DEFAULT_WIDTH}).`,
      minimum: 1,
      maximum: 1024,
    }),
    head: defaulted(
      object({
        description: 'The non-streamed part after the body: global pooling, then a dense layer.',
        properties: {
          pooling: enumeration(['max', 'avg', 'attention'], {
            description:
              'Global pooling over the body output (or the trunk output): max (as in the streaming CNN paper), ' +
              'average, or attention: gated attention-MIL as in CLAM, each position an instance, weighted by a ' +
              'learnt softmax; its attention map is written next to the saliency maps.',
            default: 'max',
          }),
          attention: object({
            description: 'The gated attention of pooling: attention.',
            properties: {
              hiddenSize: integer({
                description: `Hidden size of the attention's two gates (default ${ATTENTION_HIDDEN_DEFAULT}, as CLAM's small model).`,
                minimum: 1,
                maximum: 4096,
              }),
            },
          }),
          classes: integer({
            description:
              'Outputs of the dense layer: classes for softmax-cross-entropy (at least 2), 1 for a single ' +
              'binary logit, or the number of regression targets.',
            minimum: 1,
            maximum: 100000,
            default: 2,
          }),
        },
        rules: [onlyWhen('attention', 'pooling', ['attention'])],
      }),
    ),
    initialWeights: path(
      'Optional tilestream checkpoint (.tsckpt) to start from, e.g. pretrained on another dataset; its body ' +
        'and trunk must match spec.model, a head of another size starts fresh. Relative paths are resolved ' +
        'against spec.data.root.',
    ),
  },
  required: ['architecture'],
  rules: [
    requiredWhen('tfjsModel', 'architecture', ['tfjs']),
    onlyWhen('tfjsModel', 'architecture', ['tfjs']),
    requiredWhen('bodyEnd', 'architecture', ['tfjs']),
    onlyWhen('bodyEnd', 'architecture', [
      ...RESNET_ARCHITECTURES,
      ...CONVNEXT_ARCHITECTURES,
      ...INCEPTIONNEXT_ARCHITECTURES,
      'tfjs',
    ]),
    {
      rule: `!(self.architecture in ${celList(RESNET_ARCHITECTURES)}) || !has(self.bodyEnd) || self.bodyEnd in ${celList(RESNET_STAGES)}`,
      message: `for ${RESNET_ARCHITECTURES.join(', ')}, bodyEnd must be one of ${RESNET_STAGES.join(', ')}`,
      fieldPath: '.bodyEnd',
      check: (m) =>
        !(RESNET_ARCHITECTURES as readonly string[]).includes(m.architecture) ||
        m.bodyEnd === undefined ||
        (RESNET_STAGES as readonly string[]).includes(m.bodyEnd),
    },
    {
      rule: `!(self.architecture in ${celList(CONVNEXT_ARCHITECTURES)}) || !has(self.bodyEnd) || self.bodyEnd in ${celList(CONVNEXT_STAGES)}`,
      message: `for ConvNeXt, bodyEnd must be one of ${CONVNEXT_STAGES.join(', ')}`,
      fieldPath: '.bodyEnd',
      check: (m) =>
        !(CONVNEXT_ARCHITECTURES as readonly string[]).includes(m.architecture) ||
        m.bodyEnd === undefined ||
        (CONVNEXT_STAGES as readonly string[]).includes(m.bodyEnd),
    },
    {
      rule: `!(self.architecture in ${celList(INCEPTIONNEXT_ARCHITECTURES)}) || !has(self.bodyEnd) || self.bodyEnd in ${celList(CONVNEXT_STAGES)}`,
      message: `for InceptionNeXt, bodyEnd must be one of ${CONVNEXT_STAGES.join(', ')}`,
      fieldPath: '.bodyEnd',
      check: (m) =>
        !(INCEPTIONNEXT_ARCHITECTURES as readonly string[]).includes(m.architecture) ||
        m.bodyEnd === undefined ||
        (CONVNEXT_STAGES as readonly string[]).includes(m.bodyEnd),
    },
    onlyWhen('width', 'architecture', ['smallcnn']),
    immutable('spec.model', 'create a new StreamingTrainingJob to train a different model'),
  ],
});

/**
 * The smallest tile each built-in body can stream (trainer/plan's tileConstraints: the receptive
 * field's extent rounded up to the total stride; it does not depend on width or channels). Kept here,
 * not imported, because crds/ imports nothing of the trainer; test/crds/minimum-tiles.test.ts checks
 * it against the planner. Tiles below TILE_SIZE_MIN are refused by tileSize's own bounds anyway.
 */
export const MODEL_MINIMUM_TILES: readonly {
  architecture: Exclude<(typeof ARCHITECTURES)[number], 'tfjs'>;
  bodyEnd?: (typeof RESNET_STAGES)[number] | (typeof CONVNEXT_STAGES)[number];
  minimumPx: number;
}[] = [
  { architecture: 'resnet18', bodyEnd: 'layer1', minimumPx: 48 },
  { architecture: 'resnet18', bodyEnd: 'layer2', minimumPx: 112 },
  { architecture: 'resnet18', bodyEnd: 'layer3', minimumPx: 224 },
  { architecture: 'resnet18', bodyEnd: 'layer4', minimumPx: 448 },
  { architecture: 'resnet34', bodyEnd: 'layer1', minimumPx: 64 },
  { architecture: 'resnet34', bodyEnd: 'layer2', minimumPx: 192 },
  { architecture: 'resnet34', bodyEnd: 'layer3', minimumPx: 576 },
  { architecture: 'resnet34', bodyEnd: 'layer4', minimumPx: 960 },
  // Bottlenecks have one 3×3 conv per block (basic blocks two), so ResNet-50's tiles are smaller.
  { architecture: 'resnet50', bodyEnd: 'layer1', minimumPx: 40 },
  { architecture: 'resnet50', bodyEnd: 'layer2', minimumPx: 96 },
  { architecture: 'resnet50', bodyEnd: 'layer3', minimumPx: 288 },
  { architecture: 'resnet50', bodyEnd: 'layer4', minimumPx: 448 },
  // atto, femto and pico share their depths, so their receptive fields.
  ...(['convnext-atto', 'convnext-femto', 'convnext-pico'] as const).flatMap((architecture) =>
    (
      [
        ['stages.0', 52],
        ['stages.1', 152],
        ['stages.2', 752],
        ['stages.3', 1184],
      ] as const
    ).map(([bodyEnd, minimumPx]) => ({ architecture, bodyEnd, minimumPx })),
  ),
  { architecture: 'convnext-nano', bodyEnd: 'stages.0', minimumPx: 52 },
  { architecture: 'convnext-nano', bodyEnd: 'stages.1', minimumPx: 152 },
  { architecture: 'convnext-nano', bodyEnd: 'stages.2', minimumPx: 944 },
  { architecture: 'convnext-nano', bodyEnd: 'stages.3', minimumPx: 1376 },
  { architecture: 'convnext-tiny', bodyEnd: 'stages.0', minimumPx: 76 },
  { architecture: 'convnext-tiny', bodyEnd: 'stages.1', minimumPx: 232 },
  { architecture: 'convnext-tiny', bodyEnd: 'stages.2', minimumPx: 1104 },
  { architecture: 'convnext-tiny', bodyEnd: 'stages.3', minimumPx: 1696 },
  // InceptionNeXt: a 3×3 square and 1×9 / 1×11 band branch per block (a 7×7 in ConvNeXt).
  { architecture: 'inceptionnext-atto', bodyEnd: 'stages.0', minimumPx: 68 },
  { architecture: 'inceptionnext-atto', bodyEnd: 'stages.1', minimumPx: 200 },
  { architecture: 'inceptionnext-atto', bodyEnd: 'stages.2', minimumPx: 976 },
  { architecture: 'inceptionnext-atto', bodyEnd: 'stages.3', minimumPx: 1504 },
  { architecture: 'inceptionnext-tiny', bodyEnd: 'stages.0', minimumPx: 124 },
  { architecture: 'inceptionnext-tiny', bodyEnd: 'stages.1', minimumPx: 376 },
  { architecture: 'inceptionnext-tiny', bodyEnd: 'stages.2', minimumPx: 1840 },
  { architecture: 'inceptionnext-tiny', bodyEnd: 'stages.3', minimumPx: 2848 },
  { architecture: 'midl2018', minimumPx: 208 },
  { architecture: 'smallcnn', minimumPx: 80 },
];

/** `architecture` or `architecture/bodyEnd`: the key of a body in minimumTileRule's CEL map. */
function bodyKey(m: { architecture: string; bodyEnd?: string }): string {
  if ((RESNET_ARCHITECTURES as readonly string[]).includes(m.architecture))
    return `${m.architecture}/${m.bodyEnd ?? RESNET_DEFAULT_BODY_END}`;
  if ((STAGED_ARCHITECTURES as readonly string[]).includes(m.architecture))
    return `${m.architecture}/${m.bodyEnd ?? CONVNEXT_DEFAULT_BODY_END}`;
  return m.architecture;
}

/**
 * A fixed spec.streaming.tileSize below the body's minimum tile is refused at admission, unless the
 * tile covers the whole image (then the image is one tile). TensorFlow.js models are read by the
 * trainer only, so their minimum is checked when the trainer starts.
 */
function minimumTileRule(): ValidationRule<{
  model: { architecture: string; bodyEnd?: string };
  data: { imageSize: { height: number; width: number } };
  streaming: { tileSize: number | string };
}> {
  const table = new Map(MODEL_MINIMUM_TILES.map((m) => [bodyKey(m), m.minimumPx]));
  const celMap = `{${[...table].map(([k, px]) => `'${k}': ${px}`).join(', ')}}`;
  const a = 'self.model.architecture';
  const end = (fallback: string): string =>
    `${a} + '/' + (has(self.model.bodyEnd) ? self.model.bodyEnd : '${fallback}')`;
  const key =
    `(${a} in ${celList(RESNET_ARCHITECTURES)} ? ${end(RESNET_DEFAULT_BODY_END)} : ` +
    `${a} in ${celList(STAGED_ARCHITECTURES)} ? ${end(CONVNEXT_DEFAULT_BODY_END)} : ${a})`;
  const t = 'self.streaming.tileSize';
  return {
    rule:
      `type(${t}) == string || !(${key} in ${celMap}) || ${t} >= ${celMap}[${key}] || ` +
      `${t} >= self.data.imageSize.height || ${t} >= self.data.imageSize.width`,
    // A static message: a messageExpression naming the body exceeds the API server's cost budget.
    message:
      "streaming.tileSize is below the minimum tile of the model's body (" +
      [...table].map(([k, px]) => `${k} ${px} px`).join(', ') +
      "); use at least that, or 'auto'",
    fieldPath: '.streaming.tileSize',
    check: (s) => {
      const minimum = table.get(bodyKey(s.model));
      const tile = s.streaming.tileSize;
      return (
        typeof tile === 'string' ||
        minimum === undefined ||
        tile >= minimum ||
        tile >= s.data.imageSize.height ||
        tile >= s.data.imageSize.width
      );
    },
    describe: (s) => {
      const minimum = table.get(bodyKey(s.model));
      return (
        `streaming.tileSize is below the minimum tile of the model's body (${bodyKey(s.model)} ${minimum} px, ` +
        `from its receptive field and total stride): ${s.streaming.tileSize} is too small; use ${minimum} or more, or 'auto'`
      );
    },
  };
}

// ---------------------------------------------------------------- spec.data

const data = object({
  description:
    'The dataset: manifests of image paths and labels under one root folder. Immutable: the checkpoints ' +
    'record a position in this data.',
  properties: {
    root: path(
      'Folder that holds the manifests and images. When volume is set, the volume is mounted read-only here ' +
        'and root must be absolute. Run locally, a relative root is resolved against the directory of the job file.',
    ),
    train: relativePath(
      'Training manifest, relative to root: CSV with a header (path,label[,split]) or JSON lines ' +
        '({"path": ..., "label": ..., "split": ...}); .csv, .jsonl or .ndjson.',
    ),
    validation: relativePath(
      'Validation manifest, relative to root, in the same formats. If unset, the rows of the training ' +
        "manifest whose split is 'validation' are used.",
    ),
    volume: volumeSource('Where the data lives in the cluster, mounted read-only at root.'),
    imageSize: object({
      description:
        'Size of every image in pixels. Images of another size are reported and skipped. Planning uses it ' +
        'to predict memory.',
      properties: {
        height: integer({ description: 'Image height in pixels.', minimum: 1, maximum: 1 << 20 }),
        width: integer({ description: 'Image width in pixels.', minimum: 1, maximum: 1 << 20 }),
      },
      required: ['height', 'width'],
    }),
    channels: integer({
      description: 'Channels the network sees: 1 (grey, converted if needed) or 3 (RGB).',
      enum: [1, 3],
      default: 3,
    }),
    normalization: object({
      description:
        'Per-channel normalisation x → (x/255 − mean)/std applied to each tile. If unset, pixels are scaled to [0, 1].',
      properties: {
        mean: array(
          number({ description: 'Mean of one channel, on the [0, 1] scale.', minimum: -1000, maximum: 1000 }),
          {
            description: 'One mean per channel.',
            minItems: 1,
            maxItems: 3,
            listType: 'atomic',
          },
        ),
        std: array(
          number({
            description: 'Standard deviation of one channel, on the [0, 1] scale.',
            minimum: 0,
            exclusiveMinimum: true,
            maximum: 1000,
          }),
          {
            description: 'One standard deviation per channel.',
            minItems: 1,
            maxItems: 3,
            listType: 'atomic',
          },
        ),
      },
      required: ['mean', 'std'],
    }),
    augmentation: defaulted(
      object({
        description: 'Per-image augmentations that keep streaming exact, drawn from the job seed.',
        properties: {
          flips: boolean({ description: 'Random horizontal and vertical flips.', default: false }),
          rotate90: boolean({ description: 'Random rotations by multiples of 90°.', default: false }),
          colorJitter: number({
            description: 'Strength of random brightness/contrast/saturation changes; 0 turns it off.',
            minimum: 0,
            maximum: 1,
            default: 0,
          }),
        },
      }),
    ),
    maxBadImageFraction: number({
      description:
        'Missing, unreadable or wrongly sized images are reported and skipped; the run fails when more than ' +
        'this fraction of an epoch is bad.',
      minimum: 0,
      maximum: 1,
      default: 0.1,
    }),
    synthetic: object({
      description:
        'Generate the synthetic lesion dataset (tilestream synth) into root if its manifests are missing. ' +
        'Image size and channels come from imageSize and channels. Used by the examples.',
      properties: {
        count: integer({
          description: 'Training images (half of them positive).',
          minimum: 2,
          maximum: 1000000,
        }),
        validationCount: integer({
          description: 'Validation images (half positive).',
          minimum: 2,
          maximum: 1000000,
          default: 200,
        }),
        seed: integer({ description: 'Seed of the generator.', minimum: 0, maximum: INT32_MAX, default: 1 }),
        format: enumeration(['png', 'tiff'], {
          description: 'File format: PNG, or tiled pyramidal TIFF.',
          default: 'png',
        }),
      },
      required: ['count'],
    }),
    slides: object({
      description:
        'Read every image as a whole slide through OpenSlide 4 (Aperio .svs, Hamamatsu .ndpi, 3DHISTECH .mrxs, ' +
        'Leica .scn, Philips TIFF, Ventana .bif, DICOM WSI, tiled pyramidal TIFF), tile by tile at the chosen ' +
        'resolution, cropped to the tissue and placed into imageSize. Give micronsPerPixel, level, or both ' +
        '(then level serves slides without resolution metadata).',
      properties: {
        micronsPerPixel: number({
          description:
            'Resolution to train at, in µm per pixel: the coarsest level at least this fine is read and ' +
            'area-resampled to it. Slides without resolution metadata are refused unless level is set.',
          minimum: 0,
          exclusiveMinimum: true,
          maximum: 1000,
        }),
        level: integer({
          description: 'Pyramid level to read as it is (0 is the full resolution).',
          minimum: 0,
          maximum: 64,
        }),
        tissue: boolean({
          description:
            'Detect the tissue (Otsu threshold on HSV saturation of a thumbnail) and crop to its bounding ' +
            'box; false places the whole slide.',
          default: true,
        }),
        fit: enumeration(['crop', 'downscale'], {
          description:
            'When the tissue is larger than imageSize: crop the image-sized window with the most tissue, ' +
            'at the requested resolution, or downscale until it fits.',
          default: 'crop',
        }),
      },
      rules: [
        {
          rule: 'has(self.micronsPerPixel) || has(self.level)',
          message: 'set micronsPerPixel or level (or both)',
          check: (d) => d.micronsPerPixel !== undefined || d.level !== undefined,
        },
      ],
    }),
  },
  required: ['root', 'train', 'imageSize'],
  rules: [
    {
      rule: "!has(self.volume) || self.root.startsWith('/')",
      message: 'root must be an absolute path when volume is set (the volume is mounted there)',
      fieldPath: '.root',
      check: (d) => d.volume === undefined || d.root.startsWith('/'),
    },
    {
      rule: '!has(self.normalization) || size(self.normalization.mean) == self.channels',
      message: 'normalization.mean needs one value per channel',
      fieldPath: '.normalization.mean',
      check: (d) => d.normalization === undefined || d.normalization.mean.length === d.channels,
    },
    {
      rule: '!has(self.normalization) || size(self.normalization.std) == self.channels',
      message: 'normalization.std needs one value per channel',
      fieldPath: '.normalization.std',
      check: (d) => d.normalization === undefined || d.normalization.std.length === d.channels,
    },
    immutable(
      'spec.data',
      'the checkpoints record a position in this dataset; create a new job for other data',
    ),
  ],
});

// ---------------------------------------------------------------- spec.training

export const OPTIMIZERS = ['sgd', 'adam'] as const;
/** Values the trainer uses for optimizer fields left unset (they depend on the type, so the schema has no default). */
export const OPTIMIZER_DEFAULTS = { momentum: 0.9, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 } as const;
export const SCHEDULES = ['constant', 'cosine', 'step'] as const;
/** The step schedule's factor when spec.training.schedule.gamma is unset. */
export const STEP_SCHEDULE_DEFAULT_GAMMA = 0.1;
export const LOSSES = ['softmax-cross-entropy', 'binary-cross-entropy', 'mse'] as const;
export const BACKENDS = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;

const optimizer = object({
  description: 'The optimizer. Fields that belong to one type may be set only with that type.',
  properties: {
    type: enumeration(OPTIMIZERS, { description: 'sgd (with momentum) or adam.', default: 'adam' }),
    learningRate: number({
      description: 'Peak learning rate (after warm-up).',
      minimum: 0,
      exclusiveMinimum: true,
      maximum: 10,
      default: 0.001,
    }),
    momentum: number({
      description: `sgd only: momentum (default ${OPTIMIZER_DEFAULTS.momentum}); 0 is plain SGD.`,
      minimum: 0,
      maximum: 1,
      exclusiveMaximum: true,
    }),
    beta1: number({
      description: `adam only: first-moment decay (default ${OPTIMIZER_DEFAULTS.beta1}).`,
      minimum: 0,
      maximum: 1,
      exclusiveMaximum: true,
    }),
    beta2: number({
      description: `adam only: second-moment decay (default ${OPTIMIZER_DEFAULTS.beta2}).`,
      minimum: 0,
      maximum: 1,
      exclusiveMaximum: true,
    }),
    epsilon: number({
      description: `adam only: denominator guard (default ${OPTIMIZER_DEFAULTS.epsilon}).`,
      minimum: 0,
      exclusiveMinimum: true,
      maximum: 1,
    }),
    weightDecay: number({
      description: 'L2 weight decay added to the gradient; 0 turns it off.',
      minimum: 0,
      maximum: 1,
      default: 0,
    }),
  },
  rules: [
    onlyWhen('momentum', 'type', ['sgd']),
    onlyWhen('beta1', 'type', ['adam']),
    onlyWhen('beta2', 'type', ['adam']),
    onlyWhen('epsilon', 'type', ['adam']),
  ],
});

const schedule = object({
  description: 'Learning-rate schedule over epochs, after an optional linear warm-up.',
  properties: {
    type: enumeration(SCHEDULES, {
      description: 'constant, cosine (decay to 0 at the last epoch) or step (× gamma every stepEpochs).',
      default: 'constant',
    }),
    warmupEpochs: integer({
      description: 'Epochs of linear warm-up from 0 to the learning rate; fewer than training.epochs.',
      minimum: 0,
      maximum: 100000,
      default: 0,
    }),
    stepEpochs: integer({
      description: 'step only, required: epochs between decays.',
      minimum: 1,
      maximum: 100000,
    }),
    gamma: number({
      description: `step only: the factor applied every stepEpochs (default ${STEP_SCHEDULE_DEFAULT_GAMMA}).`,
      minimum: 0,
      exclusiveMinimum: true,
      maximum: 1,
    }),
  },
  rules: [
    requiredWhen('stepEpochs', 'type', ['step']),
    onlyWhen('stepEpochs', 'type', ['step']),
    onlyWhen('gamma', 'type', ['step']),
  ],
});

const training = object({
  description: 'How to train. Immutable: a checkpoint is only meaningful for the settings that produced it.',
  properties: {
    epochs: integer({
      description: 'Passes over the training manifest.',
      minimum: 1,
      maximum: 100000,
      default: 10,
    }),
    batchSize: integer({
      description:
        'Images per optimizer step. Images are streamed one at a time and their gradients accumulated, ' +
        'so the batch size does not change memory.',
      minimum: 1,
      maximum: 65536,
      default: 8,
    }),
    optimizer: defaulted(optimizer),
    schedule: defaulted(schedule),
    loss: enumeration(LOSSES, {
      description:
        'softmax-cross-entropy (labels are class indices, head.classes ≥ 2), binary-cross-entropy (labels 0/1 ' +
        'per output) or mse (regression targets).',
      default: 'softmax-cross-entropy',
    }),
    seed: integer({
      description:
        'Seed of weights, data order and augmentation: two runs with one seed give the same weights.',
      minimum: 0,
      maximum: INT32_MAX,
      default: 0,
    }),
    backend: enumeration(BACKENDS, {
      description:
        'TensorFlow.js backend: auto (tensorflow when `tilestream setup tensorflow` has built it, as in the trainer ' +
        'images; else wasm, else cpu) or a fixed one.',
      default: 'auto',
    }),
  },
  rules: [
    {
      rule: 'self.schedule.warmupEpochs == 0 || self.schedule.warmupEpochs < self.epochs',
      message: 'schedule.warmupEpochs must be less than epochs',
      fieldPath: '.schedule.warmupEpochs',
      check: (t) => t.schedule.warmupEpochs === 0 || t.schedule.warmupEpochs < t.epochs,
    },
    immutable(
      'spec.training',
      'a checkpoint belongs to the settings that produced it; create a new job instead',
    ),
  ],
});

// ---------------------------------------------------------------- spec.streaming

const streaming = object({
  description:
    'Tiling of the streamed body. The planner picks the tile from GPU memory unless tileSize is fixed.',
  properties: {
    tileSize: narrow<'auto' | number>()(
      intOrString({
        description:
          `Tile side in pixels: 'auto' (the largest that fits the chosen GPU) or an integer from ${TILE_SIZE_MIN} ` +
          `to ${TILE_SIZE_MAX}, rounded down to the body's total stride.`,
        default: 'auto',
        rules: [
          {
            rule: `type(self) == string ? self == 'auto' : self >= ${TILE_SIZE_MIN} && self <= ${TILE_SIZE_MAX}`,
            message: `must be 'auto' or an integer from ${TILE_SIZE_MIN} to ${TILE_SIZE_MAX}`,
            check: (t) => (typeof t === 'string' ? t === 'auto' : t >= TILE_SIZE_MIN && t <= TILE_SIZE_MAX),
          },
        ],
      }),
    ),
    minTileSize: integer({
      description:
        'Smallest tile the planner may choose or shrink to after an out-of-memory failure. A job whose minimum ' +
        'tile fits no GPU is not started (condition Planned=False, reason NoGPUWithSufficientMemory).',
      minimum: TILE_SIZE_MIN,
      maximum: TILE_SIZE_MAX,
      default: TILE_SIZE_MIN,
    }),
    memoryHeadroom: number({
      description: 'Fraction of GPU memory the planner keeps free for the allocator and the runtime.',
      minimum: 0,
      maximum: 0.9,
      default: 0.2,
    }),
    saliency: boolean({
      description: 'Also compute input gradients and write a saliency heatmap PNG per validation image.',
      default: false,
    }),
  },
  rules: [
    {
      // A tileSize out of bounds is reported by its own rule; do not blame minTileSize for it too.
      rule: `type(self.tileSize) == string || self.tileSize < ${TILE_SIZE_MIN} || self.minTileSize <= self.tileSize`,
      message: 'minTileSize must not exceed tileSize',
      fieldPath: '.minTileSize',
      check: (s) =>
        typeof s.tileSize !== 'number' || s.tileSize < TILE_SIZE_MIN || s.minTileSize <= s.tileSize,
    },
  ],
});

// ---------------------------------------------------------------- spec.resources

const toleration = object({
  description: 'A core/v1 Toleration: lets the trainer pod run on nodes with a matching taint.',
  properties: {
    key: string({
      description: 'Taint key to match; empty with operator Exists matches every taint.',
      maxLength: 317,
      // Empty (operator Exists) or a label key; the prefix length is a rule below.
      pattern: `^(${LABEL_KEY_PATTERN.slice(1, -1)})?$`,
      patternHint: LABEL_KEY_HINT,
    }),
    operator: enumeration(['Exists', 'Equal'], {
      description: 'Equal (key and value match) or Exists (key matches, value must be empty).',
      default: 'Equal',
    }),
    value: string({
      description: 'Taint value for operator Equal.',
      maxLength: 63,
      pattern: LABEL_VALUE_PATTERN,
      patternHint: LABEL_VALUE_HINT,
    }),
    effect: enumeration(['NoSchedule', 'PreferNoSchedule', 'NoExecute'], {
      description: 'Taint effect to match; unset matches all effects.',
    }),
    tolerationSeconds: integer({
      description: 'For effect NoExecute: how long the pod stays bound after the taint appears.',
      format: 'int64',
      minimum: 0,
      maximum: INT32_MAX,
    }),
  },
  rules: [
    {
      rule: "self.operator != 'Exists' || !has(self.value) || self.value == ''",
      message: 'value must be empty when operator is Exists',
      fieldPath: '.value',
      reason: 'FieldValueForbidden',
      check: (t) => t.operator !== 'Exists' || t.value === undefined || t.value === '',
    },
    {
      rule: "self.operator == 'Exists' || (has(self.key) && self.key != '')",
      message: 'key is required unless operator is Exists',
      fieldPath: '.key',
      reason: 'FieldValueRequired',
      check: (t) => t.operator === 'Exists' || (t.key !== undefined && t.key !== ''),
    },
    {
      rule: `!has(self.key) || !self.key.contains('/') || self.key.matches('${LABEL_PREFIX_PATTERN}')`,
      message: 'key: the prefix before / must be at most 253 characters (a label key)',
      fieldPath: '.key',
      check: (t) =>
        t.key === undefined || !t.key.includes('/') || new RegExp(LABEL_PREFIX_PATTERN).test(t.key),
    },
    {
      rule: "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
      message: 'tolerationSeconds may be set only with effect NoExecute',
      fieldPath: '.tolerationSeconds',
      reason: 'FieldValueForbidden',
      check: (t) => t.tolerationSeconds === undefined || t.effect === 'NoExecute',
    },
  ],
});

const resources = object({
  description: 'What the trainer pod asks for and where it may run.',
  properties: {
    gpus: integer({
      description:
        `GPUs (nvidia.com/gpu) per trainer pod, 0 to ${GPUS_PER_POD_MAX}; 0 trains on CPU. The pod runs one rank per ` +
        'GPU (one rank when 0), each on its own GPU; the world size is replicas × max(gpus, 1).',
      minimum: 0,
      maximum: GPUS_PER_POD_MAX,
      default: 1,
    }),
    replicas: integer({
      description:
        `Trainer pods, 1 to ${REPLICAS_MAX}. More than one runs the job data-parallel across pods (an Indexed Job ` +
        'with a headless Service; all pods on one GPU class, admitted together). training.batchSize must be a ' +
        'multiple of the world size replicas × max(gpus, 1).',
      minimum: 1,
      maximum: REPLICAS_MAX,
      default: 1,
    }),
    minGpuMemory: quantity(
      'Only GPUs with at least this much memory are considered, whatever the tile size.',
    ),
    cpu: quantity(
      'CPU request of the trainer container (no CPU limit is set: it would only throttle). Unset: 1 for a GPU ' +
        'job (the host thread feeding the GPU), 2 for a CPU job (the backend threads).',
    ),
    memory: quantity(
      'Memory request and limit of the trainer container (host memory, not GPU memory). Unset: a request ' +
        'from the plan (1 GiB for the runtime, three decoded images of data.imageSize, and on a CPU job the ' +
        'planned step memory) and no limit.',
    ),
    nodeSelector: map(
      string({
        description: 'Label value.',
        maxLength: 63,
        pattern: LABEL_VALUE_PATTERN,
        patternHint: LABEL_VALUE_HINT,
      }),
      {
        description:
          'Node labels the trainer pod requires, in addition to the chosen GPU class. Keys and values follow ' +
          "Kubernetes' label syntax.",
        maxProperties: 64,
        rules: [
          {
            rule:
              `self.all(k, k.matches('${celText(LABEL_KEY_PATTERN)}') && ` +
              `(!k.contains('/') || k.matches('${LABEL_PREFIX_PATTERN}')))`,
            message: `every key ${LABEL_KEY_HINT}`,
            check: (m) => Object.keys(m).every(isLabelKey),
          },
        ],
      },
    ),
    tolerations: array(toleration, {
      description: 'Tolerations of the trainer pod (GPU nodes are often tainted).',
      maxItems: 32,
      listType: 'atomic',
    }),
  },
  rules: [
    {
      rule: 'self.gpus > 0 || !has(self.minGpuMemory)',
      message: 'minGpuMemory needs gpus of at least 1 (a CPU job, gpus: 0, has no GPU memory to ask for)',
      fieldPath: '.minGpuMemory',
      reason: 'FieldValueForbidden',
      check: (r) => r.gpus > 0 || r.minGpuMemory === undefined,
    },
  ],
});

// ---------------------------------------------------------------- spec.checkpoint, spec.runPolicy

const checkpoint = object({
  description:
    'Where and how often the trainer saves its state; it resumes from the newest valid checkpoint on restart. ' +
    'Immutable.',
  properties: {
    volume: volumeSource('Where checkpoints live in the cluster, mounted read-write at path.'),
    path: path(
      'Checkpoint folder. Must be absolute when volume is set. Run locally, a relative path is resolved ' +
        'against the directory of the job file.',
    ),
    everySteps: integer({
      description: 'Optimizer steps between checkpoints; one is also written at the end of every epoch.',
      minimum: 1,
      maximum: INT32_MAX,
      default: 100,
    }),
    keep: integer({
      description: 'Newest checkpoints kept; older ones are deleted.',
      minimum: 1,
      maximum: 100,
      default: 3,
    }),
  },
  required: ['path'],
  rules: [
    {
      rule: "!has(self.volume) || self.path.startsWith('/')",
      message: 'path must be absolute when volume is set (the volume is mounted there)',
      fieldPath: '.path',
      check: (c) => c.volume === undefined || c.path.startsWith('/'),
    },
    immutable('spec.checkpoint', 'moving checkpoints would lose the resume point; create a new job instead'),
  ],
});

const runPolicy = object({
  description: 'Lifecycle: retries, deadlines, clean-up, suspension and queueing.',
  properties: {
    backoffLimit: integer({
      description: 'Restarts after failures other than out-of-memory before the job fails.',
      minimum: 0,
      maximum: 100,
      default: 3,
    }),
    activeDeadlineSeconds: integer({
      description: 'Seconds the job may run (counted from its start, reset on resume) before it fails.',
      format: 'int64',
      minimum: 1,
      maximum: INT32_MAX,
    }),
    ttlSecondsAfterFinished: integer({
      description:
        'Seconds after success or failure when the job and its children are deleted; unset keeps them.',
      format: 'int64',
      minimum: 0,
      maximum: INT32_MAX,
    }),
    suspend: boolean({
      description:
        'Suspend the job: its pod is deleted (after a checkpoint) and none is started until false again.',
      default: false,
    }),
    queueName: string({
      description:
        'Kueue LocalQueue; copied to the trainer Job as the kueue.x-k8s.io/queue-name label. Immutable.',
      minLength: 1,
      maxLength: 63,
      pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$',
      patternHint: "must be a LocalQueue name: lower-case letters, digits, '-' and '.'",
      rules: [{ rule: 'self == oldSelf', message: 'queueName is immutable' }],
    }),
    priorityClassName: string({
      description:
        'PriorityClass of the trainer pods (scheduling order and preemption; Kueue also reads it as the ' +
        "workload's priority unless the job has a kueue.x-k8s.io/priority-class label). Immutable.",
      minLength: 1,
      maxLength: 253,
      pattern: DNS1123_SUBDOMAIN,
      patternHint: "must be a PriorityClass name: lower-case letters, digits, '-' and '.'",
      rules: [{ rule: 'self == oldSelf', message: 'priorityClassName is immutable' }],
    }),
    managedBy: string({
      description:
        `The controller that runs this job. Unset or '${MANAGED_BY_OPERATOR}': the tilestream operator; any other ` +
        "value (e.g. 'kueue.x-k8s.io/multikueue', which dispatches it to a worker cluster) and this cluster's " +
        'operator leaves the job alone: it creates no children and writes no status (as batch/v1 Job does ' +
        'with spec.managedBy). Immutable.',
      minLength: 1,
      maxLength: 63,
      pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-A-Za-z0-9_.]*[A-Za-z0-9]$',
      patternHint: "must be a domain-prefixed path, e.g. 'kueue.x-k8s.io/multikueue'",
      rules: [{ rule: 'self == oldSelf', message: 'managedBy is immutable' }],
    }),
    maxTileReductions: integer({
      description: 'Times the tile may be shrunk and the job re-planned after an out-of-memory exit.',
      minimum: 0,
      maximum: 16,
      default: 3,
    }),
  },
  rules: [
    {
      rule: 'has(self.queueName) == has(oldSelf.queueName)',
      message: 'queueName cannot be added or removed',
    },
    {
      rule: 'has(self.priorityClassName) == has(oldSelf.priorityClassName)',
      message: 'priorityClassName cannot be added or removed',
    },
    {
      rule: 'has(self.managedBy) == has(oldSelf.managedBy)',
      message: 'managedBy cannot be added or removed',
    },
  ],
});

// ---------------------------------------------------------------- spec.pod

/** DNS-1123 label (volume names). */
const DNS1123_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** Environment variables the operator sets on the trainer: a job may not replace them. */
export const RESERVED_ENV_PREFIX = 'TILESTREAM_';
export const RESERVED_ENV_NAMES = ['HOME'] as const;
/** Volume names and mount paths of the trainer pod that the operator owns (children/trainer-job.ts). */
export const RESERVED_VOLUME_NAMES = ['workspace', 'job', 'tmp', 'data', 'checkpoints'] as const;
export const RESERVED_MOUNT_PATHS = [
  '/etc/tilestream',
  '/etc/tilestream/job.yaml',
  '/tmp',
  '/dev/termination-log',
] as const;
/** Volume kinds of spec.pod.volumes; the tenant policy allows each or not (allowedVolumeKinds). */
export const POD_VOLUME_KINDS = [
  'persistentVolumeClaim',
  'hostPath',
  'configMap',
  'secret',
  'emptyDir',
] as const;
/** Sources of spec.pod.env[].valueFrom; the tenant policy allows each or not (allowedEnvSources). */
export const ENV_SOURCES = ['secretKeyRef', 'configMapKeyRef'] as const;

const objectName = (description: string) =>
  string({
    description,
    minLength: 1,
    maxLength: 253,
    pattern: DNS1123_SUBDOMAIN,
    patternHint: "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'",
  });
const keyRef = (what: string) =>
  object({
    description: `A key of a ${what} in the job namespace.`,
    properties: {
      name: objectName(`Name of the ${what}.`),
      key: string({
        description: `Key in the ${what}'s data.`,
        minLength: 1,
        maxLength: 253,
        pattern: '^[-._a-zA-Z0-9]+$',
        patternHint: "must be a data key: letters, digits, '-', '_' and '.'",
      }),
      optional: boolean({ description: `Start the trainer even when the ${what} or key is missing.` }),
    },
    required: ['name', 'key'],
  });

const envVar = object({
  description: 'An environment variable of the trainer container (core/v1 EnvVar: value or valueFrom).',
  properties: {
    name: string({
      description: `Variable name; names starting with ${RESERVED_ENV_PREFIX} and HOME are the operator's.`,
      minLength: 1,
      maxLength: 253,
      pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$',
      patternHint: "must be letters, digits, '_', '-' and '.', not starting with a digit",
    }),
    value: string({ description: 'The value.', maxLength: 32768 }),
    valueFrom: object({
      description:
        'Where the value comes from: exactly one of secretKeyRef or configMapKeyRef (the tenant policy says ' +
        'which it allows: allowedEnvSources).',
      properties: { secretKeyRef: keyRef('Secret'), configMapKeyRef: keyRef('ConfigMap') },
      rules: [exactlyOneOf(ENV_SOURCES)],
    }),
  },
  required: ['name'],
  rules: [
    {
      rule: `!self.name.startsWith('${RESERVED_ENV_PREFIX}') && !(self.name in [${RESERVED_ENV_NAMES.map((n) => `'${n}'`).join(', ')}])`,
      message: `name: ${RESERVED_ENV_PREFIX}* and ${RESERVED_ENV_NAMES.join(', ')} are set by the operator`,
      fieldPath: '.name',
      reason: 'FieldValueForbidden',
      check: (e) =>
        !e.name.startsWith(RESERVED_ENV_PREFIX) &&
        !(RESERVED_ENV_NAMES as readonly string[]).includes(e.name),
    },
    {
      rule: '!(has(self.value) && has(self.valueFrom))',
      message: 'set value or valueFrom, not both',
      fieldPath: '.valueFrom',
      reason: 'FieldValueForbidden',
      check: (e) => !(e.value !== undefined && e.valueFrom !== undefined),
    },
  ],
});

const podVolume = object({
  description:
    'An extra volume and where the trainer mounts it: exactly one of persistentVolumeClaim, hostPath, ' +
    'configMap, secret or emptyDir (the tenant policy says which it allows: allowedVolumeKinds).',
  properties: {
    name: string({
      description: `Volume name (DNS-1123 label); ${RESERVED_VOLUME_NAMES.join(', ')} are the operator's.`,
      minLength: 1,
      maxLength: 63,
      pattern: DNS1123_LABEL,
      patternHint: "must be a DNS-1123 label: lower-case letters, digits and '-'",
    }),
    mountPath: string({
      description: 'Absolute path in the trainer container.',
      minLength: 2,
      maxLength: PATH_MAX,
      pattern: '^/',
      patternHint: 'must be an absolute path',
    }),
    readOnly: boolean({
      description:
        'Mount read-only (the default); false for a volume the trainer writes, such as scratch space.',
      default: true,
    }),
    subPath: string({
      description: 'Mount only this path inside the volume (relative, without .. segments).',
      minLength: 1,
      maxLength: PATH_MAX,
      pattern: '^[^/]',
      patternHint: "must be relative to the volume (must not start with '/')",
      // Kubernetes refuses it in the pod too; here the job is refused, not its trainer Job.
      rules: [
        {
          rule: "!self.split('/').exists(s, s == '..')",
          message: "must not contain a '..' segment",
          check: (p) => !p.split('/').includes('..'),
        },
      ],
    }),
    persistentVolumeClaim: object({
      description: 'A PersistentVolumeClaim in the job namespace.',
      properties: { claimName: objectName('Name of the PersistentVolumeClaim.') },
      required: ['claimName'],
    }),
    hostPath: hostPathSource('A directory on the node (the tenant policy limits it to hostPathPrefixes).'),
    configMap: object({
      description: 'A ConfigMap in the job namespace, its keys as files.',
      properties: { name: objectName('Name of the ConfigMap.') },
      required: ['name'],
    }),
    secret: object({
      description: 'A Secret in the job namespace, its keys as files.',
      properties: { secretName: objectName('Name of the Secret.') },
      required: ['secretName'],
    }),
    emptyDir: object({
      description: "Scratch space that lives as long as the pod (on the node's disk).",
      properties: {},
    }),
  },
  required: ['name', 'mountPath'],
  rules: [
    exactlyOneOf(POD_VOLUME_KINDS),
    {
      rule: `!(self.name in [${RESERVED_VOLUME_NAMES.map((n) => `'${n}'`).join(', ')}])`,
      message: `name: ${RESERVED_VOLUME_NAMES.join(', ')} are the operator's volumes`,
      fieldPath: '.name',
      reason: 'FieldValueForbidden',
      check: (v) => !(RESERVED_VOLUME_NAMES as readonly string[]).includes(v.name),
    },
    {
      rule: `!(self.mountPath in [${RESERVED_MOUNT_PATHS.map((n) => `'${n}'`).join(', ')}])`,
      message: `mountPath: ${RESERVED_MOUNT_PATHS.join(', ')} are the operator's mounts`,
      fieldPath: '.mountPath',
      reason: 'FieldValueForbidden',
      check: (v) => !(RESERVED_MOUNT_PATHS as readonly string[]).includes(v.mountPath),
    },
  ],
});

const matchExpression = object({
  description: 'A node label requirement (core/v1 NodeSelectorRequirement).',
  properties: {
    key: string({
      description: 'Node label key.',
      minLength: 1,
      maxLength: 317,
      pattern: LABEL_KEY_PATTERN,
      patternHint: LABEL_KEY_HINT,
    }),
    operator: enumeration(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'], {
      description: 'In/NotIn: one of values; Exists/DoesNotExist: no values; Gt/Lt: one integer value.',
    }),
    values: array(
      string({
        description: 'Label value.',
        maxLength: 63,
        pattern: LABEL_VALUE_PATTERN,
        patternHint: LABEL_VALUE_HINT,
      }),
      { description: 'Label values.', maxItems: 64, listType: 'atomic' },
    ),
  },
  required: ['key', 'operator'],
  rules: [
    {
      rule:
        "self.operator in ['Exists', 'DoesNotExist'] ? !has(self.values) || size(self.values) == 0 : " +
        "self.operator in ['Gt', 'Lt'] ? has(self.values) && size(self.values) == 1 && " +
        "self.values[0].matches('^-?[0-9]+$') : has(self.values) && size(self.values) > 0",
      message: 'values: In and NotIn need values, Exists and DoesNotExist none, Gt and Lt one integer',
      fieldPath: '.values',
      check: (m) => {
        const n = m.values?.length ?? 0;
        if (m.operator === 'Exists' || m.operator === 'DoesNotExist') return n === 0;
        if (m.operator === 'Gt' || m.operator === 'Lt')
          return n === 1 && /^-?[0-9]+$/.test(m.values?.[0] ?? '');
        return n > 0;
      },
    },
  ],
});
const nodeSelectorTerm = object({
  description: 'Requirements that all hold (core/v1 NodeSelectorTerm, label expressions only).',
  properties: {
    matchExpressions: array(matchExpression, {
      description: 'Node label requirements.',
      maxItems: 32,
      listType: 'atomic',
    }),
  },
  required: ['matchExpressions'],
});

const nodeAffinity = object({
  description:
    'Node affinity of the trainer pod (core/v1 NodeAffinity, label expressions only). The operator adds the ' +
    'chosen GPU class to every required term, and only places the job on classes whose nodes match them.',
  properties: {
    requiredDuringSchedulingIgnoredDuringExecution: object({
      description: 'Nodes the pod may run on: those matching any one of the terms.',
      properties: {
        nodeSelectorTerms: array(nodeSelectorTerm, {
          description: 'Alternatives (OR).',
          minItems: 1,
          maxItems: 8,
          listType: 'atomic',
        }),
      },
      required: ['nodeSelectorTerms'],
    }),
    preferredDuringSchedulingIgnoredDuringExecution: array(
      object({
        description: 'A weighted preference.',
        properties: {
          weight: integer({ description: 'Weight, 1 to 100.', minimum: 1, maximum: 100 }),
          preference: nodeSelectorTerm,
        },
        required: ['weight', 'preference'],
      }),
      { description: 'Nodes the scheduler prefers, by summed weight.', maxItems: 16, listType: 'atomic' },
    ),
  },
});

const pod = object({
  description:
    "Customisation of the trainer pod, as a PyTorchJob's pod template offers it; each part is checked " +
    'against the tenant policy (README: Admin guide). Immutable.',
  properties: {
    env: array(envVar, {
      description: 'Environment variables of the trainer container.',
      maxItems: 64,
      listType: 'map',
      listMapKeys: ['name'],
    }),
    volumes: array(podVolume, {
      description: 'Extra volumes mounted into the trainer container (besides data and checkpoint).',
      maxItems: 16,
      listType: 'map',
      listMapKeys: ['name'],
      rules: [
        {
          rule: 'self.all(v, self.exists_one(w, w.mountPath == v.mountPath))',
          message: 'every mountPath must be different',
          check: (vs) => new Set(vs.map((x) => x.mountPath)).size === vs.length,
        },
      ],
    }),
    serviceAccountName: string({
      description:
        'ServiceAccount the trainer runs as, for data access (e.g. cloud workload identity); the operator binds ' +
        "it to the job's status so the trainer can still report progress. Unset: a per-job account that may " +
        'touch nothing else. The tenant policy names the accounts it allows (allowedServiceAccounts).',
      minLength: 1,
      maxLength: 253,
      pattern: DNS1123_SUBDOMAIN,
      patternHint: "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'",
      rules: [
        {
          // <job>-trainer accounts may patch their job's status: another job must not borrow one,
          // whatever an admin's wildcard in allowedServiceAccounts says.
          rule: "!self.endsWith('-trainer')",
          message: "names ending in -trainer are the operator's per-job accounts",
          reason: 'FieldValueForbidden',
          check: (n) => !n.endsWith('-trainer'),
        },
      ],
    }),
    imagePullSecrets: array(
      object({
        description: 'A Secret of type kubernetes.io/dockerconfigjson in the job namespace.',
        properties: { name: objectName('Name of the Secret.') },
        required: ['name'],
      }),
      {
        description: "Secrets for pulling the trainer image, besides the operator's own.",
        maxItems: 8,
        listType: 'map',
        listMapKeys: ['name'],
      },
    ),
    nodeAffinity,
  },
  rules: [immutable('spec.pod', 'create a new job to change the trainer pod')],
});

// ---------------------------------------------------------------- spec

export const specSchema = object({
  description: 'What to train, on which data, and how to run it.',
  properties: {
    model,
    data,
    training: defaulted(training),
    streaming: defaulted(streaming),
    resources: defaulted(resources),
    checkpoint,
    runPolicy: defaulted(runPolicy),
    pod,
    image: string({
      description: 'Trainer image; defaults to the image the operator was installed with.',
      minLength: 1,
      maxLength: 512,
      pattern: '^[^\\s]+$',
      patternHint: 'must be an image reference without spaces',
    }),
  },
  required: ['model', 'data'],
  rules: [
    {
      rule: "self.training.loss != 'softmax-cross-entropy' || self.model.head.classes >= 2",
      message: 'softmax-cross-entropy needs at least 2 classes; use binary-cross-entropy for a single logit',
      fieldPath: '.model.head.classes',
      check: (s) => s.training.loss !== 'softmax-cross-entropy' || s.model.head.classes >= 2,
    },
    minimumTileRule(),
    {
      // replicas or gpus out of bounds are reported by their own bounds; do not blame batchSize (or divide by 0).
      rule:
        `self.resources.replicas < 1 || self.resources.replicas > ${REPLICAS_MAX} || self.resources.gpus < 0 || ` +
        `self.resources.gpus > ${GPUS_PER_POD_MAX} || self.training.batchSize % (${CEL_WORLD_SIZE}) == 0`,
      // A static message: a messageExpression with the numbers exceeds the API server's cost budget
      // (string(int) concatenations); validateJob's describe says the numbers.
      message:
        'training.batchSize is not a multiple of the world size resources.replicas × max(resources.gpus, 1): ' +
        'every rank streams the same share of each batch; use a multiple, or change replicas or gpus',
      fieldPath: '.training.batchSize',
      check: (s) =>
        s.resources.replicas < 1 ||
        s.resources.replicas > REPLICAS_MAX ||
        s.resources.gpus < 0 ||
        s.resources.gpus > GPUS_PER_POD_MAX ||
        s.training.batchSize % worldSize(s.resources) === 0,
      describe: (s) => {
        const n = worldSize(s.resources);
        const up = Math.ceil(s.training.batchSize / n) * n;
        return (
          `training.batchSize ${s.training.batchSize} is not a multiple of the world size ${n} ` +
          `(resources.replicas ${s.resources.replicas} × max(resources.gpus ${s.resources.gpus}, 1)): every rank ` +
          `streams the same share of each batch; use batchSize ${up}, or change replicas or gpus`
        );
      },
    },
    {
      // More than one rank per pod means one rank per GPU, and only the tensorflow backend uses a GPU.
      rule: "self.resources.gpus <= 1 || self.training.backend in ['auto', 'tensorflow']",
      message:
        "resources.gpus above 1 needs training.backend 'auto' or 'tensorflow': the wasm and cpu backends use no GPU",
      fieldPath: '.resources.gpus',
      check: (s) =>
        s.resources.gpus <= 1 || s.training.backend === 'auto' || s.training.backend === 'tensorflow',
    },
    {
      rule: 'has(self.checkpoint) == has(oldSelf.checkpoint)',
      message: 'spec.checkpoint cannot be added or removed after creation',
    },
    {
      rule: 'has(self.pod) == has(oldSelf.pod)',
      message: 'spec.pod cannot be added or removed after creation',
    },
    {
      rule:
        '!has(self.pod) || !has(self.pod.volumes) || self.pod.volumes.all(v, ' +
        '!(has(self.data.volume) && v.mountPath == self.data.root) && ' +
        '!(has(self.checkpoint) && has(self.checkpoint.volume) && v.mountPath == self.checkpoint.path))',
      message:
        'pod.volumes: a mountPath equals data.root or checkpoint.path, where the operator mounts those volumes',
      fieldPath: '.pod.volumes',
      check: (s) =>
        (s.pod?.volumes ?? []).every(
          (v) =>
            !(s.data.volume !== undefined && v.mountPath === s.data.root) &&
            !(s.checkpoint?.volume !== undefined && v.mountPath === s.checkpoint.path),
        ),
    },
  ],
});

// ---------------------------------------------------------------- status

const time = (description: string) => string({ description, format: 'date-time', maxLength: 64 });
const count = (description: string) => integer({ description, format: 'int64', minimum: 0 });
const real = (description: string) => number({ description });

/** metav1.Condition, as controller-gen emits it. */
const condition = object({
  description:
    'Condition contains details for one aspect of the current state of this API Resource (metav1.Condition).',
  properties: {
    type: string({
      description:
        'Type of condition in CamelCase: Planned, Running, Suspended, SpecApplied, QueueAvailable, Succeeded or Failed.',
      maxLength: 316,
      pattern:
        '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
    }),
    status: enumeration(['True', 'False', 'Unknown'], { description: 'Status of the condition.' }),
    observedGeneration: count('The .metadata.generation the condition was set from.'),
    lastTransitionTime: time('Last time the condition changed from one status to another.'),
    reason: string({
      description:
        'Machine-readable CamelCase reason for the last transition, e.g. NoGPUWithSufficientMemory.',
      minLength: 1,
      maxLength: 1024,
      pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
    }),
    message: string({ description: 'Human-readable details of the transition.', maxLength: 32768 }),
  },
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
});

const plan = object({
  description: 'The placement and tile the operator chose, with the memory predictions behind them.',
  properties: {
    gpuClass: string({ description: 'Name of the chosen GPU node class.', maxLength: 253 }),
    gpuProduct: string({
      description: 'GPU product (nvidia.com/gpu.product), e.g. NVIDIA-A100-SXM4-40GB.',
      maxLength: 253,
    }),
    gpuMemoryBytes: count('Memory of one GPU of that class in bytes.'),
    tileSize: integer({ description: 'Tile side in pixels given to the trainer.', minimum: 0 }),
    predictedPeakStreamedBytes: count('Predicted peak GPU memory of streamed training at this tile size.'),
    predictedPeakConventionalBytes: count('Predicted peak GPU memory of conventional whole-image training.'),
    savingsRatio: number({ description: '1 − streamed/conventional peak memory.', minimum: 0, maximum: 1 }),
    memorySaved: string({ description: "Readable summary for kubectl, e.g. '46.2Gi (94%)'.", maxLength: 64 }),
    overheadFactor: number({
      description: 'Predicted compute of streamed training relative to conventional.',
      minimum: 0,
    }),
  },
});

const progress = object({
  description: 'Training progress, reported by the trainer at a modest rate.',
  properties: {
    epoch: count('Current epoch, from 1.'),
    epochs: count('Total epochs.'),
    step: count('Optimizer steps done in total.'),
    steps: count('Optimizer steps in the whole run.'),
    loss: real('Mean training loss over the recent steps.'),
    imagesPerSecond: real('Training throughput in images per second.'),
    megapixelsPerSecond: real('Training throughput in megapixels per second.'),
    fraction: number({ description: 'Fraction of the run done.', minimum: 0, maximum: 1 }),
    percent: string({ description: "Fraction done for kubectl, e.g. '42%'.", maxLength: 8 }),
    lastUpdateTime: time('When the trainer last reported.'),
  },
});

/** What a rank says it is doing (status.ranks[].phase). */
export const RANK_PHASES = ['Starting', 'WaitingForPeers', 'Running', 'Succeeded', 'Failed'] as const;

const rankStatus = object({
  description:
    'One rank of a data-parallel job, reported by that rank itself (server-side apply under its own field ' +
    'manager, so ranks never overwrite each other).',
  properties: {
    rank: integer({
      description: 'Rank, 0 to worldSize − 1: replicaIndex × ranksPerReplica + localRank.',
      minimum: 0,
    }),
    replicaIndex: integer({ description: 'Index of its pod in the Indexed Job.', minimum: 0 }),
    localRank: integer({ description: 'Its index among the ranks of its pod (its GPU).', minimum: 0 }),
    pod: string({ description: 'Pod the rank runs in.', maxLength: 253 }),
    node: string({ description: 'Node of that pod.', maxLength: 253 }),
    phase: enumeration(RANK_PHASES, {
      description:
        'Starting, WaitingForPeers (the collective is being formed), Running, Succeeded or Failed.',
    }),
    step: count('Optimizer steps this rank has taken part in.'),
    imagesPerSecond: real("This rank's throughput in images per second (its share of each batch)."),
    allReduceFraction: number({
      description: 'Share of its step time spent in the gradient all-reduce.',
      minimum: 0,
      maximum: 1,
    }),
    lastReportTime: time('When the rank last reported.'),
    message: string({
      description: 'What the rank last said, e.g. which peer it waits for.',
      maxLength: 1024,
    }),
  },
  required: ['rank'],
});

export const statusSchema = object({
  description: 'Observed state, written by the operator and the trainer.',
  properties: {
    observedGeneration: count('The .metadata.generation this status describes.'),
    phase: enumeration(PHASES, { description: 'Summary for kubectl; the conditions are authoritative.' }),
    conditions: array(condition, {
      description: 'Conditions: Planned, Running, Suspended, SpecApplied, Succeeded, Failed.',
      maxItems: 16,
      listType: 'map',
      listMapKeys: ['type'],
    }),
    plan,
    progress,
    ranks: array(rankStatus, {
      description:
        'Per rank of a data-parallel job (resources.replicas × max(resources.gpus, 1) > 1), keyed by rank; each ' +
        'rank writes its own entry.',
      maxItems: WORLD_SIZE_MAX,
      listType: 'map',
      listMapKeys: ['rank'],
    }),
    distributed: object({
      description: 'Summary of the ranks of a data-parallel job, written by the operator from status.ranks.',
      properties: {
        worldSize: count('Ranks of the job: replicas × max(gpus, 1).'),
        replicas: count('Trainer pods.'),
        ranksReporting: count('Ranks that reported within the last few minutes.'),
        ranks: string({
          description: "Ranks running of the world size for kubectl, e.g. '4/4'.",
          maxLength: 16,
        }),
        imagesPerSecond: real('Throughput of the job: the sum over the ranks reporting.'),
        slowestRank: count(
          'The rank with the lowest throughput (the one the others wait for at each all-reduce).',
        ),
        slowestRankPod: string({ description: 'Pod of the slowest rank.', maxLength: 253 }),
        slowestRankImagesPerSecond: real('Throughput of the slowest rank.'),
      },
    }),
    lastCheckpoint: object({
      description: 'The newest checkpoint written.',
      properties: {
        path: string({ description: 'Its path.', maxLength: PATH_MAX }),
        time: time('When it was written.'),
        step: count('Optimizer step it holds.'),
        epoch: count('Epoch it was written in.'),
      },
    }),
    startTime: time('When the trainer first started.'),
    completionTime: time('When the job succeeded or failed.'),
    restarts: count('Times the trainer pod was restarted or recreated.'),
    tileReductions: count('Times the tile was shrunk after an out-of-memory exit.'),
    result: object({
      description: 'Final metrics of a succeeded run.',
      properties: {
        validationAuc: number({ description: 'Validation ROC AUC.', minimum: 0, maximum: 1 }),
        validationAccuracy: number({ description: 'Validation accuracy.', minimum: 0, maximum: 1 }),
        validationLoss: real('Validation loss.'),
        trainLoss: real('Training loss of the last epoch.'),
      },
    }),
  },
});

// ---------------------------------------------------------------- the object

export const metadataNameSchema = string({
  description: `A DNS-1035 label of at most ${NAME_MAX_LENGTH} characters: it names the trainer Job and its pods.`,
  maxLength: NAME_MAX_LENGTH,
  pattern: '^[a-z]([-a-z0-9]*[a-z0-9])?$',
  patternHint:
    "must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter, not ending with '-'",
});

/** The openAPIV3Schema of the CRD. Only metadata.name may be restricted under metadata. */
export const jobSchema = object({
  description:
    'StreamingTrainingJob trains a convolutional network on multi-megapixel images tile by tile (streaming), ' +
    'on a GPU node whose memory sets the tile size.',
  properties: {
    apiVersion: string({ description: 'APIVersion: tilestream.io/v1alpha1.', maxLength: 253 }),
    kind: string({ description: 'Kind: StreamingTrainingJob.', maxLength: 253 }),
    // Only name (and generateName) may be restricted under metadata, and nothing else may be said about it.
    metadata: { type: 'object', properties: { name: metadataNameSchema } } as Node<{ name?: string }>,
    spec: specSchema,
    status: statusSchema,
  },
  required: ['spec'],
});

export type SpecNode = typeof specSchema;
export type StatusNode = typeof statusSchema;
