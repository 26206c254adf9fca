// Imports a TensorFlow.js layers model (`model.json` + weight shards, as saved by tfjs-layers or
// written by the tensorflowjs converter from Keras) as a streamed body cut at a named layer, plus
// the trunk after the cut and a description of its classification head. The model file is read
// without @tensorflow/tfjs-layers; topology and weights are translated into the body DAG of
// graph.ts with explicit padding. What is supported and refused, and why: tfjs-import/translate.ts
// (the layer table; one module per layer family in tfjs-import/layers/) and tfjs-import/refusals.ts;
// the 'same'-padding condition: tfjs-import/same-padding.ts.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { axisName, axisProfile, axisSizes, GeometryError } from './geometry.ts';
import { type Axis, type Body, BodyError, INPUT, type SplitNetwork, splitAt } from './graph.ts';
import type { Network, Pooling } from './network.ts';
import type { SameAlignment, SkippedLayer, WeightRecipe } from './tfjs-import/layers/context.ts';
import { type KerasLayer, parseModelJson, TfjsImportError } from './tfjs-import/model-json.ts';
import { INFERENCE_IDENTITY, UnsupportedLayerError } from './tfjs-import/refusals.ts';
import { sameIsExact } from './tfjs-import/same-padding.ts';
import { Translator } from './tfjs-import/translate.ts';
import { decodeWeight, type WeightArray, WeightIndex, type WeightLocation } from './tfjs-import/weights.ts';

export type { SameAlignment, SkippedLayer, WeightRecipe } from './tfjs-import/layers/context.ts';
export { TfjsImportError } from './tfjs-import/model-json.ts';
export { UnsupportedLayerError } from './tfjs-import/refusals.ts';
export type { WeightArray } from './tfjs-import/weights.ts';

export interface TfjsImportOptions {
  /** The Keras layer whose output ends the streamed body. */
  readonly bodyEnd: string;
}

/** The classification head found after the trunk: global pooling, then (when it fits) one dense layer. */
export interface ImportedHead {
  readonly pooling: Pooling;
  /** The GlobalAveragePooling2D / GlobalMaxPooling2D layer where the trunk stops. */
  readonly poolingLayer: string;
  /**
   * The Dense layer after the pooling, when everything after the pooling is that one layer
   * (Dropout and Flatten around it and a final softmax/sigmoid are allowed). Its weights are
   * `head/dense/kernel` [features, units] and `head/dense/bias` [units]. `activation` is what the
   * model applied to its logits ('linear', 'softmax' or 'sigmoid'); the trainer's head outputs
   * logits, so it tells which loss matches (softmax → cross-entropy, sigmoid → binary).
   */
  readonly dense?: { readonly layer: string; readonly units: number; readonly activation: string };
}

/** Everything about an imported model except the weight values: pure, from model.json alone. */
export interface TfjsLayersTopology {
  /** The streamed body up to bodyEnd, and the translatable layers after it up to global pooling. */
  readonly network: SplitNetwork;
  readonly inputChannels: number;
  readonly head?: ImportedHead;
  /** Parameters by NetworkParams name (`body/…`, `trunk/…`, `head/dense/…`), with how to make each. */
  readonly recipes: readonly WeightRecipe[];
  /** 'same' layers whose padding depends on their input size (stride > 1, window > 1); see checkInputSize. */
  readonly sameAlignment: readonly SameAlignment[];
  /** Layers of the model that are not in the network, and why. */
  readonly skipped: readonly SkippedLayer[];
  /** Shard files of each manifest group, relative to model.json. */
  readonly shardPaths: readonly (readonly string[])[];
}

export interface TfjsLayersModel extends Omit<TfjsLayersTopology, 'recipes'> {
  /**
   * Weights keyed like NetworkParams: `body/<node>/kernel|bias|scale|shift`, `trunk/<node>/…` and
   * `head/dense/kernel|bias`. `scoped(tensors, 'body')` gives runBody's parameter names.
   */
  readonly weights: Map<string, WeightArray>;
}

const GLOBAL_POOLING: Record<string, Pooling> = { GlobalAveragePooling2D: 'avg', GlobalMaxPooling2D: 'max' };

function ancestorsOf(layers: ReadonlyMap<string, KerasLayer>, start: string): Set<string> {
  const seen = new Set<string>();
  const stack = [start];
  while (stack.length > 0) {
    const n = stack.pop() as string;
    if (seen.has(n)) continue;
    seen.add(n);
    for (const i of layers.get(n)?.inputs ?? []) stack.push(i);
  }
  return seen;
}

