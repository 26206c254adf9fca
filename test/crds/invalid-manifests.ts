// Manifests the StreamingTrainingJob API must refuse, each with the field path the error must name.
// Reused by the real-API-server tests: creating any of these must fail, and the server's error text
// must contain `path` (and `message`, when given: the text of the CEL rule that refuses it).
// Cases marked `localOnly` are refused by validateJob but reach the API server differently.

export type Manifest = Record<string, unknown>;

export interface InvalidCase {
  /** A claim: what is wrong with the manifest. */
  name: string;
  manifest: Manifest;
  /** The field path the error must name, as the API server prints it. */
  path: string;
  /** A fragment of the message (for CEL rules, of the rule's message). */
  message?: string;
  /** Why the API server cannot be asked the same question, when it cannot. */
  localOnly?: string;
}

/** A complete, valid job: the synthetic lesion task on a PVC, as an operator user would submit it. */
export function validManifest(): Manifest {
  return {
    apiVersion: 'tilestream.io/v1alpha1',
    kind: 'StreamingTrainingJob',
    metadata: { name: 'lesions', namespace: 'default' },
    spec: {
      model: { architecture: 'smallcnn', width: 16, head: { pooling: 'max', classes: 1 } },
      data: {
        root: '/data',
        train: 'train.csv',
        validation: 'validation.csv',
        volume: { persistentVolumeClaim: { claimName: 'lesion-data' } },
        imageSize: { height: 512, width: 512 },
        channels: 1,
      },
      training: {
        epochs: 3,
        batchSize: 8,
        loss: 'binary-cross-entropy',
        optimizer: { type: 'adam', learningRate: 0.003 },
      },
      streaming: { tileSize: 'auto', minTileSize: 128 },
      resources: { gpus: 1, minGpuMemory: '8Gi', memory: '16Gi', cpu: 2 },
      checkpoint: { volume: { persistentVolumeClaim: { claimName: 'lesion-ckpt' } }, path: '/checkpoints' },
      runPolicy: { backoffLimit: 2, queueName: 'gpu-queue' },
    },
  };
}

