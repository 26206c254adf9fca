// Node objects for fake GPU nodes, labelled as NVIDIA GPU Feature Discovery (GFD) labels a real
// node (operator-anchors.md §2.1): gpu.memory in MiB per GPU (per MIG device under `single`),
// gpu.product, gpu.count; MIG `mixed` exposes per-profile resources and labels instead.
import type { V1Node } from '@kubernetes/client-node';

export interface MigSpec {
  /** MIG profile, e.g. `1g.10gb`. */
  profile: string;
  strategy: 'single' | 'mixed';
  /** Product of the parent GPU, e.g. `A100-SXM4-80GB`. */
  parentProduct: string;
  /** Memory of one MIG device in MiB. */
  memoryMiB: number;
  /** MIG devices on the node. */
  count: number;
  multiprocessors?: number;
  slicesGi?: number;
  slicesCi?: number;
}

export interface FakeGpuClass {
  /** Class id; nodes are named `<name>-<i>`. Lowercase DNS label. */
  name: string;
  /** GFD product for whole GPUs (ignored for MIG: derived from the parent product + profile). */
  product?: string;
  /** Memory per GPU in MiB (whole GPUs). */
  memoryMiB?: number;
  /** Whole GPUs per node. */
  gpuCount?: number;
  family?: string;
  computeMajor?: number;
  computeMinor?: number;
  mig?: MigSpec;
  /** Nodes of this class (default 1). */
  nodes?: number;
  cpu?: string;
  memory?: string;
  pods?: string;
  extraLabels?: Record<string, string>;
}

/** A 16, 40 and 80 GiB class and one MIG slice (A100 80GB cut into 1g.10gb, `single` strategy). */
export const STANDARD_GPU_CLASSES: readonly FakeGpuClass[] = [
  {
    name: 'gpu-16g',
    product: 'Tesla-V100-SXM2-16GB',
    memoryMiB: 16384,
    gpuCount: 4,
    family: 'volta',
    computeMajor: 7,
    computeMinor: 0,
  },
  {
    name: 'gpu-40g',
    product: 'A100-SXM4-40GB',
    memoryMiB: 40960,
    gpuCount: 8,
    family: 'ampere',
    computeMajor: 8,
    computeMinor: 0,
  },
  {
    name: 'gpu-80g',
    product: 'H100-SXM5-80GB',
    memoryMiB: 81920,
    gpuCount: 8,
    family: 'hopper',
    computeMajor: 9,
    computeMinor: 0,
  },
  {
    name: 'gpu-mig-10g',
    family: 'ampere',
    computeMajor: 8,
    computeMinor: 0,
    mig: {
      profile: '1g.10gb',
      strategy: 'single',
      parentProduct: 'A100-SXM4-80GB',
      memoryMiB: 9856,
      count: 7,
      multiprocessors: 14,
      slicesGi: 1,
      slicesCi: 1,
    },
  },
];

/** Test-only label naming the class of a fake node (not a GFD label; do not use in the operator). */
export const CLASS_LABEL = 'tilestream.test/gpu-class';

export function nodeNamesOf(cls: FakeGpuClass): string[] {
  return Array.from({ length: cls.nodes ?? 1 }, (_, i) => `${cls.name}-${i}`);
}

