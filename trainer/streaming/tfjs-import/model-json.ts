// Reads the two halves of a TensorFlow.js layers-model `model.json`: the Keras topology (functional,
// Sequential, or nested models flattened into one graph) and the weights manifest. Pure: no
// TensorFlow, no file I/O. Accepts what tfjs-layers saves, what the Python tensorflowjs converter
// writes (Keras 2, with or without the `model_config` wrapper) and Keras 3's inbound-node format.

/** Anything wrong with the model file or a layer in it; the message names the layer and the fix. */
export class TfjsImportError extends Error {
  override name = 'TfjsImportError';
}

export type Config = Readonly<Record<string, unknown>>;

/** One Keras layer, used once, with its inputs resolved to layer names. */
export interface KerasLayer {
  readonly name: string;
  readonly className: string;
  readonly config: Config;
  readonly inputs: readonly string[];
}

export interface KerasGraph {
  readonly name: string;
  /** Topological order; `layers[0]` is the InputLayer. */
  readonly layers: readonly KerasLayer[];
  readonly input: string;
  /** The input's batch shape, e.g. [null, null, null, 3]. */
  readonly inputShape: readonly (number | null)[];
  readonly outputs: readonly string[];
}

export interface ManifestWeight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: string;
  readonly quantization?: { readonly dtype: string; readonly scale?: number; readonly min?: number };
}

export interface ManifestGroup {
  readonly paths: readonly string[];
  readonly weights: readonly ManifestWeight[];
}

export interface ModelJson {
  readonly graph: KerasGraph;
  readonly manifest: readonly ManifestGroup[];
}