/** A copy of `base` with the value at a dotted path set (or deleted, for `undefined`); creates missing objects. */
export function withValue(base: Manifest, path: string, value: unknown): Manifest {
  const copy = structuredClone(base);
  const keys = path.split('.');
  let node: Record<string, unknown> = copy;
  for (const k of keys.slice(0, -1)) {
    if (typeof node[k] !== 'object' || node[k] === null) node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  const last = keys.at(-1)!;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return copy;
}

/** Applies several `withValue` edits in order. */
export function edit(base: Manifest, edits: Record<string, unknown>): Manifest {
  return Object.entries(edits).reduce((m, [p, v]) => withValue(m, p, v), base);
}

const v = validManifest;
const tfjs = {
  architecture: 'tfjs',
  tfjsModel: 'models/net/model.json',
  bodyEnd: 'conv5',
  head: { classes: 1 },
};
const toleration = (t: Record<string, unknown>) => edit(v(), { 'spec.resources.tolerations': [t] });

/** The valid manifest with spec.pod set. */
const podEdit = (pod: Record<string, unknown>): Manifest => edit(v(), { 'spec.pod': pod });

export const INVALID_MANIFESTS: readonly InvalidCase[] = [
  // --- the object itself
  {
    name: 'apiVersion of another version',
    manifest: edit(v(), { apiVersion: 'tilestream.io/v1' }),
    path: 'apiVersion',
    localOnly: 'the API server routes by URL; a client would send it to a version that does not exist',
  },
  {
    name: 'kind of another resource',
    manifest: edit(v(), { kind: 'TrainingJob' }),
    path: 'kind',
    localOnly: 'the API server routes by URL; the body kind must match the route',
  },
  { name: 'unknown top-level field', manifest: edit(v(), { specs: {} }), path: 'specs' },
  {
    name: 'metadata.name missing',
    manifest: edit(v(), { 'metadata.name': undefined }),
    path: 'metadata.name',
  },
  {
    name: 'metadata.name with upper case',
    manifest: edit(v(), { 'metadata.name': 'Lesions' }),
    path: 'metadata.name',
  },
  {
    name: 'metadata.name longer than 52 characters',
    manifest: edit(v(), { 'metadata.name': `a${'b'.repeat(52)}` }),
    path: 'metadata.name',
  },
  { name: 'spec missing', manifest: edit(v(), { spec: undefined }), path: 'spec' },
  { name: 'spec is a list', manifest: edit(v(), { spec: [] }), path: 'spec' },

  // --- spec.model
  { name: 'model missing', manifest: edit(v(), { 'spec.model': undefined }), path: 'spec.model' },
  {
    name: 'architecture missing',
    manifest: edit(v(), { 'spec.model.architecture': undefined }),
    path: 'spec.model.architecture',
  },
  {
    name: 'architecture not in the enum',
    manifest: edit(v(), { 'spec.model': { architecture: 'resnet101' } }),
    path: 'spec.model.architecture',
  },
  {
    name: 'tfjs without tfjsModel',
    manifest: edit(v(), { 'spec.model': { ...tfjs, tfjsModel: undefined } }),
    path: 'spec.model.tfjsModel',
    message: 'tfjsModel is required',
  },
  {
    name: 'tfjs without bodyEnd',
    manifest: edit(v(), { 'spec.model': { ...tfjs, bodyEnd: undefined } }),
    path: 'spec.model.bodyEnd',
    message: 'bodyEnd is required',
  },
  {
    name: 'tfjsModel with a built-in architecture',
    manifest: edit(v(), { 'spec.model': { architecture: 'resnet18', tfjsModel: 'm/model.json' } }),
    path: 'spec.model.tfjsModel',
    message: 'tfjsModel may be set only',
  },
  {
    name: 'resnet bodyEnd that is not a stage',
    manifest: edit(v(), { 'spec.model': { architecture: 'resnet34', bodyEnd: 'layer5' } }),
    path: 'spec.model.bodyEnd',
    message: 'bodyEnd must be one of',
  },
  {
    name: 'ResNet-50 bodyEnd that is not a stage',
    manifest: edit(v(), { 'spec.model': { architecture: 'resnet50', bodyEnd: 'stages.2' } }),
    path: 'spec.model.bodyEnd',
    message: 'bodyEnd must be one of layer1',
  },
  {
    name: 'InceptionNeXt bodyEnd that is not a stage',
    manifest: edit(v(), { 'spec.model': { architecture: 'inceptionnext-tiny', bodyEnd: 'layer3' } }),
    path: 'spec.model.bodyEnd',
    message: 'for InceptionNeXt, bodyEnd must be one of stages.0',
  },
  {
    name: 'ConvNeXt bodyEnd that is not a stage',
    manifest: edit(v(), { 'spec.model': { architecture: 'convnext-atto', bodyEnd: 'layer3' } }),
    path: 'spec.model.bodyEnd',
    message: 'for ConvNeXt, bodyEnd must be one of stages.0',
  },
  {
    name: 'tile below the minimum of a ConvNeXt stage',
    manifest: edit(v(), {
      'spec.model': { architecture: 'convnext-tiny', bodyEnd: 'stages.1' },
      'spec.streaming.tileSize': 224,
    }),
    path: 'spec.streaming.tileSize',
    message: 'below the minimum tile',
  },
  {
    name: 'bodyEnd on smallcnn',
    manifest: edit(v(), { 'spec.model.bodyEnd': 'layer3' }),
    path: 'spec.model.bodyEnd',
    message: 'bodyEnd may be set only',
  },
  {
    name: 'width on a resnet',
    manifest: edit(v(), { 'spec.model': { architecture: 'resnet18', width: 32 } }),
    path: 'spec.model.width',
    message: 'width may be set only',
  },
  {
    name: 'bodyEnd with a space',
    manifest: edit(v(), { 'spec.model': { ...tfjs, bodyEnd: 'conv 5' } }),
    path: 'spec.model.bodyEnd',
  },
  {
    name: 'pooling not in the enum',
    manifest: edit(v(), { 'spec.model.head.pooling': 'sum' }),
    path: 'spec.model.head.pooling',
  },
  {
    name: 'attention settings with max pooling',
    manifest: edit(v(), { 'spec.model.head.attention': { hiddenSize: 64 } }),
    path: 'spec.model.head.attention',
    message: "attention may be set only when pooling is 'attention'",
  },
  {
    name: 'attention hidden size 0',
    manifest: edit(v(), {
      'spec.model.head': { pooling: 'attention', classes: 1, attention: { hiddenSize: 0 } },
    }),
    path: 'spec.model.head.attention.hiddenSize',
  },
  {
    name: 'zero classes',
    manifest: edit(v(), { 'spec.model.head.classes': 0 }),
    path: 'spec.model.head.classes',
  },
  {
    name: 'softmax-cross-entropy with one class',
    manifest: edit(v(), { 'spec.training.loss': 'softmax-cross-entropy' }),
    path: 'spec.model.head.classes',
    message: 'at least 2 classes',
  },

  // --- spec.data
  { name: 'data missing', manifest: edit(v(), { 'spec.data': undefined }), path: 'spec.data' },
  { name: 'data.root missing', manifest: edit(v(), { 'spec.data.root': undefined }), path: 'spec.data.root' },
  {
    name: 'absolute train manifest',
    manifest: edit(v(), { 'spec.data.train': '/data/train.csv' }),
    path: 'spec.data.train',
  },
  {
    name: 'relative root with a volume',
    manifest: edit(v(), { 'spec.data.root': 'data' }),
    path: 'spec.data.root',
    message: 'root must be an absolute path',
  },
  {
    name: 'volume with two sources',
    manifest: edit(v(), { 'spec.data.volume.hostPath': { path: '/srv/data' } }),
    path: 'spec.data.volume',
    message: 'exactly one of',
  },
  {
    name: 'volume with no source',
    manifest: edit(v(), { 'spec.data.volume': {} }),
    path: 'spec.data.volume',
    message: 'exactly one of',
  },
  {
    name: 'slides with neither micronsPerPixel nor level',
    manifest: edit(v(), { 'spec.data.slides': { tissue: true } }),
    path: 'spec.data.slides',
    message: 'set micronsPerPixel or level',
  },
  {
    name: 'claimName that is not a DNS name',
    manifest: edit(v(), { 'spec.data.volume.persistentVolumeClaim.claimName': 'Lesion_Data' }),
    path: 'spec.data.volume.persistentVolumeClaim.claimName',
  },
  {
    name: 'relative hostPath',
    manifest: edit(v(), { 'spec.data.volume': { hostPath: { path: 'srv' } } }),
    path: 'spec.data.volume.hostPath.path',
  },
  {
    name: 'unsupported volume type',
    manifest: edit(v(), { 'spec.data.volume': { nfs: { server: 'x' } } }),
    path: 'spec.data.volume.nfs',
  },
  {
    name: 'image height as a string',
    manifest: edit(v(), { 'spec.data.imageSize.height': '512' }),
    path: 'spec.data.imageSize.height',
  },
  {
    name: 'image width zero',
    manifest: edit(v(), { 'spec.data.imageSize.width': 0 }),
    path: 'spec.data.imageSize.width',
  },
  {
    name: 'image size without width',
    manifest: edit(v(), { 'spec.data.imageSize.width': undefined }),
    path: 'spec.data.imageSize.width',
  },
  { name: 'two channels', manifest: edit(v(), { 'spec.data.channels': 2 }), path: 'spec.data.channels' },
  {
    name: 'normalization mean for three channels on a grey image',
    manifest: edit(v(), { 'spec.data.normalization': { mean: [0.5, 0.5, 0.5], std: [0.2] } }),
    path: 'spec.data.normalization.mean',
    message: 'one value per channel',
  },
  {
    name: 'normalization std of a different length',
    manifest: edit(v(), { 'spec.data.normalization': { mean: [0.5], std: [0.2, 0.2] } }),
    path: 'spec.data.normalization.std',
    message: 'one value per channel',
  },
  {
    name: 'zero normalization std',
    manifest: edit(v(), { 'spec.data.normalization': { mean: [0.5], std: [0] } }),
    path: 'spec.data.normalization.std[0]',
  },
  {
    name: 'bad-image fraction above 1',
    manifest: edit(v(), { 'spec.data.maxBadImageFraction': 1.5 }),
    path: 'spec.data.maxBadImageFraction',
  },
  {
    name: 'negative colour jitter',
    manifest: edit(v(), { 'spec.data.augmentation': { colorJitter: -0.1 } }),
    path: 'spec.data.augmentation.colorJitter',
  },
  {
    name: 'unknown field in data',
    manifest: edit(v(), { 'spec.data.labels': 'labels.csv' }),
    path: 'spec.data.labels',
  },
  {
    name: 'synthetic with one image',
    manifest: edit(v(), { 'spec.data.synthetic': { count: 1 } }),
    path: 'spec.data.synthetic.count',
  },
  {
    name: 'synthetic JPEG',
    manifest: edit(v(), { 'spec.data.synthetic': { count: 100, format: 'jpeg' } }),
    path: 'spec.data.synthetic.format',
  },

  // --- spec.training
  { name: 'zero epochs', manifest: edit(v(), { 'spec.training.epochs': 0 }), path: 'spec.training.epochs' },
  {
    name: 'fractional batch size',
    manifest: edit(v(), { 'spec.training.batchSize': 2.5 }),
    path: 'spec.training.batchSize',
  },
  {
    name: 'optimizer not in the enum',
    manifest: edit(v(), { 'spec.training.optimizer.type': 'rmsprop' }),
    path: 'spec.training.optimizer.type',
  },
  {
    name: 'zero learning rate',
    manifest: edit(v(), { 'spec.training.optimizer.learningRate': 0 }),
    path: 'spec.training.optimizer.learningRate',
  },
  {
    name: 'momentum with adam',
    manifest: edit(v(), { 'spec.training.optimizer.momentum': 0.9 }),
    path: 'spec.training.optimizer.momentum',
    message: 'momentum may be set only',
  },
  {
    name: 'beta1 with sgd',
    manifest: edit(v(), { 'spec.training.optimizer': { type: 'sgd', beta1: 0.9 } }),
    path: 'spec.training.optimizer.beta1',
    message: 'beta1 may be set only',
  },
  {
    name: 'beta2 with sgd',
    manifest: edit(v(), { 'spec.training.optimizer': { type: 'sgd', beta2: 0.99 } }),
    path: 'spec.training.optimizer.beta2',
    message: 'beta2 may be set only',
  },
  {
    name: 'epsilon with sgd',
    manifest: edit(v(), { 'spec.training.optimizer': { type: 'sgd', epsilon: 1e-8 } }),
    path: 'spec.training.optimizer.epsilon',
    message: 'epsilon may be set only',
  },
  {
    name: 'momentum of 1',
    manifest: edit(v(), { 'spec.training.optimizer': { type: 'sgd', momentum: 1 } }),
    path: 'spec.training.optimizer.momentum',
  },
  {
    name: 'step schedule without stepEpochs',
    manifest: edit(v(), { 'spec.training.schedule': { type: 'step' } }),
    path: 'spec.training.schedule.stepEpochs',
    message: 'stepEpochs is required',
  },
  {
    name: 'stepEpochs with a cosine schedule',
    manifest: edit(v(), { 'spec.training.schedule': { type: 'cosine', stepEpochs: 2 } }),
    path: 'spec.training.schedule.stepEpochs',
    message: 'stepEpochs may be set only',
  },
  {
    name: 'gamma with a cosine schedule',
    manifest: edit(v(), { 'spec.training.schedule': { type: 'cosine', gamma: 0.5 } }),
    path: 'spec.training.schedule.gamma',
    message: 'gamma may be set only',
  },
  {
    name: 'warm-up as long as training',
    manifest: edit(v(), { 'spec.training.schedule': { warmupEpochs: 3 } }),
    path: 'spec.training.schedule.warmupEpochs',
    message: 'less than epochs',
  },
  {
    name: 'loss not in the enum',
    manifest: edit(v(), { 'spec.training.loss': 'hinge' }),
    path: 'spec.training.loss',
  },
  {
    name: 'backend not in the enum',
    manifest: edit(v(), { 'spec.training.backend': 'webgl' }),
    path: 'spec.training.backend',
  },
  { name: 'negative seed', manifest: edit(v(), { 'spec.training.seed': -1 }), path: 'spec.training.seed' },

  // --- spec.streaming
  {
    name: 'tile below 64 pixels',
    manifest: edit(v(), { 'spec.streaming': { tileSize: 32 } }),
    path: 'spec.streaming.tileSize',
    message: "must be 'auto' or an integer",
  },
  {
    name: 'tile size a word other than auto',
    manifest: edit(v(), { 'spec.streaming.tileSize': 'big' }),
    path: 'spec.streaming.tileSize',
    message: "must be 'auto' or an integer",
  },
  {
    name: 'fractional tile size',
    manifest: edit(v(), { 'spec.streaming.tileSize': 512.5 }),
    path: 'spec.streaming.tileSize',
  },
  {
    name: 'minTileSize above a fixed tileSize',
    manifest: edit(v(), { 'spec.streaming': { tileSize: 256, minTileSize: 512 } }),
    path: 'spec.streaming.minTileSize',
    message: 'minTileSize must not exceed tileSize',
  },
  {
    name: 'minTileSize below 64',
    manifest: edit(v(), { 'spec.streaming.minTileSize': 32 }),
    path: 'spec.streaming.minTileSize',
  },
  {
    name: 'memory headroom above 0.9',
    manifest: edit(v(), { 'spec.streaming.memoryHeadroom': 0.95 }),
    path: 'spec.streaming.memoryHeadroom',
  },
  {
    name: 'saliency as a string',
    manifest: edit(v(), { 'spec.streaming.saliency': 'yes' }),
    path: 'spec.streaming.saliency',
  },
  {
    name: 'misspelt tileSize',
    manifest: edit(v(), { 'spec.streaming.tilesize': 512 }),
    path: 'spec.streaming.tilesize',
  },

  // --- spec.resources
  {
    name: 'nine GPUs per pod',
    manifest: edit(v(), { 'spec.resources.gpus': 9 }),
    path: 'spec.resources.gpus',
  },
  {
    name: 'no replicas',
    manifest: edit(v(), { 'spec.resources.replicas': 0 }),
    path: 'spec.resources.replicas',
  },
  {
    name: 'more replicas than the maximum',
    manifest: edit(v(), { 'spec.resources.replicas': 65 }),
    path: 'spec.resources.replicas',
  },
  {
    name: 'a batch that does not split over two pods of two GPUs',
    manifest: edit(v(), {
      'spec.resources.replicas': 2,
      'spec.resources.gpus': 2,
      'spec.training.batchSize': 6,
    }),
    path: 'spec.training.batchSize',
    message: 'is not a multiple of the world size',
  },
  {
    name: 'a batch smaller than the world size (three CPU pods)',
    manifest: edit(v(), {
      'spec.resources': { gpus: 0, replicas: 3 },
      'spec.training.batchSize': 2,
    }),
    path: 'spec.training.batchSize',
    message: 'every rank streams the same share of each batch',
  },
  {
    name: 'several GPUs per pod on the wasm backend',
    manifest: edit(v(), { 'spec.resources.gpus': 2, 'spec.training.backend': 'wasm' }),
    path: 'spec.resources.gpus',
    message: "resources.gpus above 1 needs training.backend 'auto' or 'tensorflow'",
  },
  {
    name: 'memory with a B suffix',
    manifest: edit(v(), { 'spec.resources.memory': '16GB' }),
    path: 'spec.resources.memory',
  },
  {
    name: 'negative memory integer',
    manifest: edit(v(), { 'spec.resources.memory': -1 }),
    path: 'spec.resources.memory',
    message: 'must not be negative',
  },
  {
    name: 'negative GPU memory integer',
    manifest: edit(v(), { 'spec.resources.minGpuMemory': -1 }),
    path: 'spec.resources.minGpuMemory',
    message: 'must not be negative',
  },
  {
    name: 'negative CPU integer',
    manifest: edit(v(), { 'spec.resources.cpu': -2 }),
    path: 'spec.resources.cpu',
    message: 'must not be negative',
  },
  {
    name: 'negative GPU memory',
    manifest: edit(v(), { 'spec.resources.minGpuMemory': '-8Gi' }),
    path: 'spec.resources.minGpuMemory',
  },
  { name: 'cpu as a word', manifest: edit(v(), { 'spec.resources.cpu': 'two' }), path: 'spec.resources.cpu' },
  {
    name: 'memory as a boolean',
    manifest: edit(v(), { 'spec.resources.memory': true }),
    path: 'spec.resources.memory',
  },
  {
    name: 'minGpuMemory without a GPU',
    manifest: edit(v(), { 'spec.resources.gpus': 0 }),
    path: 'spec.resources.minGpuMemory',
    message: 'minGpuMemory needs gpus',
  },
  {
    name: 'node selector value that is a number',
    manifest: edit(v(), { 'spec.resources.nodeSelector': { pool: 7 } }),
    path: 'spec.resources.nodeSelector.pool',
  },
  {
    name: 'node selector key that is not a label key',
    manifest: edit(v(), { 'spec.resources.nodeSelector': { 'gpu pool': 'a' } }),
    path: 'spec.resources.nodeSelector',
    message: 'every key must be a label key',
  },
  {
    name: 'node selector key whose name is longer than 63 characters',
    manifest: edit(v(), { 'spec.resources.nodeSelector': { [`example.com/${'n'.repeat(64)}`]: 'a' } }),
    path: 'spec.resources.nodeSelector',
    message: 'every key must be a label key',
  },
  {
    name: 'node selector key whose prefix is longer than 253 characters',
    manifest: edit(v(), { 'spec.resources.nodeSelector': { [`${'p'.repeat(254)}/pool`]: 'a' } }),
    path: 'spec.resources.nodeSelector',
    message: 'every key must be a label key',
  },
  {
    name: 'node selector value that is not a label value',
    manifest: edit(v(), { 'spec.resources.nodeSelector': { pool: 'a/b' } }),
    path: 'spec.resources.nodeSelector.pool',
  },
  {
    name: 'toleration key that is not a label key',
    manifest: toleration({ key: 'gpu node', operator: 'Exists' }),
    path: 'spec.resources.tolerations[0].key',
  },
  {
    name: 'toleration key whose prefix is longer than 253 characters',
    manifest: toleration({ key: `${'p'.repeat(254)}/gpu`, operator: 'Exists' }),
    path: 'spec.resources.tolerations[0].key',
    message: 'the prefix before / must be at most 253 characters',
  },
  {
    name: 'toleration value that is not a label value',
    manifest: toleration({ key: 'gpu', value: 'a b' }),
    path: 'spec.resources.tolerations[0].value',
  },
  {
    name: 'fixed tileSize below the minimum tile of resnet18 (default body end layer3)',
    manifest: edit(v(), {
      'spec.model': { architecture: 'resnet18', head: { classes: 1 } },
      'spec.streaming': { tileSize: 128, minTileSize: 64 },
    }),
    path: 'spec.streaming.tileSize',
    message: 'resnet18/layer3 224 px',
  },
  {
    name: 'fixed tileSize below the minimum tile of resnet34 to layer4',
    manifest: edit(v(), {
      'spec.model': { architecture: 'resnet34', bodyEnd: 'layer4', head: { classes: 1 } },
      'spec.data.imageSize': { height: 2048, width: 2048 },
      'spec.streaming': { tileSize: 576, minTileSize: 64 },
    }),
    path: 'spec.streaming.tileSize',
    message: 'resnet34/layer4 960 px',
  },
  {
    name: 'tolerations as an object',
    manifest: edit(v(), { 'spec.resources.tolerations': { key: 'gpu' } }),
    path: 'spec.resources.tolerations',
  },
  {
    name: 'toleration operator not in the enum',
    manifest: toleration({ key: 'gpu', operator: 'In' }),
    path: 'spec.resources.tolerations[0].operator',
  },
  {
    name: 'toleration Exists with a value',
    manifest: toleration({ key: 'gpu', operator: 'Exists', value: 'a100' }),
    path: 'spec.resources.tolerations[0].value',
    message: 'value must be empty',
  },
  {
    name: 'toleration Equal without a key',
    manifest: toleration({ value: 'a100' }),
    path: 'spec.resources.tolerations[0].key',
    message: 'key is required',
  },
  {
    name: 'tolerationSeconds with NoSchedule',
    manifest: toleration({ key: 'gpu', operator: 'Exists', effect: 'NoSchedule', tolerationSeconds: 60 }),
    path: 'spec.resources.tolerations[0].tolerationSeconds',
    message: 'tolerationSeconds may be set only',
  },

  // --- spec.checkpoint, spec.runPolicy, spec.image
  {
    name: 'checkpoint without path',
    manifest: edit(v(), { 'spec.checkpoint.path': undefined }),
    path: 'spec.checkpoint.path',
  },
  {
    name: 'relative checkpoint path with a volume',
    manifest: edit(v(), { 'spec.checkpoint.path': 'ckpt' }),
    path: 'spec.checkpoint.path',
    message: 'path must be absolute',
  },
  {
    name: 'checkpoint volume with no source',
    manifest: edit(v(), { 'spec.checkpoint.volume': {} }),
    path: 'spec.checkpoint.volume',
    message: 'exactly one of',
  },
  {
    name: 'keep no checkpoints',
    manifest: edit(v(), { 'spec.checkpoint.keep': 0 }),
    path: 'spec.checkpoint.keep',
  },
  {
    name: 'negative backoffLimit',
    manifest: edit(v(), { 'spec.runPolicy.backoffLimit': -1 }),
    path: 'spec.runPolicy.backoffLimit',
  },
  {
    name: 'zero active deadline',
    manifest: edit(v(), { 'spec.runPolicy.activeDeadlineSeconds': 0 }),
    path: 'spec.runPolicy.activeDeadlineSeconds',
  },
  {
    name: 'queue name with a space',
    manifest: edit(v(), { 'spec.runPolicy.queueName': 'team a' }),
    path: 'spec.runPolicy.queueName',
  },
  {
    name: 'too many tile reductions',
    manifest: edit(v(), { 'spec.runPolicy.maxTileReductions': 100 }),
    path: 'spec.runPolicy.maxTileReductions',
  },
  {
    name: 'suspend as a string',
    manifest: edit(v(), { 'spec.runPolicy.suspend': 'true' }),
    path: 'spec.runPolicy.suspend',
  },
  {
    name: 'image with a space',
    manifest: edit(v(), { 'spec.image': 'tilestream: latest' }),
    path: 'spec.image',
  },
  {
    name: 'priorityClassName with upper case',
    manifest: edit(v(), { 'spec.runPolicy.priorityClassName': 'High' }),
    path: 'spec.runPolicy.priorityClassName',
  },
  {
    name: 'managedBy without a domain prefix',
    manifest: edit(v(), { 'spec.runPolicy.managedBy': 'multikueue' }),
    path: 'spec.runPolicy.managedBy',
  },

  // --- spec.pod (issue 15 item 5)
  {
    name: 'an env name the operator sets',
    manifest: podEdit({ env: [{ name: 'TILESTREAM_GPU_MEMORY', value: '1' }] }),
    path: 'spec.pod.env[0].name',
    message: 'are set by the operator',
  },
  {
    name: 'HOME in env',
    manifest: podEdit({ env: [{ name: 'HOME', value: '/root' }] }),
    path: 'spec.pod.env[0].name',
    message: 'are set by the operator',
  },
  {
    name: 'env with value and valueFrom',
    manifest: podEdit({
      env: [{ name: 'A', value: '1', valueFrom: { configMapKeyRef: { name: 'cm', key: 'a' } } }],
    }),
    path: 'spec.pod.env[0].valueFrom',
    message: 'set value or valueFrom, not both',
  },
  {
    name: 'env valueFrom with two sources',
    manifest: podEdit({
      env: [
        {
          name: 'A',
          valueFrom: { configMapKeyRef: { name: 'cm', key: 'a' }, secretKeyRef: { name: 's', key: 'a' } },
        },
      ],
    }),
    path: 'spec.pod.env[0].valueFrom',
    message: 'set exactly one of secretKeyRef, configMapKeyRef',
  },
  {
    name: 'env from a fieldRef (not offered)',
    manifest: podEdit({ env: [{ name: 'A', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }] }),
    path: 'spec.pod.env[0].valueFrom.fieldRef',
  },
  {
    name: 'a pod volume with two sources',
    manifest: podEdit({
      volumes: [{ name: 'x', mountPath: '/x', emptyDir: {}, configMap: { name: 'cm' } }],
    }),
    path: 'spec.pod.volumes[0]',
    message: 'set exactly one of persistentVolumeClaim, hostPath, configMap, secret, emptyDir',
  },
  {
    name: 'a pod volume named like an operator volume',
    manifest: podEdit({ volumes: [{ name: 'data', mountPath: '/x', emptyDir: {} }] }),
    path: 'spec.pod.volumes[0].name',
    message: "are the operator's volumes",
  },
  {
    name: "another job's trainer account as the service account",
    manifest: podEdit({ serviceAccountName: 'other-job-trainer' }),
    path: 'spec.pod.serviceAccountName',
    message: "names ending in -trainer are the operator's per-job accounts",
  },
  {
    name: 'a pod volume subPath that climbs out with ..',
    manifest: podEdit({
      volumes: [{ name: 'x', mountPath: '/x', subPath: 'a/../../etc', configMap: { name: 'cm' } }],
    }),
    path: 'spec.pod.volumes[0].subPath',
    message: "must not contain a '..' segment",
  },
  {
    name: 'a pod volume mounted over the job file folder',
    manifest: podEdit({ volumes: [{ name: 'x', mountPath: '/etc/tilestream', emptyDir: {} }] }),
    path: 'spec.pod.volumes[0].mountPath',
    message: "are the operator's mounts",
  },
  {
    name: 'two pod volumes at one mountPath',
    manifest: podEdit({
      volumes: [
        { name: 'x', mountPath: '/x', emptyDir: {} },
        { name: 'y', mountPath: '/x', configMap: { name: 'cm' } },
      ],
    }),
    path: 'spec.pod.volumes',
    message: 'every mountPath must be different',
  },
  {
    name: 'a pod volume mounted where the data volume is',
    manifest: podEdit({ volumes: [{ name: 'x', mountPath: '/data', emptyDir: {} }] }),
    path: 'spec.pod.volumes',
    message: 'a mountPath equals data.root or checkpoint.path',
  },
  {
    name: 'a node affinity In without values',
    manifest: podEdit({
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In' }] }],
        },
      },
    }),
    path: 'spec.pod.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values',
    message: 'In and NotIn need values',
  },
  {
    name: 'a node affinity Gt with a word',
    manifest: podEdit({
      nodeAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 10,
            preference: { matchExpressions: [{ key: 'gpu-gen', operator: 'Gt', values: ['new'] }] },
          },
        ],
      },
    }),
    path: 'spec.pod.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].values',
    message: 'Gt and Lt one integer',
  },
];