/** GFD labels for a class. */
export function gfdLabels(cls: FakeGpuClass): Record<string, string> {
  const labels: Record<string, string> = {
    'nvidia.com/gpu.present': 'true',
    'nvidia.com/gpu.mode': 'compute',
    'nvidia.com/gpu.sharing-strategy': 'none',
    'nvidia.com/cuda.driver-version.full': '550.107.02',
    'nvidia.com/cuda.runtime-version.full': '12.5',
  };
  if (cls.family) labels['nvidia.com/gpu.family'] = cls.family;
  if (cls.computeMajor !== undefined) labels['nvidia.com/gpu.compute.major'] = String(cls.computeMajor);
  if (cls.computeMinor !== undefined) labels['nvidia.com/gpu.compute.minor'] = String(cls.computeMinor);
  const mig = cls.mig;
  if (!mig) {
    if (!cls.product || !cls.memoryMiB || !cls.gpuCount) {
      throw new Error(`GPU class ${cls.name}: give product, memoryMiB and gpuCount (or mig)`);
    }
    labels['nvidia.com/gpu.product'] = cls.product;
    labels['nvidia.com/gpu.memory'] = String(cls.memoryMiB);
    labels['nvidia.com/gpu.count'] = String(cls.gpuCount);
    labels['nvidia.com/gpu.replicas'] = String(cls.gpuCount);
    labels['nvidia.com/mig.capable'] = 'false';
    labels['nvidia.com/mig.strategy'] = 'none';
    return labels;
  }
  labels['nvidia.com/mig.capable'] = 'true';
  labels['nvidia.com/mig.strategy'] = mig.strategy;
  if (mig.strategy === 'single') {
    // Under `single`, gpu.* describe the MIG device, and the device plugin offers nvidia.com/gpu.
    labels['nvidia.com/gpu.product'] = `${mig.parentProduct}-MIG-${mig.profile}`;
    labels['nvidia.com/gpu.memory'] = String(mig.memoryMiB);
    labels['nvidia.com/gpu.count'] = String(mig.count);
    labels['nvidia.com/gpu.replicas'] = String(mig.count);
    if (mig.multiprocessors !== undefined)
      labels['nvidia.com/gpu.multiprocessors'] = String(mig.multiprocessors);
    if (mig.slicesGi !== undefined) labels['nvidia.com/gpu.slices.gi'] = String(mig.slicesGi);
    if (mig.slicesCi !== undefined) labels['nvidia.com/gpu.slices.ci'] = String(mig.slicesCi);
  } else {
    // Under `mixed`, gpu.* describe the parent GPU and each profile has its own labels + resource.
    labels['nvidia.com/gpu.product'] = mig.parentProduct;
    const p = `nvidia.com/mig-${mig.profile}`;
    labels[`${p}.count`] = String(mig.count);
    labels[`${p}.memory`] = String(mig.memoryMiB);
    if (mig.multiprocessors !== undefined) labels[`${p}.multiprocessors`] = String(mig.multiprocessors);
    if (mig.slicesGi !== undefined) labels[`${p}.slices.gi`] = String(mig.slicesGi);
    if (mig.slicesCi !== undefined) labels[`${p}.slices.ci`] = String(mig.slicesCi);
  }
  return labels;
}

/** The extended resource and count the device plugin would advertise. */
export function gpuResource(cls: FakeGpuClass): { name: string; count: number } {
  if (cls.mig) {
    return cls.mig.strategy === 'single'
      ? { name: 'nvidia.com/gpu', count: cls.mig.count }
      : { name: `nvidia.com/mig-${cls.mig.profile}`, count: cls.mig.count };
  }
  return { name: 'nvidia.com/gpu', count: cls.gpuCount ?? 0 };
}

export type NodeConditionStatus = 'True' | 'False' | 'Unknown';

/** Conditions as a healthy kubelet reports them (KWOK's set). Times are RFC 3339 strings. */
export function nodeConditions(
  now: string,
  ready: boolean,
  transition = now,
): NonNullable<V1Node['status']>['conditions'] {
  const c = (type: string, status: NodeConditionStatus, reason: string, message: string) => ({
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: now,
    lastTransitionTime: transition,
  });
  // Times are strings here on purpose: they go out in merge patches verbatim.
  return [
    c(
      'Ready',
      ready ? 'True' : 'False',
      ready ? 'KubeletReady' : 'KubeletNotReady',
      ready ? 'kubelet is posting ready status' : 'stopped by the test',
    ),
    c('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
    c('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
    c('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
    c('NetworkUnavailable', 'False', 'RouteCreated', 'fake node network is up'),
  ] as unknown as NonNullable<V1Node['status']>['conditions'];
}

/** A Node with labels, capacity = allocatable and Ready conditions, ready to POST. */
export function fakeGpuNode(cls: FakeGpuClass, nodeName: string, now: string): V1Node {
  const gpu = gpuResource(cls);
  const resources: Record<string, string> = {
    cpu: cls.cpu ?? '32',
    memory: cls.memory ?? '256Gi',
    // Must be > 0: the scheduler rejects a node without allocatable pods ("Too many pods").
    pods: cls.pods ?? '110',
    'ephemeral-storage': '500Gi',
    [gpu.name]: String(gpu.count),
  };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: nodeName,
      labels: {
        'kubernetes.io/hostname': nodeName,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        [CLASS_LABEL]: cls.name,
        ...gfdLabels(cls),
        ...cls.extraLabels,
      },
    },
    spec: {},
    status: {
      capacity: { ...resources },
      allocatable: { ...resources },
      conditions: nodeConditions(now, true),
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        architecture: 'amd64',
        bootID: '',
        containerRuntimeVersion: 'tilestream-node-agent://0.1.0',
        kernelVersion: '',
        kubeProxyVersion: '',
        kubeletVersion: 'v1.37.2',
        machineID: '',
        operatingSystem: 'linux',
        osImage: 'tilestream fake GPU node',
        systemUUID: '',
      },
      phase: 'Running',
    },
  };
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits (three are rejected). */
export function microTime(date: Date = new Date()): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Kubernetes Time: RFC 3339 with whole seconds. */
export function rfc3339(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