/**
 * Translates a model.json document (already JSON-decoded) into a split network cut after
 * `bodyEnd`. Every layer up to bodyEnd must translate, or this throws an error that names the
 * layer, says why it cannot stream and what to do instead. The layers after the cut become the
 * trunk when they all translate (up to a global pooling layer, which with a following Dense
 * becomes `head`); when they do not, there is no trunk and `skipped` says why.
 */
export function importTfjsLayersTopology(
  doc: unknown,
  options: TfjsImportOptions,
  source = 'model.json',
): TfjsLayersTopology {
  const { graph, manifest } = parseModelJson(doc, source);
  const byName = new Map(graph.layers.map((l) => [l.name, l]));
  const { bodyEnd } = options;
  const end = byName.get(bodyEnd);
  if (!end) {
    throw new TfjsImportError(
      `bodyEnd '${bodyEnd}' is not a layer of model '${graph.name}'; its layers are: ` +
        graph.layers.map((l) => `${l.name} (${l.className})`).join(', '),
    );
  }
  if (bodyEnd === graph.input) {
    throw new TfjsImportError(`bodyEnd '${bodyEnd}' is the model's input; the streamed body would be empty`);
  }
  const index = new WeightIndex(manifest);
  const bodyLayers = ancestorsOf(byName, bodyEnd);
  const [output, ...otherOutputs] = graph.outputs;
  const toOutput = output === undefined ? new Set<string>() : ancestorsOf(byName, output);
  const rest = toOutput.has(bodyEnd)
    ? graph.layers.filter((l) => toOutput.has(l.name) && !bodyLayers.has(l.name))
    : [];
  const restNames = new Set(rest.map((l) => l.name));
  for (const l of rest) {
    for (const i of l.inputs) {
      if (!restNames.has(i) && i !== bodyEnd) {
        throw new TfjsImportError(
          `cannot end the body at '${bodyEnd}': layer '${l.name}' (${l.className}) after it also reads '${i}' from ` +
            'before the cut (a skip connection crosses it). End the body at a layer that every later path goes ' +
            'through, such as the Add (or its activation) that closes a residual block',
        );
      }
    }
  }

  const t = new Translator(graph, index, { keep: new Set([bodyEnd, ...graph.outputs]) });
  for (const l of graph.layers) if (bodyLayers.has(l.name)) t.translate(l);
  const cut = t.nodeOf(bodyEnd);
  if (cut === INPUT) {
    throw new TfjsImportError(
      `bodyEnd '${bodyEnd}' (${end.className}) is the identity of the input; the body would be empty`,
    );
  }
  const inputChannels = t.channelsOf(graph.input);

  // The trunk: the layers after the cut up to the first global pooling (or to the output).
  const pool = rest.find((l) => GLOBAL_POOLING[l.className] !== undefined);
  const beforePool = pool ? ancestorsOf(byName, pool.name) : undefined;
  const trunkLayers = beforePool ? rest.filter((l) => beforePool.has(l.name) && l !== pool) : rest;
  const headLayers = pool ? rest.filter((l) => !beforePool?.has(l.name)) : [];
  t.section = 'trunk';
  const rollback = t.mark();
  let trunkFailure: UnsupportedLayerError | undefined;
  for (const l of trunkLayers) {
    try {
      t.translate(l);
    } catch (err) {
      if (!(err instanceof UnsupportedLayerError)) throw err;
      trunkFailure = err;
      break;
    }
  }
  const skipped: SkippedLayer[] = [];
  let head: ImportedHead | undefined;
  const headRecipes: WeightRecipe[] = [];
  let trunkOutput = cut;
  if (trunkFailure) {
    rollback();
    const failed = trunkFailure;
    skipped.push(
      ...rest.map((l) => ({
        layer: l.name,
        className: l.className,
        reason:
          l.name === failed.layer
            ? `after bodyEnd, not imported (no trunk): ${failed.message}`
            : `after bodyEnd, not imported because '${failed.layer}' (${failed.className}) cannot be`,
      })),
    );
  } else {
    skipped.push(...t.skipped);
    if (pool) {
      const poolInput = pool.inputs[0] as string;
      trunkOutput = t.nodeOf(poolInput);
      const found = analyseHead(pool, headLayers, t.channelsOf(poolInput), index);
      head = found.head;
      headRecipes.push(...found.recipes);
      skipped.push(...found.skipped);
    } else if (output !== undefined && rest.length > 0) {
      trunkOutput = t.nodeOf(output);
    }
  }
  for (const o of otherOutputs) {
    skipped.push({
      layer: o,
      className: byName.get(o)?.className ?? '?',
      reason: `an extra model output; only the first output ('${output}') is followed`,
    });
  }
  if (!toOutput.has(bodyEnd) && output !== undefined) {
    skipped.push({
      layer: output,
      className: byName.get(output)?.className ?? '?',
      reason: `the model output does not depend on bodyEnd '${bodyEnd}', so nothing after the cut is imported`,
    });
  }

  const whole: Body = { name: graph.name, inputChannels, nodes: [...t.nodes], output: trunkOutput };
  let network: SplitNetwork;
  try {
    network = splitAt(whole, cut);
  } catch (err) {
    if (err instanceof BodyError)
      throw new TfjsImportError(`model '${graph.name}' cut at '${bodyEnd}': ${err.message}`);
    throw err;
  }
  const inBody = new Set(network.body.nodes.map((n) => n.name));
  const prefixed = t.recipes.map((r) => {
    const node = r.key.slice(0, r.key.lastIndexOf('/'));
    return { ...r, key: `${inBody.has(node) ? 'body' : 'trunk'}/${r.key}` };
  });
  return {
    network,
    inputChannels,
    ...(head && { head }),
    recipes: [...prefixed, ...headRecipes],
    sameAlignment: t.alignments,
    skipped,
    shardPaths: manifest.map((g) => g.paths),
  };
}

