// Locates and decodes the weights a layers-model manifest describes. Each manifest group's shard
// files, concatenated in order, hold its weights back to back. float32 is read as is; weights the
// converter quantized (uint8/uint16 affine, float16) are dequantized exactly as tfjs-core's
// io.decodeWeights does, since that is what loading the model in TF.js would give.

import { type ManifestGroup, type ManifestWeight, TfjsImportError } from './model-json.ts';

/** A decoded float32 weight with its shape. */
export interface WeightArray {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** Where one weight lives: its group, and its byte range within the group's concatenated shards. */
export interface WeightLocation {
  readonly spec: ManifestWeight;
  readonly group: number;
  readonly offset: number;
  readonly byteLength: number;
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The manifest's weights by name, with shapes and byte locations; nothing is read yet. */
export class WeightIndex {
  readonly groups: readonly ManifestGroup[];
  readonly #byName = new Map<string, WeightLocation>();

  constructor(groups: readonly ManifestGroup[]) {
    this.groups = groups;
    groups.forEach((g, group) => {
      let offset = 0;
      let unlocatable: string | undefined;
      for (const spec of g.weights) {
        const dtype = spec.quantization?.dtype ?? spec.dtype;
        const bytes = BYTES[dtype];
        if (bytes === undefined || unlocatable) {
          // Strings have variable length: weights after one in the same group cannot be located.
          unlocatable ??= spec.name;
          this.#byName.set(spec.name, { spec, group, offset: Number.NaN, byteLength: Number.NaN });
          continue;
        }
        const byteLength = size(spec.shape) * bytes;
        this.#byName.set(spec.name, { spec, group, offset, byteLength });
        offset += byteLength;
      }
    });
  }

  get names(): string[] {
    return [...this.#byName.keys()];
  }

  /**
   * The manifest weight `param` of `layer`: `layer/param` as tfjs-layers and the converter name it,
   * else the one name ending in `/layer/param` (weights of a nested model carry its scope), with a
   * TF-style `:0` suffix tolerated. Returns undefined when there is none.
   */
  find(layer: string, param: string): WeightLocation | undefined {
    const exact = this.#byName.get(`${layer}/${param}`) ?? this.#byName.get(`${layer}/${param}:0`);
    if (exact) return exact;
    const tail = `/${layer}/${param}`;
    const hits = [...this.#byName.values()].filter(
      (w) => w.spec.name.endsWith(tail) || w.spec.name.endsWith(`${tail}:0`),
    );
    if (hits.length > 1) {
      throw new TfjsImportError(
        `layer '${layer}': several weights match '${param}' (${hits.map((h) => h.spec.name).join(', ')}); ` +
          'the manifest is ambiguous',
      );
    }
    return hits[0];
  }

  /** Like find, but a missing weight is an error that lists what the layer does have. */
  require(layer: string, className: string, param: string, shape: readonly number[]): WeightLocation {
    const w = this.find(layer, param);
    if (!w) {
      const has = this.names.filter((n) => n.startsWith(`${layer}/`) || n.includes(`/${layer}/`));
      throw new TfjsImportError(
        `layer '${layer}' (${className}): the weights manifest has no '${layer}/${param}'` +
          (has.length > 0 ? `; it has ${has.join(', ')}` : '; it lists no weights for this layer') +
          '. Re-save the model with its weights',
      );
    }
    if (w.spec.dtype !== 'float32') {
      throw new TfjsImportError(
        `layer '${layer}' (${className}): weight '${w.spec.name}' has dtype ${w.spec.dtype}; layer weights must be ` +
          'float32 (quantized float32 is dequantized)',
      );
    }
    if (w.spec.shape.length !== shape.length || w.spec.shape.some((d, i) => d !== shape[i])) {
      throw new TfjsImportError(
        `layer '${layer}' (${className}): weight '${w.spec.name}' has shape [${w.spec.shape.join(', ')}], ` +
          `but the layer's config implies [${shape.join(', ')}]`,
      );
    }
    return w;
  }
}

/** Decodes one weight from the bytes of its group (its shards concatenated). */
export function decodeWeight(w: WeightLocation, groupBytes: Uint8Array): Float32Array {
  const { spec } = w;
  const q = spec.quantization;
  if (spec.dtype !== 'float32') {
    throw new TfjsImportError(
      `weight '${spec.name}' has dtype ${spec.dtype}; layer weights must be float32 (or float32 quantized by the converter)`,
    );
  }
  if (!Number.isFinite(w.offset)) {
    throw new TfjsImportError(
      `weight '${spec.name}' cannot be located: an earlier weight of its manifest group has a variable-length dtype`,
    );
  }
  if (w.offset + w.byteLength > groupBytes.byteLength) {
    throw new TfjsImportError(
      `weight '${spec.name}' needs bytes ${w.offset}..${w.offset + w.byteLength} of manifest group ${w.group}, ` +
        `but its shards hold only ${groupBytes.byteLength} bytes; the weight files are truncated or from another model`,
    );
  }
  const n = size(spec.shape);
  // A DataView reads unaligned little-endian values wherever the weight starts (Node's Buffer
  // may be a view into a shared pool, so always go through byteOffset).
  const view = new DataView(groupBytes.buffer, groupBytes.byteOffset + w.offset, w.byteLength);
  const out = new Float32Array(n);
  if (q === undefined) {
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  switch (q.dtype) {
    case 'uint8':
    case 'uint16': {
      if (q.scale === undefined || q.min === undefined) {
        throw new TfjsImportError(`weight '${spec.name}' is ${q.dtype}-quantized but has no scale and min`);
      }
      const wide = q.dtype === 'uint16';
      for (let i = 0; i < n; i++) {
        const v = wide ? view.getUint16(2 * i, true) : view.getUint8(i);
        out[i] = v * q.scale + q.min;
      }
      return out;
    }
    case 'float16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      return out;
    default:
      throw new TfjsImportError(
        `weight '${spec.name}' uses quantization '${q.dtype}'; supported: uint8, uint16, float16. Re-convert without it`,
      );
  }
}

/** IEEE 754 binary16 → number (exact: every half is a float32). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