const MODEL_CLASSES = new Set(['Model', 'Functional', 'Sequential']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a model.json document (already JSON-decoded). `source` names the file in errors. */
export function parseModelJson(doc: unknown, source: string): ModelJson {
  if (!isRecord(doc)) throw new TfjsImportError(`${source}: not a JSON object`);
  if (doc.format !== undefined && doc.format !== 'layers-model') {
    throw new TfjsImportError(
      `${source}: format '${String(doc.format)}' is not a layers model; graph models (from a SavedModel or ` +
        'frozen graph) have no Keras layers to cut. Convert the Keras model with ' +
        "`tensorflowjs_converter --input_format keras` (or save it with tfjs-layers' model.save)",
    );
  }
  let topology = doc.modelTopology;
  if (isRecord(topology) && isRecord(topology.model_config)) topology = topology.model_config;
  if (!isRecord(topology) || typeof topology.class_name !== 'string') {
    throw new TfjsImportError(`${source}: modelTopology has no Keras model (class_name and config)`);
  }
  const graph = parseTopology(topology, source);
  const manifest = parseManifest(doc.weightsManifest, source);
  return { graph, manifest };
}

function parseManifest(raw: unknown, source: string): ManifestGroup[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new TfjsImportError(`${source}: weightsManifest must be a list of groups`);
  return raw.map((g, gi) => {
    const where = `${source}: weightsManifest[${gi}]`;
    if (!isRecord(g) || !Array.isArray(g.paths) || !Array.isArray(g.weights)) {
      throw new TfjsImportError(`${where} needs 'paths' and 'weights' lists`);
    }
    const paths = g.paths.map((p) => {
      if (typeof p !== 'string') throw new TfjsImportError(`${where}: paths must be strings`);
      return p;
    });
    const weights = g.weights.map((w, wi): ManifestWeight => {
      if (
        !isRecord(w) ||
        typeof w.name !== 'string' ||
        !Array.isArray(w.shape) ||
        !w.shape.every((d) => Number.isInteger(d) && (d as number) >= 0) ||
        typeof w.dtype !== 'string'
      ) {
        throw new TfjsImportError(`${where}.weights[${wi}] needs a name, an integer shape and a dtype`);
      }
      const q = w.quantization;
      const base = { name: w.name, shape: w.shape as number[], dtype: w.dtype };
      if (q === undefined || q === null) return base;
      if (!isRecord(q) || typeof q.dtype !== 'string') {
        throw new TfjsImportError(`${where}: weight '${w.name}' has a malformed quantization entry`);
      }
      return {
        ...base,
        quantization: {
          dtype: q.dtype,
          ...(typeof q.scale === 'number' && { scale: q.scale }),
          ...(typeof q.min === 'number' && { min: q.min }),
        },
      };
    });
    return { paths, weights };
  });
}

interface RawLayer {
  name: string;
  className: string;
  config: Config;
  inputs: string[];
}

/** Collects the layers of a (possibly nested) model, with aliases for what nesting removes. */
class Flattener {
  readonly layers: RawLayer[] = [];
  /** Name → the layer that really produces it (nested model → its output; nested input → outer tensor). */
  readonly alias = new Map<string, string>();
  readonly #source: string;
  constructor(source: string) {
    this.#source = source;
  }

  add(layer: RawLayer): void {
    if (this.layers.some((l) => l.name === layer.name) || this.alias.has(layer.name)) {
      throw new TfjsImportError(
        `${this.#source}: two layers are named '${layer.name}' (a nested model reuses a name); rename one`,
      );
    }
    this.layers.push(layer);
  }

  resolve(name: string): string {
    let n = name;
    for (let hops = 0; this.alias.has(n); hops++) {
      if (hops > 1000)
        throw new TfjsImportError(`${this.#source}: nested models refer to each other in a loop`);
      n = this.alias.get(n) as string;
    }
    return n;
  }

  /**
   * Adds the layers of a model config. `feed` is the outer tensor that feeds the model (absent
   * for the top level, whose InputLayer stays). Returns the model's input and output layer names.
   */
  model(topology: Record<string, unknown>, feed: string | undefined): { input: string; outputs: string[] } {
    const cfg = topology.config;
    const className = topology.class_name as string;
    if (className === 'Sequential') {
      const layers = Array.isArray(cfg)
        ? cfg
        : isRecord(cfg) && Array.isArray(cfg.layers)
          ? cfg.layers
          : null;
      const name = isRecord(cfg) && typeof cfg.name === 'string' ? cfg.name : 'sequential';
      if (!layers || layers.length === 0)
        throw new TfjsImportError(`${this.#source}: Sequential '${name}' has no layers`);
      return this.#sequential(name, layers, feed);
    }
    if (!MODEL_CLASSES.has(className)) {
      throw new TfjsImportError(
        `${this.#source}: modelTopology is a '${className}', not a Keras Model, Functional or Sequential`,
      );
    }
    if (!isRecord(cfg) || !Array.isArray(cfg.layers)) {
      throw new TfjsImportError(`${this.#source}: model config has no 'layers' list`);
    }
    const name = typeof cfg.name === 'string' ? cfg.name : 'model';
    const inputs = refList(cfg.input_layers).map((r) => r[0]);
    const outputs = refList(cfg.output_layers).map((r) => r[0]);
    if (inputs.length !== 1) {
      throw new TfjsImportError(
        `${this.#source}: model '${name}' has ${inputs.length} inputs (${inputs.join(', ')}); the streamed body takes one image`,
      );
    }
    const input = inputs[0] as string;
    for (const raw of cfg.layers) {
      if (!isRecord(raw) || typeof raw.class_name !== 'string') {
        throw new TfjsImportError(`${this.#source}: model '${name}' has a layer without class_name`);
      }
      const layerCfg = isRecord(raw.config) ? raw.config : {};
      const layerName = typeof raw.name === 'string' ? raw.name : (layerCfg.name as string | undefined);
      if (typeof layerName !== 'string') {
        throw new TfjsImportError(`${this.#source}: a ${raw.class_name} layer of '${name}' has no name`);
      }
      const nodes = Array.isArray(raw.inbound_nodes) ? raw.inbound_nodes : [];
      if (nodes.length > 1) {
        throw new TfjsImportError(
          `layer '${layerName}' (${raw.class_name}) is applied ${nodes.length} times (shared weights); ` +
            'the importer needs every layer used once. Rebuild the model with separate layers',
        );
      }
      const layerInputs = nodes.length === 1 ? nodeRefs(nodes[0]).map((r) => r[0]) : [];
      if (layerName === input && feed !== undefined) {
        this.alias.set(layerName, feed);
        continue;
      }
      if (MODEL_CLASSES.has(raw.class_name)) {
        if (layerInputs.length !== 1) {
          throw new TfjsImportError(
            `nested model '${layerName}' takes ${layerInputs.length} inputs; the importer flattens only single-input models`,
          );
        }
        const inner = this.model(raw, layerInputs[0]);
        this.#aliasOutput(layerName, inner.outputs);
        continue;
      }
      this.add({ name: layerName, className: raw.class_name, config: layerCfg, inputs: layerInputs });
    }
    return { input: feed === undefined ? input : this.resolve(input), outputs };
  }

  #aliasOutput(modelName: string, outputs: string[]): void {
    if (outputs.length !== 1) {
      throw new TfjsImportError(
        `nested model '${modelName}' has ${outputs.length} outputs; the importer flattens only single-output models`,
      );
    }
    if (this.layers.some((l) => l.name === modelName)) {
      throw new TfjsImportError(`${this.#source}: nested model '${modelName}' shares its name with a layer`);
    }
    this.alias.set(modelName, outputs[0] as string);
  }

  #sequential(
    name: string,
    layers: unknown[],
    feed: string | undefined,
  ): { input: string; outputs: string[] } {
    let previous = feed;
    let input = feed;
    for (const [i, raw] of layers.entries()) {
      if (!isRecord(raw) || typeof raw.class_name !== 'string') {
        throw new TfjsImportError(`${this.#source}: Sequential '${name}' has a layer without class_name`);
      }
      const cfg = isRecord(raw.config) ? raw.config : {};
      const layerName =
        typeof cfg.name === 'string' ? cfg.name : typeof raw.name === 'string' ? raw.name : '';
      if (layerName === '') {
        throw new TfjsImportError(`${this.#source}: a ${raw.class_name} layer of '${name}' has no name`);
      }
      if (raw.class_name === 'InputLayer') {
        if (i !== 0)
          throw new TfjsImportError(`Sequential '${name}': InputLayer '${layerName}' is not first`);
        if (feed !== undefined) this.alias.set(layerName, feed);
        else this.add({ name: layerName, className: 'InputLayer', config: cfg, inputs: [] });
        previous = feed ?? layerName;
        input = previous;
        continue;
      }
      if (previous === undefined) {
        // The first layer of a top-level Sequential without an InputLayer carries the input shape.
        const shape = batchShape(cfg);
        if (!MODEL_CLASSES.has(raw.class_name) || shape !== undefined) {
          if (shape === undefined) {
            throw new TfjsImportError(
              `Sequential '${name}': the first layer '${layerName}' has no batch_input_shape, so the input is unknown`,
            );
          }
          const inName = `${name}_input`;
          this.add({
            name: inName,
            className: 'InputLayer',
            config: { batch_input_shape: shape },
            inputs: [],
          });
          previous = inName;
          input = inName;
        }
      }
      if (MODEL_CLASSES.has(raw.class_name)) {
        const inner = this.model(raw, previous);
        if (input === undefined) input = inner.input;
        this.#aliasOutput(layerName, inner.outputs);
        previous = layerName;
        continue;
      }
      this.add({ name: layerName, className: raw.class_name, config: cfg, inputs: [previous as string] });
      previous = layerName;
    }
    return { input: input as string, outputs: [previous as string] };
  }
}