const HEAD_OUTPUT_ACTIVATIONS = new Set(['linear', 'softmax', 'sigmoid']);

/**
 * Matches the layers after global pooling against the trainer's head (one dense layer on the
 * pooled features). Dropout and Flatten are dropped (identity at inference, and after global
 * pooling), a final softmax/sigmoid is reported; anything else leaves `dense` out.
 */
function analyseHead(
  pool: KerasLayer,
  layers: readonly KerasLayer[],
  features: number,
  index: WeightIndex,
): { head: ImportedHead; recipes: WeightRecipe[]; skipped: SkippedLayer[] } {
  const pooling = GLOBAL_POOLING[pool.className] as Pooling;
  const skipped: SkippedLayer[] = [];
  let previous = pool.name;
  let dense: KerasLayer | undefined;
  let activation = 'linear';
  const unmatched: KerasLayer[] = [];
  for (const l of layers) {
    const chained = l.inputs.length === 1 && l.inputs[0] === previous;
    previous = l.name;
    if (chained && (INFERENCE_IDENTITY.has(l.className) || l.className === 'Flatten')) {
      skipped.push({
        layer: l.name,
        className: l.className,
        reason:
          l.className === 'Flatten'
            ? 'the identity after global pooling'
            : "the identity at inference; the trainer's head has no dropout",
      });
      continue;
    }
    const act =
      l.className === 'Softmax' ? 'softmax' : l.className === 'Activation' ? l.config.activation : undefined;
    if (chained && l.className === 'Dense' && !dense) {
      dense = l;
      activation = typeof l.config.activation === 'string' ? l.config.activation : 'linear';
      continue;
    }
    if (
      chained &&
      dense &&
      activation === 'linear' &&
      typeof act === 'string' &&
      HEAD_OUTPUT_ACTIVATIONS.has(act)
    ) {
      activation = act;
      continue;
    }
    unmatched.push(l);
  }
  if (dense && HEAD_OUTPUT_ACTIVATIONS.has(activation) && unmatched.length === 0) {
    const units = dense.config.units as number;
    const kernel = index.require(dense.name, 'Dense', 'kernel', [features, units]);
    const recipes: WeightRecipe[] = [
      {
        key: 'head/dense/kernel',
        shape: [features, units],
        from: [kernel],
        make: (v) => v[0] as Float32Array,
      },
    ];
    const hasBias = dense.config.use_bias !== false;
    const bias: WeightLocation[] = hasBias ? [index.require(dense.name, 'Dense', 'bias', [units])] : [];
    recipes.push({
      key: 'head/dense/bias',
      shape: [units],
      from: bias,
      make: (v) => (hasBias ? (v[0] as Float32Array) : new Float32Array(units)),
    });
    return {
      head: { pooling, poolingLayer: pool.name, dense: { layer: dense.name, units, activation } },
      recipes,
      skipped,
    };
  }
  const extra = [...(dense ? [dense] : []), ...unmatched];
  const summary = extra.map((l) => `${l.name} (${l.className})`).join(', ');
  for (const l of extra) {
    skipped.push({
      layer: l.name,
      className: l.className,
      reason:
        "after global pooling, and the trainer's head is one dense layer on the pooled features; this model's head " +
        `is ${summary}, so no head weights are imported`,
    });
  }
  return { head: { pooling, poolingLayer: pool.name }, recipes: [], skipped };
}