/** Everything spec.pod offers, valid. */
export const FULL_POD = {
  env: [
    { name: 'LOG_LEVEL', value: 'debug' },
    { name: 'S3_ENDPOINT', valueFrom: { configMapKeyRef: { name: 'storage', key: 'endpoint' } } },
    {
      name: 'S3_SECRET',
      valueFrom: { secretKeyRef: { name: 'storage-creds', key: 'secret', optional: true } },
    },
  ],
  volumes: [
    { name: 'scratch', mountPath: '/scratch', readOnly: false, emptyDir: {} },
    { name: 'labels', mountPath: '/labels', subPath: 'v2', configMap: { name: 'label-map' } },
    { name: 'creds', mountPath: '/var/run/creds', secret: { secretName: 'storage-creds' } },
    { name: 'more', mountPath: '/more', persistentVolumeClaim: { claimName: 'more-data' } },
    { name: 'archive', mountPath: '/archive', hostPath: { path: '/data/slides/archive' } },
  ],
  serviceAccountName: 'data-reader',
  imagePullSecrets: [{ name: 'registry-creds' }],
  nodeAffinity: {
    requiredDuringSchedulingIgnoredDuringExecution: {
      nodeSelectorTerms: [
        {
          matchExpressions: [
            { key: 'topology.kubernetes.io/zone', operator: 'In', values: ['a', 'b'] },
            { key: 'example.org/retired', operator: 'DoesNotExist' },
          ],
        },
        { matchExpressions: [{ key: 'gpu-generation', operator: 'Gt', values: ['7'] }] },
      ],
    },
    preferredDuringSchedulingIgnoredDuringExecution: [
      { weight: 50, preference: { matchExpressions: [{ key: 'disk', operator: 'NotIn', values: ['hdd'] }] } },
    ],
  },
};