/** The batch shape a layer config declares: `batch_input_shape` (Keras 2, tfjs), `batch_shape` (Keras 3) or `input_shape`. */
export function batchShape(cfg: Config): (number | null)[] | undefined {
  const b = cfg.batch_input_shape ?? cfg.batch_shape;
  if (Array.isArray(b)) return b as (number | null)[];
  if (Array.isArray(cfg.input_shape)) return [null, ...(cfg.input_shape as (number | null)[])];
  return undefined;
}

type Ref = [string, number, number];

function isRef(v: unknown): v is Ref {
  return Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'number';
}

/** `[[name, node, tensor], …]`, or a single `[name, node, tensor]` (Keras 3 writes one input that way). */
function refList(v: unknown): Ref[] {
  if (isRef(v)) return [v];
  if (Array.isArray(v) && v.every(isRef)) return v;
  return [];
}

/**
 * The tensors an inbound node reads. Keras 2 / tfjs: `[[name, nodeIndex, tensorIndex, kwargs], …]`.
 * Keras 3: `{args: [...], kwargs: {...}}` with `__keras_tensor__` entries carrying `keras_history`.
 */
function nodeRefs(node: unknown): Ref[] {
  const out: Ref[] = [];
  const walk = (v: unknown): void => {
    if (isRef(v)) out.push(v);
    else if (Array.isArray(v)) for (const x of v) walk(x);
    else if (isRecord(v)) {
      if (v.class_name === '__keras_tensor__' && isRecord(v.config) && isRef(v.config.keras_history)) {
        out.push(v.config.keras_history);
      } else if ('args' in v) walk(v.args);
    }
  };
  walk(node);
  for (const r of out) {
    if ((r[2] ?? 0) !== 0) {
      throw new TfjsImportError(
        `a layer reads output ${r[2]} of '${r[0]}'; the importer supports only single-output layers`,
      );
    }
  }
  return out;
}

