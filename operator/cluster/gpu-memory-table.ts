// GPU memory by product name, for nodes without NVIDIA GPU Feature Discovery's
// `nvidia.com/gpu.memory` label (operator-anchors.md §2.1). Pure: the text of the table file in,
// a lookup out. Entries from the operator's configuration (the Helm values) override the defaults.

import { parse as parseYaml } from 'yaml';
import { parseQuantity } from '../../crds/index.ts';

const MiB = 2 ** 20;

/** Normalises product names as GFD, GKE and cloud labels spell them: case, spaces, `nvidia-`/`tesla-` prefixes. */
export function productKey(product: string): string {
  return product
    .trim()
    .toLowerCase()
    .replace(/[\s_]+/g, '-')
    .replace(/^nvidia-/, '')
    .replace(/^tesla-/, '');
}

/**
 * Memory of common data-centre GPUs, in MiB as GFD reports it (NVML total). Only a fallback: GFD
 * labels win, and the configured table overrides these.
 */
export const DEFAULT_GPU_MEMORY_MIB: Readonly<Record<string, number>> = {
  t4: 15360,
  'v100-sxm2-16gb': 16384,
  'v100-sxm2-32gb': 32768,
  'v100-pcie-16gb': 16384,
  'v100-pcie-32gb': 32768,
  v100: 16384,
  a10g: 23028,
  a10: 23028,
  l4: 23034,
  l40s: 46068,
  'a100-sxm4-40gb': 40960,
  'a100-pcie-40gb': 40960,
  'a100-sxm4-80gb': 81920,
  'a100-80gb-pcie': 81920,
  'a100-80gb': 81920,
  a100: 40960,
  'h100-80gb-hbm3': 81559,
  'h100-sxm5-80gb': 81559,
  'h100-pcie': 81559,
  'h100-80gb': 81559,
  h200: 143771,
};

export type GpuMemoryTable = ReadonlyMap<string, number>;

/** The default table, optionally overridden: keys are product names, values bytes. */
export function gpuMemoryTable(overrides: ReadonlyMap<string, number> = new Map()): GpuMemoryTable {
  const table = new Map<string, number>();
  for (const [k, mib] of Object.entries(DEFAULT_GPU_MEMORY_MIB)) table.set(productKey(k), mib * MiB);
  for (const [k, bytes] of overrides) table.set(productKey(k), bytes);
  return table;
}

export function lookupGpuMemory(table: GpuMemoryTable, product: string): number | undefined {
  return table.get(productKey(product));
}

/**
 * Parses a table file: YAML or JSON mapping product → memory, either at the top level or under
 * `gpuMemory:`. A value is a Kubernetes quantity ('16Gi', '40960Mi') or a plain number of MiB (as
 * GFD's label). Throws naming the entry and the fix.
 */
export function parseGpuMemoryTable(text: string, source: string): Map<string, number> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`${source}: not valid YAML or JSON: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return new Map();
  const root = isRecord(doc) && isRecord(doc.gpuMemory) ? doc.gpuMemory : doc;
  if (!isRecord(root)) {
    throw new Error(`${source}: expected a mapping of GPU product to memory, e.g. "Tesla-T4: 16Gi"`);
  }
  const out = new Map<string, number>();
  for (const [product, value] of Object.entries(root)) {
    let bytes: number;
    if (typeof value === 'number' && Number.isFinite(value) && value > 0) bytes = Math.round(value * MiB);
    else if (typeof value === 'string') {
      try {
        bytes = parseQuantity(value);
      } catch (e) {
        throw new Error(
          `${source}: ${product}: ${(e as Error).message}; write e.g. '16Gi' or a number of MiB`,
        );
      }
    } else {
      throw new Error(
        `${source}: ${product}: expected a quantity such as '16Gi' or a number of MiB, got ${JSON.stringify(value)}`,
      );
    }
    if (!(bytes > 0))
      throw new Error(`${source}: ${product}: memory must be positive, got ${JSON.stringify(value)}`);
    out.set(product, bytes);
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
