// GPU inventory: Node objects in, GPU classes out. Pure. A node offers a GPU resource
// (`nvidia.com/gpu`, or `nvidia.com/mig-<profile>` under the MIG `mixed` strategy) when it is
// allocatable; memory per device comes from GPU Feature Discovery labels (MiB), else from the
// product→memory table. Cordoned and NotReady nodes are kept out; offers of the same resource,
// product and memory form a class (operator-anchors.md §2.1).

import type { Node, Taint } from '../kube/types.ts';
import { type GpuMemoryTable, lookupGpuMemory } from './gpu-memory-table.ts';

const MiB = 2 ** 20;
export const GPU_RESOURCE = 'nvidia.com/gpu';
const MIG_RESOURCE = /^nvidia\.com\/mig-(\d+g\.\d+gb)$/;
const GFD = {
  product: 'nvidia.com/gpu.product',
  memory: 'nvidia.com/gpu.memory',
  count: 'nvidia.com/gpu.count',
  replicas: 'nvidia.com/gpu.replicas',
  sharing: 'nvidia.com/gpu.sharing-strategy',
} as const;

/** Labels that may name the GPU product on nodes without GFD, in order of preference. */
export const DEFAULT_PRODUCT_LABELS: readonly string[] = [
  GFD.product,
  'cloud.google.com/gke-accelerator',
  'k8s.amazonaws.com/accelerator',
  'karpenter.k8s.aws/instance-gpu-name',
];

/** A label requirement that pins a pod to a class (node affinity, operator In). */
export interface LabelRequirement {
  key: string;
  values: string[];
}

/** One node's offer of one GPU resource. */
export interface GpuOffer {
  node: string;
  resourceName: string;
  product: string;
  /** Memory one pod gets from one device, bytes (total memory, divided when the GPU is shared). */
  memoryBytes: number;
  memorySource: 'gfd' | 'table' | 'mig-profile';
  migProfile?: string;
  /** Devices of this resource the node can allocate. */
  allocatable: number;
  /** Labels that select this offer's class. */
  selector: LabelRequirement[];
  taints: Taint[];
  labels: Record<string, string>;
}

export interface GpuClass {
  /** Stable name from product and memory, e.g. `a100-sxm4-40gb-40960mib`. */
  name: string;
  resourceName: string;
  product: string;
  memoryBytes: number;
  memorySource: GpuOffer['memorySource'];
  migProfile?: string;
  selector: LabelRequirement[];
  offers: GpuOffer[];
}

export interface ExcludedNode {
  node: string;
  reason: string;
}

export interface Inventory {
  classes: GpuClass[];
  /** GPU nodes left out: cordoned, NotReady, or memory unknown (with the fix in the reason). */
  excluded: ExcludedNode[];
}

export interface InventoryOptions {
  memoryTable: GpuMemoryTable;
  productLabels?: readonly string[];
}

function intLabel(labels: Record<string, string>, key: string): number | undefined {
  const v = labels[key];
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

function count(q: string | undefined): number {
  if (q === undefined) return 0;
  const n = Number(q);
  return Number.isFinite(n) ? Math.floor(n) : 0;
}

/** Why a node cannot take new pods, or undefined when it can. */
export function unschedulableReason(node: Node): string | undefined {
  if (node.spec?.unschedulable) return 'cordoned (spec.unschedulable)';
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.status !== 'True') return `not Ready (Ready=${ready?.status ?? 'missing'})`;
  return undefined;
}

/** Memory per pod when GFD reports time-slicing/MPS replicas: the GPU's memory is shared among them. */
function sharedShare(labels: Record<string, string>, bytes: number): number {
  const strategy = labels[GFD.sharing];
  const devices = intLabel(labels, GFD.count);
  const replicas = intLabel(labels, GFD.replicas);
  if (!strategy || strategy === 'none' || !devices || !replicas || replicas <= devices) return bytes;
  return Math.floor((bytes * devices) / replicas);
}