/** Makes the weights of an imported topology from the bytes of each manifest group (its shards, concatenated). */
export function buildWeights(
  topology: TfjsLayersTopology,
  groupBytes: ReadonlyMap<number, Uint8Array>,
): Map<string, WeightArray> {
  const cache = new Map<WeightLocation, Float32Array>();
  const value = (w: WeightLocation): Float32Array => {
    let v = cache.get(w);
    if (!v) {
      const bytes = groupBytes.get(w.group);
      if (!bytes)
        throw new TfjsImportError(`weight '${w.spec.name}': manifest group ${w.group} was not read`);
      v = decodeWeight(w, bytes);
      cache.set(w, v);
    }
    return v;
  };
  const weights = new Map<string, WeightArray>();
  for (const r of topology.recipes) weights.set(r.key, { data: r.make(r.from.map(value)), shape: r.shape });
  return weights;
}

/** Reads model.json and the weight shards it needs, and imports the model (see importTfjsLayersTopology). */
export async function loadTfjsLayersModel(
  modelJsonPath: string,
  options: TfjsImportOptions,
): Promise<TfjsLayersModel> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(modelJsonPath, 'utf8'));
  } catch (err) {
    throw new TfjsImportError(`cannot read the model file ${modelJsonPath}: ${(err as Error).message}`);
  }
  const topology = importTfjsLayersTopology(doc, options, modelJsonPath);
  const groups = new Set(topology.recipes.flatMap((r) => r.from.map((w) => w.group)));
  const groupBytes = new Map<number, Uint8Array>();
  for (const g of groups) {
    const parts: Uint8Array[] = [];
    for (const p of topology.shardPaths[g] ?? []) {
      const file = resolve(dirname(modelJsonPath), p);
      try {
        parts.push(await readFile(file));
      } catch (err) {
        throw new TfjsImportError(
          `cannot read weight shard ${file} (listed in ${modelJsonPath}): ${(err as Error).message}`,
        );
      }
    }
    groupBytes.set(g, concatBytes(parts));
  }
  const { recipes: _recipes, ...rest } = topology;
  return { ...rest, weights: buildWeights(topology, groupBytes) };
}

function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

/**
 * The whole Network for the trainer: the imported body and trunk with the model's head (pooling
 * and dense units) unless the job overrides them. Throws when neither says what the head is.
 */
export function importedNetwork(
  model: Pick<TfjsLayersTopology, 'network' | 'head'>,
  overrides: { pooling?: Pooling; attentionHiddenSize?: number; outputs?: number } = {},
): Network {
  const pooling = overrides.pooling ?? model.head?.pooling;
  const outputs = overrides.outputs ?? model.head?.dense?.units;
  if (pooling === undefined || outputs === undefined) {
    throw new TfjsImportError(
      `the imported model has no ${pooling === undefined ? 'global pooling' : 'single dense layer'} after its trunk; ` +
        `set the head's ${pooling === undefined ? 'pooling' : 'number of outputs (classes)'} in the job`,
    );
  }
  return {
    body: model.network.body,
    ...(model.network.trunk && { trunk: model.network.trunk }),
    pooling,
    ...(overrides.attentionHiddenSize !== undefined && {
      attentionHiddenSize: overrides.attentionHiddenSize,
    }),
    outputs,
  };
}

/**
 * Checks that an image of height × width gives every 'same' layer with stride > 1 an input on which
 * its explicit padding equals TF's (a multiple of the stride, or a remainder the window fits in;
 * same-padding.ts), and that nothing vanishes. Throws a GeometryError naming the layer and the
 * nearest sizes that pass this check and also tile (multiples of the body's total stride), or
 * saying that no such size exists.
 */