/** Valid manifests of different shapes; each must be accepted (by validateJob and by the API server). */
export const VALID_MANIFESTS: readonly { name: string; manifest: Manifest }[] = [
  { name: 'the full example', manifest: validManifest() },
  {
    name: 'a minimal local job',
    manifest: {
      apiVersion: 'tilestream.io/v1alpha1',
      kind: 'StreamingTrainingJob',
      metadata: { name: 'local' },
      spec: {
        model: { architecture: 'midl2018' },
        data: { root: 'data/lesions', train: 'train.jsonl', imageSize: { height: 256, width: 256 } },
      },
    },
  },
  {
    name: 'a tfjs model with a fixed tile, sgd and a step schedule',
    manifest: edit(v(), {
      'spec.model': tfjs,
      'spec.streaming': { tileSize: 1024, minTileSize: 1024, memoryHeadroom: 0 },
      'spec.training.optimizer': { type: 'sgd', learningRate: 0.01, momentum: 0.9, weightDecay: 0.0001 },
      'spec.training.schedule': { type: 'step', stepEpochs: 1, gamma: 0.5, warmupEpochs: 1 },
    }),
  },
  {
    name: 'a resnet on hostPath data with tolerations, a node selector and integer quantities',
    manifest: edit(v(), {
      'spec.model': { architecture: 'resnet18', bodyEnd: 'layer2', head: { classes: 2, pooling: 'avg' } },
      'spec.training.loss': 'softmax-cross-entropy',
      'spec.data.volume': { hostPath: { path: '/srv/slides' } },
      'spec.data.channels': 3,
      'spec.data.normalization': { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
      'spec.data.augmentation': { flips: true, rotate90: true, colorJitter: 0.1 },
      'spec.resources': {
        gpus: 1,
        memory: 17179869184,
        cpu: '1500m',
        nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-40GB' },
        tolerations: [
          { operator: 'Exists' },
          { key: 'nvidia.com/gpu', effect: 'NoExecute', tolerationSeconds: 30, value: 'x' },
        ],
      },
      'spec.runPolicy': {
        suspend: true,
        activeDeadlineSeconds: 86400,
        ttlSecondsAfterFinished: 0,
        maxTileReductions: 0,
      },
      'spec.image': 'registry.local/tilestream:0.1.0',
    }),
  },
  {
    name: 'a CPU-only job with synthetic data and a cosine schedule',
    manifest: edit(v(), {
      'spec.resources': { gpus: 0 },
      'spec.data.synthetic': { count: 160, validationCount: 80, seed: 2, format: 'tiff' },
      'spec.training.schedule': { type: 'cosine', warmupEpochs: 2 },
      'spec.training.backend': 'wasm',
      'spec.streaming.saliency': true,
    }),
  },
  {
    name: 'a data-parallel job: two pods of four GPUs, batch 16',
    manifest: edit(v(), {
      'spec.resources.replicas': 2,
      'spec.resources.gpus': 4,
      'spec.training.batchSize': 16,
      'spec.training.backend': 'tensorflow',
    }),
  },
  {
    name: 'a data-parallel CPU job: three pods, batch 9',
    manifest: edit(v(), {
      'spec.resources': { gpus: 0, replicas: 3 },
      'spec.training.batchSize': 9,
      'spec.training.backend': 'cpu',
    }),
  },
  {
    name: 'prefixed node selector keys and an empty label value',
    manifest: edit(v(), {
      'spec.resources.nodeSelector': { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-40GB', pool: '' },
    }),
  },
  {
    name: 'a tile below the body minimum that covers the whole image',
    manifest: edit(v(), {
      'spec.model': { architecture: 'midl2018', head: { classes: 1 } },
      'spec.data.imageSize': { height: 128, width: 128 },
      'spec.streaming': { tileSize: 128, minTileSize: 64 },
    }),
  },
  {
    name: 'a customised trainer pod with a priority class, queued for MultiKueue',
    manifest: edit(v(), {
      'spec.pod': FULL_POD,
      'spec.runPolicy.priorityClassName': 'research-high',
      'spec.runPolicy.managedBy': 'kueue.x-k8s.io/multikueue',
    }),
  },
  {
    name: 'resnet18 to layer2 with a tile its default body end could not use',
    manifest: edit(v(), {
      'spec.model': { architecture: 'resnet18', bodyEnd: 'layer2', head: { classes: 1 } },
      'spec.streaming': { tileSize: 128, minTileSize: 64 },
    }),
  },
  {
    name: 'whole slides at 2 µm per pixel, level 1 for slides without resolution',
    manifest: edit(v(), { 'spec.data.slides': { micronsPerPixel: 2, level: 1, fit: 'downscale' } }),
  },
  {
    name: 'an attention-MIL head with its hidden size',
    manifest: edit(v(), {
      'spec.model.head': { pooling: 'attention', classes: 1, attention: { hiddenSize: 64 } },
    }),
  },
];