function parseTopology(topology: Record<string, unknown>, source: string): KerasGraph {
  const flat = new Flattener(source);
  const { input, outputs } = flat.model(topology, undefined);
  const layers = flat.layers.map((l) => ({ ...l, inputs: l.inputs.map((i) => flat.resolve(i)) }));
  const byName = new Map(layers.map((l) => [l.name, l]));
  for (const l of layers) {
    for (const i of l.inputs) {
      if (!byName.has(i))
        throw new TfjsImportError(`${source}: layer '${l.name}' reads '${i}', which is not a layer`);
    }
  }
  const inputLayer = byName.get(input);
  if (inputLayer?.className !== 'InputLayer') {
    throw new TfjsImportError(`${source}: the model's input '${input}' is not an InputLayer`);
  }
  const shape = batchShape(inputLayer.config);
  if (!shape) throw new TfjsImportError(`${source}: InputLayer '${input}' declares no batch_input_shape`);
  const cfg = isRecord(topology.config) ? topology.config : {};
  return {
    name: typeof cfg.name === 'string' ? cfg.name : 'model',
    layers: topologicalOrder(layers, input, source),
    input,
    inputShape: shape,
    outputs: outputs.map((o) => flat.resolve(o)),
  };
}

/** Kahn's algorithm, stable with respect to file order (Keras writes layers roughly by depth). */
function topologicalOrder(layers: RawLayer[], input: string, source: string): KerasLayer[] {
  const pending = new Map(layers.map((l) => [l.name, new Set(l.inputs)]));
  const done = new Set<string>();
  const order: KerasLayer[] = [];
  const first = layers.find((l) => l.name === input) as RawLayer;
  const queue = [first, ...layers.filter((l) => l !== first)];
  while (order.length < layers.length) {
    const next = queue.find(
      (l) => !done.has(l.name) && [...(pending.get(l.name) ?? [])].every((i) => done.has(i)),
    );
    if (!next) {
      const stuck = queue.filter((l) => !done.has(l.name)).map((l) => l.name);
      throw new TfjsImportError(
        `${source}: layers ${stuck.join(', ')} depend on each other in a cycle or on no input`,
      );
    }
    done.add(next.name);
    order.push(next);
  }
  return order;
}