/** The GPU offers of one node (none when it has no allocatable GPU), or why its GPUs are unusable. */
export function offersOf(node: Node, o: InventoryOptions): { offers: GpuOffer[]; unknown: ExcludedNode[] } {
  const labels = node.metadata.labels ?? {};
  const allocatable = node.status?.allocatable ?? {};
  const name = node.metadata.name;
  const offers: GpuOffer[] = [];
  const unknown: ExcludedNode[] = [];
  const common = { node: name, taints: node.spec?.taints ?? [], labels };
  for (const [resourceName, quantity] of Object.entries(allocatable)) {
    const devices = count(quantity);
    if (devices <= 0) continue;
    const mig = MIG_RESOURCE.exec(resourceName);
    if (resourceName === GPU_RESOURCE) {
      const productLabel = (o.productLabels ?? DEFAULT_PRODUCT_LABELS).find((k) => labels[k]);
      const product = productLabel ? (labels[productLabel] as string) : undefined;
      const gfdMiB = intLabel(labels, GFD.memory);
      if (gfdMiB !== undefined && gfdMiB > 0) {
        const selector: LabelRequirement[] = [{ key: GFD.memory, values: [String(gfdMiB)] }];
        if (productLabel) selector.unshift({ key: productLabel, values: [product as string] });
        offers.push({
          ...common,
          resourceName,
          product: product ?? 'unknown',
          memoryBytes: sharedShare(labels, gfdMiB * MiB),
          memorySource: 'gfd',
          ...(product?.includes('-MIG-') && { migProfile: product.slice(product.indexOf('-MIG-') + 5) }),
          allocatable: devices,
          selector,
        });
        continue;
      }
      const fromTable = product !== undefined ? lookupGpuMemory(o.memoryTable, product) : undefined;
      if (product !== undefined && fromTable !== undefined && productLabel !== undefined) {
        offers.push({
          ...common,
          resourceName,
          product,
          memoryBytes: sharedShare(labels, fromTable),
          memorySource: 'table',
          allocatable: devices,
          selector: [{ key: productLabel, values: [product] }],
        });
        continue;
      }
      unknown.push({
        node: name,
        reason:
          product === undefined
            ? `offers ${devices} ${resourceName} but has no ${GFD.memory} label and no product label ` +
              `(${(o.productLabels ?? DEFAULT_PRODUCT_LABELS).join(', ')}); install NVIDIA GPU Feature Discovery ` +
              'or label the node with its product'
            : `offers ${devices} ${resourceName} (product '${product}') but has no ${GFD.memory} label and ` +
              `'${product}' is not in the GPU memory table; install GPU Feature Discovery or add the product to the table`,
      });
    } else if (mig) {
      const profile = mig[1] as string;
      const labelMiB = intLabel(labels, `nvidia.com/mig-${profile}.memory`);
      const profileGb = Number(profile.slice(profile.indexOf('.') + 1, -2));
      const parent = labels[GFD.product];
      const selector: LabelRequirement[] = [];
      if (parent) selector.push({ key: GFD.product, values: [parent] });
      if (labelMiB !== undefined)
        selector.push({ key: `nvidia.com/mig-${profile}.memory`, values: [String(labelMiB)] });
      offers.push({
        ...common,
        resourceName,
        product: `${parent ?? 'unknown'}-MIG-${profile}`,
        // The profile name states decimal gigabytes (1g.10gb has 9856 MiB): a safe lower bound without the label.
        memoryBytes: labelMiB !== undefined ? labelMiB * MiB : profileGb * 1e9,
        memorySource: labelMiB !== undefined ? 'gfd' : 'mig-profile',
        migProfile: profile,
        allocatable: devices,
        selector,
      });
    }
  }
  return { offers, unknown };
}

/** A DNS-label-like class name: the product and the memory in MiB. */
export function className(product: string, memoryBytes: number): string {
  const slug = product
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `${slug || 'gpu'}-${Math.floor(memoryBytes / MiB)}mib`;
}

/** Groups the usable GPU offers of the nodes into classes, largest memory first. */
export function buildInventory(nodes: readonly Node[], o: InventoryOptions): Inventory {
  const byClass = new Map<string, GpuClass>();
  const excluded: ExcludedNode[] = [];
  for (const node of [...nodes].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    const { offers, unknown } = offersOf(node, o);
    if (offers.length === 0 && unknown.length === 0) continue; // not a GPU node
    const why = unschedulableReason(node);
    if (why) {
      excluded.push({ node: node.metadata.name, reason: why });
      continue;
    }
    excluded.push(...unknown);
    for (const offer of offers) {
      const key = `${offer.resourceName}|${className(offer.product, offer.memoryBytes)}`;
      let cls = byClass.get(key);
      if (!cls) {
        cls = {
          name: className(offer.product, offer.memoryBytes),
          resourceName: offer.resourceName,
          product: offer.product,
          memoryBytes: offer.memoryBytes,
          memorySource: offer.memorySource,
          ...(offer.migProfile !== undefined && { migProfile: offer.migProfile }),
          selector: offer.selector,
          offers: [],
        };
        byClass.set(key, cls);
      }
      cls.offers.push(offer);
    }
  }
  for (const cls of byClass.values()) cls.selector = commonSelector(cls.offers);
  const classes = [...byClass.values()].sort(
    (a, b) => b.memoryBytes - a.memoryBytes || a.name.localeCompare(b.name),
  );
  return { classes, excluded };
}

/**
 * The label requirements every offer of a class meets. When the nodes of a class were recognised
 * through different labels (GFD on some, a cloud label on others), pin the class by hostname.
 */
function commonSelector(offers: readonly GpuOffer[]): LabelRequirement[] {
  const [first, ...rest] = offers;
  if (!first) return [];
  const same = (a: LabelRequirement, b: LabelRequirement) =>
    a.key === b.key && a.values.join() === b.values.join();
  const shared = first.selector.filter((r) => rest.every((o) => o.selector.some((x) => same(x, r))));
  if (shared.length > 0) return shared;
  return [
    {
      key: 'kubernetes.io/hostname',
      values: offers.map((o) => o.labels['kubernetes.io/hostname'] ?? o.node),
    },
  ];
}
