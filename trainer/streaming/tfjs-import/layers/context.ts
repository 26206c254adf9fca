// What a layer family's translator (the other modules of this folder) may do to the network being
// built, and the records it produces. translate.ts implements LayerContext and dispatches each Keras
// class to its family; this module imports no family, so the families and translate.ts form no cycle.

import type { ActivationFn, Op, Padding, Pair } from '../../graph.ts';
import { type Config, type KerasGraph, type KerasLayer, TfjsImportError } from '../model-json.ts';
import { cutBefore } from '../refusals.ts';
import type { WeightIndex, WeightLocation } from '../weights.ts';

/** How to make one body parameter from manifest weights. */
export interface WeightRecipe {
  /** The parameter as runBody names it: `node/kernel`, `node/bias`, `node/scale` or `node/shift`. */
  readonly key: string;
  readonly shape: readonly number[];
  /** The manifest weights it is made from, in the order `make` receives their values. */
  readonly from: readonly WeightLocation[];
  readonly make: (values: readonly Float32Array[]) => Float32Array;
}

/**
 * A TF 'same' layer with stride > 1 and a window wider than 1: exact only when its input length n
 * is a multiple of the stride or the window fits in the remainder (k ≤ n mod s; same-padding.ts).
 */
export interface SameAlignment {
  readonly layer: string;
  readonly className: string;
  /** The body or trunk node whose input length must suit `kernel` and `stride`, per axis. */
  readonly node: string;
  /** The effective (dilated) kernel or pool window, per axis. */
  readonly kernel: Pair;
  readonly stride: Pair;
}

/** A layer of the model that is not in the imported network, and why. */
export interface SkippedLayer {
  readonly layer: string;
  readonly className: string;
  readonly reason: string;
}

/** A pointwise activation, as a fused `activation` setting or a layer of its own. */
export interface Activation {
  readonly fn: ActivationFn;
  readonly alpha?: number;
}

/** The network being built, as a layer family's translator sees it. */
export interface LayerContext {
  readonly graph: KerasGraph;
  readonly weights: WeightIndex;
  /** The node that holds a translated layer's output. */
  nodeOf(layer: string): string;
  channelsOf(layer: string): number;
  /** Appends a body node; returns its name. */
  emit(name: string, op: Op, inputs: string[]): string;
  /** The layer's output is node `out` with `channels` channels, through `activation` if one is fused. */
  finish(layer: KerasLayer, out: string, channels: number, activation?: Activation | null): void;
  addRecipe(recipe: WeightRecipe): void;
  addAlignment(alignment: SameAlignment): void;
  /** The zero padding a ZeroPadding2D layer folded into its consumer; zeros for any other layer. */
  foldedPadding(layer: string): Padding;
  /** Records that ZeroPadding2D `layer` adds no node: its consumer takes `padding` on its own. */
  fold(layer: KerasLayer, padding: Padding): void;
  consumersOf(layer: string): readonly KerasLayer[];
  /** Layers whose output must stay a node of its own (the cut, the model outputs): never folded away. */
  keeps(layer: string): boolean;
}

/** A layer family's translation of one layer (by its Keras class name, in translate.ts's table). */
export type LayerTranslator = (c: LayerContext, layer: KerasLayer) => void;

/** The one input of a layer that takes one. */
export function single(layer: KerasLayer): string {
  if (layer.inputs.length !== 1) {
    throw new TfjsImportError(
      `layer '${layer.name}' (${layer.className}) has ${layer.inputs.length} inputs; it takes one`,
    );
  }
  return layer.inputs[0] as string;
}

/** The layer adds no node: its output is its input's. */
export function passThrough(c: LayerContext, layer: KerasLayer, input: string): void {
  c.finish(layer, c.nodeOf(input), c.channelsOf(input));
}

/** The fix that ends the streamed body before `layer` (for refusals). */
export function before(c: LayerContext, layer: KerasLayer): string {
  return cutBefore(layer, c.graph.input);
}

export function pairOf(v: unknown, where: string, what: string): Pair {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => Number.isInteger(x) && x >= 1)) {
    return [v[0] as number, v[1] as number];
  }
  throw new TfjsImportError(
    `${where}: ${what} must be an integer or a pair of integers, got ${JSON.stringify(v)}`,
  );
}

export function bool(cfg: Config, key: string, dflt: boolean): boolean {
  const v = cfg[key];
  return typeof v === 'boolean' ? v : dflt;
}

/** The recipe of a parameter that is a manifest weight as it is. */
export function identity(values: readonly Float32Array[]): Float32Array {
  return values[0] as Float32Array;
}

/** The body op of an activation. */
export function activationOp(a: Activation): Op {
  return a.alpha === undefined
    ? { kind: 'activation', fn: a.fn }
    : { kind: 'activation', fn: a.fn, alpha: a.alpha };
}
