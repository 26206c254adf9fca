// A small builder for streamed bodies. Handles are node names, so a DAG (residual blocks, concats)
// is written as ordinary code: `const y = b.add(b.conv(x, ...), skip)`.

import {
  type ActivationFn,
  type Body,
  type BodyNode,
  INPUT,
  inferChannels,
  type Op,
  type Padding,
  type Pair,
} from './graph.ts';

export interface ConvOptions {
  filters: number;
  kernel: number | Pair;
  stride?: number | Pair;
  dilation?: number | Pair;
  /** Explicit zero padding: one number for all sides, [vertical, horizontal], or [top, bottom, left, right]. */
  padding?: number | Pair | Padding;
  groups?: number;
  bias?: boolean;
  name?: string;
}

export interface PoolOptions {
  kernel: number | Pair;
  stride?: number | Pair;
  padding?: number | Pair | Padding;
  name?: string;
}

export function pair(v: number | Pair): Pair {
  return typeof v === 'number' ? [v, v] : v;
}

export function padding4(v: number | Pair | Padding | undefined): Padding {
  if (v === undefined) return [0, 0, 0, 0];
  if (typeof v === 'number') return [v, v, v, v];
  if (v.length === 2) return [v[0], v[0], v[1], v[1]];
  return v;
}

export class BodyBuilder {
  readonly input: string = INPUT;
  readonly #name: string;
  readonly #inputChannels: number;
  readonly #nodes: BodyNode[] = [];
  #counter = 0;

  constructor(name: string, inputChannels: number) {
    this.#name = name;
    this.#inputChannels = inputChannels;
  }

  #add(prefix: string, op: Op, inputs: string[], name?: string): string {
    const n = name ?? `${prefix}${++this.#counter}`;
    this.#nodes.push({ name: n, op, inputs });
    return n;
  }

  conv(x: string, o: ConvOptions): string {
    return this.#add(
      'conv',
      {
        kind: 'conv2d',
        filters: o.filters,
        kernel: pair(o.kernel),
        stride: pair(o.stride ?? 1),
        dilation: pair(o.dilation ?? 1),
        padding: padding4(o.padding),
        groups: o.groups ?? 1,
        bias: o.bias ?? true,
      },
      [x],
      o.name,
    );
  }

  maxPool(x: string, o: PoolOptions): string {
    const kernel = pair(o.kernel);
    return this.#add(
      'maxpool',
      { kind: 'maxPool', kernel, stride: pair(o.stride ?? kernel), padding: padding4(o.padding) },
      [x],
      o.name,
    );
  }

  avgPool(x: string, o: PoolOptions): string {
    const kernel = pair(o.kernel);
    return this.#add(
      'avgpool',
      { kind: 'avgPool', kernel, stride: pair(o.stride ?? kernel), padding: padding4(o.padding) },
      [x],
      o.name,
    );
  }

  activation(x: string, fn: ActivationFn, alpha?: number, name?: string): string {
    return this.#add(
      fn,
      alpha === undefined ? { kind: 'activation', fn } : { kind: 'activation', fn, alpha },
      [x],
      name,
    );
  }

  relu(x: string, name?: string): string {
    return this.activation(x, 'relu', undefined, name);
  }

  /** Frozen batch normalisation, as a per-channel scale and shift. */
  affine(x: string, name?: string): string {
    return this.#add('bn', { kind: 'affine' }, [x], name);
  }

  /** Layer normalisation over each pixel's channels (graph.ts LayerNormOp); ε 1e-6 as in ConvNeXt. */
  layerNorm(x: string, name?: string, epsilon = 1e-6): string {
    return this.#add('ln', { kind: 'layerNorm', epsilon }, [x], name);
  }

  /** Per-channel layer scale (graph.ts LayerScaleOp), starting at `init`. */
  layerScale(x: string, init: number, name?: string): string {
    return this.#add('scale', { kind: 'layerScale', init }, [x], name);
  }

  /** Channels [begin, begin + size) of x (graph.ts ChannelSliceOp). */
  channelSlice(x: string, begin: number, size: number, name?: string): string {
    return this.#add('slice', { kind: 'channelSlice', begin, size }, [x], name);
  }

  pad(x: string, padding: number | Pair | Padding, name?: string): string {
    return this.#add('pad', { kind: 'pad', padding: padding4(padding) }, [x], name);
  }

  add(inputs: string[], name?: string): string {
    return this.#add('add', { kind: 'add' }, inputs, name);
  }

  concat(inputs: string[], name?: string): string {
    return this.#add('concat', { kind: 'concat' }, inputs, name);
  }

  /** Finishes the body at `output` and validates it. */
  build(output: string): Body {
    const body: Body = {
      name: this.#name,
      inputChannels: this.#inputChannels,
      nodes: [...this.#nodes],
      output,
    };
    inferChannels(body);
    return body;
  }
}