export function checkInputSize(
  model: Pick<TfjsLayersTopology, 'network' | 'sameAlignment'>,
  height: number,
  width: number,
): void {
  for (const [axis, n] of [
    [0, height],
    [1, width],
  ] as const) {
    const problem = alignmentProblem(model, axis, n);
    if (problem === undefined) continue;
    const what = axisName(axis);
    const { stride, sizes } = workingSizesNear(model, axis, n);
    const advice =
      sizes.length > 0
        ? `${what}s that work nearby: ${sizes.join(', ')}`
        : `no image ${what} that tiles (a multiple of the body's total stride ${stride}) suits every layer, ` +
          "so change the model (padding 'valid' on the layer named, or the layers before it) or end the body elsewhere";
    throw new GeometryError(
      `an image ${what} of ${n} does not suit the imported model: ${problem}; ${advice}`,
    );
  }
}

/** Node output lengths of body and trunk for an input of n, or the GeometryError's message. */
function lengthsOf(
  model: Pick<TfjsLayersTopology, 'network'>,
  axis: Axis,
  n: number,
): Map<string, number> | string {
  const { body, trunk } = model.network;
  try {
    const sizes = axisSizes(body, axis, n);
    if (trunk) {
      const t = axisSizes(trunk, axis, sizes.get(body.output) as number);
      for (const [k, v] of t) if (k !== INPUT) sizes.set(k, v);
    }
    return sizes;
  } catch (err) {
    if (err instanceof GeometryError) return err.message;
    throw err;
  }
}

function alignmentProblem(
  model: Pick<TfjsLayersTopology, 'network' | 'sameAlignment'>,
  axis: Axis,
  n: number,
): string | undefined {
  const { body, trunk } = model.network;
  const sizes = lengthsOf(model, axis, n);
  if (typeof sizes === 'string') return sizes;
  for (const a of model.sameAlignment) {
    const s = a.stride[axis] as number;
    const k = a.kernel[axis] as number;
    const node = [...body.nodes, ...(trunk?.nodes ?? [])].find((x) => x.name === a.node);
    const inputName = node?.inputs[0] as string;
    const inTrunk = trunk?.nodes.some((x) => x.name === a.node) ?? false;
    const len = inputName === INPUT && inTrunk ? sizes.get(body.output) : sizes.get(inputName);
    if (len !== undefined && !sameIsExact(len, k, s)) {
      return (
        `layer '${a.layer}' (${a.className}, padding 'same', stride ${s}) would see an input of ${len}, which ` +
        `leaves a remainder of ${len % s} that its window of ${k} overhangs, and TF's 'same' padding then depends ` +
        `on the size (it pads max(k − ${len} mod ${s}, 0) = ${k - (len % s)} instead of max(k − s, 0) = ` +
        `${Math.max(k - s, 0)}), so the explicit padding of the imported body would not match the model`
      );
    }
  }
  return undefined;
}

/**
 * The nearest image lengths below and above n that pass alignmentProblem and are multiples of the
 * body's total stride S (so that they tile at any tile size). Every node length grows by P/c when
 * the input grows by P = lcm of the nodes' cumulative strides c, so the checks repeat with period
 * P once nothing vanishes (from the receptive fields on): searching P past that finds a working
 * length if one exists at all, and a working length more than P below n has a nearer one P above.
 */
export function workingSizesNear(
  model: Pick<TfjsLayersTopology, 'network' | 'sameAlignment'>,
  axis: Axis,
  n: number,
): { stride: number; sizes: number[] } {
  const { body, trunk } = model.network;
  const profile = axisProfile(body, axis);
  const S = profile.totalStride;
  const strides = [...profile.stride.values()];
  if (trunk) for (const c of axisProfile(trunk, axis).stride.values()) strides.push(S * c);
  const period = strides.reduce(lcm, S);
  // From here on nothing vanishes: the body's output has at least the trunk's receptive field.
  const steady = profile.receptiveField + S * (trunk ? axisProfile(trunk, axis).receptiveField : 1);
  const works = (m: number): boolean => alignmentProblem(model, axis, m) === undefined;
  const base = Math.floor(n / S) * S;
  let below: number | undefined;
  for (let m = base === n ? n - S : base; m >= Math.max(S, n - period); m -= S) {
    if (works(m)) {
      below = m;
      break;
    }
  }
  let above: number | undefined;
  for (let m = base + S; m <= Math.max(n, steady) + period; m += S) {
    if (works(m)) {
      above = m;
      break;
    }
  }
  return { stride: S, sizes: [below, above].filter((m) => m !== undefined) };
}

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  return (a / gcd(a, b)) * b;
}
