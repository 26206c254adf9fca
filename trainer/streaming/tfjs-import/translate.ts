// Translates Keras layers, one at a time in topological order, into body nodes
// (trainer/streaming/graph.ts) and recipes for their parameters. Pure: weights are located in the
// manifest and their shapes checked, but read later (so a refused model fails before any shard is
// read, and a planner can use the network without the weights).
//
// Layer → nodes (a node keeps the layer's name; a fused activation adds `<layer>/<fn>`), one family
// per module of layers/, dispatched by class name through LAYERS:
//   InputLayer            the body's INPUT (NHWC, known channel count)                   (here)
//   Conv2D, DepthwiseConv2D, SeparableConv2D, Dense on a feature map                     layers/conv.ts
//   MaxPooling2D / AveragePooling2D                                                      layers/pool.ts
//   Activation / ReLU / LeakyReLU / ELU                                                  layers/activation.ts
//   BatchNormalization    frozen: a per-channel affine map                               layers/batch-norm.ts
//   LayerNormalization    over the channel axis: a layer norm node (trainable)           layers/layer-norm.ts
//   ZeroPadding2D         folded into the next conv or 'valid' avg pool, else a pad node layers/zero-padding.ts
//   Add / Concatenate     add / concat (channel axis only)                               layers/merge.ts
// Padding 'valid' is zero; 'same' is the fixed explicit padding of same-padding.ts. Everything
// else is refused with the reason (refusals.ts), except Dropout-like layers after the cut, which
// are the identity at inference and are dropped from the conventionally run trunk.

import { type BodyNode, INPUT, type Op, type Padding } from '../graph.ts';
import { ACTIVATION_LAYERS } from './layers/activation.ts';
import { BATCH_NORM_LAYERS } from './layers/batch-norm.ts';
import {
  type Activation,
  activationOp,
  type LayerContext,
  type LayerTranslator,
  passThrough,
  type SameAlignment,
  type SkippedLayer,
  single,
  type WeightRecipe,
} from './layers/context.ts';
import { CONV_LAYERS } from './layers/conv.ts';
import { LAYER_NORM_LAYERS } from './layers/layer-norm.ts';
import { MERGE_LAYERS } from './layers/merge.ts';
import { POOL_LAYERS } from './layers/pool.ts';
import { ZERO_PADDING_LAYERS } from './layers/zero-padding.ts';
import { type KerasGraph, type KerasLayer, TfjsImportError } from './model-json.ts';
import { INFERENCE_IDENTITY, refusal } from './refusals.ts';
import { addPadding } from './same-padding.ts';
import type { WeightIndex } from './weights.ts';

function input(c: LayerContext, layer: KerasLayer): void {
  if (layer.name !== c.graph.input) {
    throw new TfjsImportError(
      `InputLayer '${layer.name}' is a second input; the streamed body takes one image`,
    );
  }
  const shape = c.graph.inputShape;
  const channels = shape[3];
  if (shape.length !== 4 || typeof channels !== 'number') {
    throw new TfjsImportError(
      `the model's input '${layer.name}' has batch shape [${shape.map(String).join(', ')}]; ` +
        'the streamed body needs an image batch [batch, height, width, channels] with a known channel count',
    );
  }
  c.finish(layer, INPUT, channels);
}

/** Keras class name → its translation; one table for every family, each class in exactly one. */
const LAYERS: ReadonlyMap<string, LayerTranslator> = (() => {
  const table = new Map<string, LayerTranslator>([['InputLayer', input]]);
  for (const family of [
    CONV_LAYERS,
    POOL_LAYERS,
    ACTIVATION_LAYERS,
    BATCH_NORM_LAYERS,
    LAYER_NORM_LAYERS,
    ZERO_PADDING_LAYERS,
    MERGE_LAYERS,
  ]) {
    for (const [className, translate] of Object.entries(family)) {
      if (table.has(className)) throw new Error(`internal: two translations of Keras class ${className}`);
      table.set(className, translate);
    }
  }
  return table;
})();

export interface TranslatorOptions {
  /** Layers whose output must stay a node of its own (the cut, the model outputs): never folded away. */
  readonly keep: ReadonlySet<string>;
}

/** The network being built: what the layer families see of a Translator (LayerContext). */
class Network implements LayerContext {
  readonly nodes: BodyNode[] = [];
  readonly recipes: WeightRecipe[] = [];
  readonly alignments: SameAlignment[] = [];
  readonly graph: KerasGraph;
  readonly weights: WeightIndex;
  readonly #keep: ReadonlySet<string>;
  readonly #consumers = new Map<string, KerasLayer[]>();
  readonly #node = new Map<string, string>();
  readonly #channels = new Map<string, number>();
  /** ZeroPadding2D layers folded into their only consumer, with their padding. */
  readonly #folded = new Map<string, Padding>();

  constructor(graph: KerasGraph, weights: WeightIndex, keep: ReadonlySet<string>) {
    this.graph = graph;
    this.weights = weights;
    this.#keep = keep;
    for (const l of graph.layers) this.#consumers.set(l.name, []);
    for (const l of graph.layers) for (const i of l.inputs) this.#consumers.get(i)?.push(l);
  }

  nodeOf(layer: string): string {
    const n = this.#node.get(layer);
    if (n === undefined) throw new Error(`internal: layer '${layer}' read before it was translated`);
    return n;
  }

  channelsOf(layer: string): number {
    return this.#channels.get(layer) as number;
  }

  emit(name: string, op: Op, inputs: string[]): string {
    this.nodes.push({ name, op, inputs });
    return name;
  }

  finish(layer: KerasLayer, out: string, channels: number, activation: Activation | null = null): void {
    const node = activation
      ? this.emit(`${layer.name}/${activation.fn}`, activationOp(activation), [out])
      : out;
    this.#node.set(layer.name, node);
    this.#channels.set(layer.name, channels);
  }

  addRecipe(recipe: WeightRecipe): void {
    this.recipes.push(recipe);
  }

  addAlignment(alignment: SameAlignment): void {
    this.alignments.push(alignment);
  }

  foldedPadding(layer: string): Padding {
    return this.#folded.get(layer) ?? [0, 0, 0, 0];
  }

  fold(layer: KerasLayer, padding: Padding): void {
    const input = single(layer);
    this.#folded.set(layer.name, addPadding(padding, this.foldedPadding(input)));
    passThrough(this, layer, input);
  }

  consumersOf(layer: string): readonly KerasLayer[] {
    return this.#consumers.get(layer) ?? [];
  }

  keeps(layer: string): boolean {
    return this.#keep.has(layer);
  }
}

/**
 * Accumulates nodes, recipes and alignment requirements. `section` is 'body' while translating the
 * layers up to the cut (everything unsupported is an error) and 'trunk' after it (where layers that
 * are the identity at inference, such as Dropout, are dropped and reported instead).
 */
export class Translator {
  readonly skipped: SkippedLayer[] = [];
  section: 'body' | 'trunk' = 'body';
  readonly #network: Network;

  constructor(graph: KerasGraph, weights: WeightIndex, options: TranslatorOptions) {
    this.#network = new Network(graph, weights, options.keep);
  }

  get nodes(): readonly BodyNode[] {
    return this.#network.nodes;
  }

  get recipes(): readonly WeightRecipe[] {
    return this.#network.recipes;
  }

  get alignments(): readonly SameAlignment[] {
    return this.#network.alignments;
  }

  /** The node that holds a translated layer's output. */
  nodeOf(layer: string): string {
    return this.#network.nodeOf(layer);
  }

  channelsOf(layer: string): number {
    return this.#network.channelsOf(layer);
  }

  /** A checkpoint to roll back to when the trunk turns out not to translate. */
  mark(): () => void {
    const { nodes, recipes, alignments } = this.#network;
    const n = nodes.length;
    const r = recipes.length;
    const a = alignments.length;
    const s = this.skipped.length;
    return () => {
      nodes.length = n;
      recipes.length = r;
      alignments.length = a;
      this.skipped.length = s;
    };
  }

  translate(layer: KerasLayer): void {
    if (layer.config.data_format === 'channels_first') {
      throw new TfjsImportError(
        `layer '${layer.name}' (${layer.className}) uses data_format 'channels_first'; the streamed body is NHWC ` +
          "(channels_last). Rebuild the model with data_format='channels_last' and copy the weights " +
          '(conv kernels keep their [kh, kw, cin, cout] layout)',
      );
    }
    const translate = LAYERS.get(layer.className);
    if (translate !== undefined) {
      translate(this.#network, layer);
    } else if (this.section === 'trunk' && INFERENCE_IDENTITY.has(layer.className)) {
      passThrough(this.#network, layer, single(layer));
      this.skipped.push({
        layer: layer.name,
        className: layer.className,
        reason: 'the identity at inference; the trunk runs without it',
      });
    } else {
      throw refusal(layer, this.#network.graph.input);
    }
  }
}
