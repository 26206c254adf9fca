// Test fixtures from builders (Kueue's MakeJob(...).Obj() style): StreamingTrainingJobs validated
// and defaulted exactly as the API server would store them, GPU nodes labelled as GPU Feature
// Discovery labels them, and the Jobs and Pods the Kubernetes controllers would report.
import { type StreamingTrainingJob, validateJob } from '../../crds/index.ts';
import type { Job, Node, Pod, Taint } from '../../operator/kube/types.ts';

type Spec = Record<string, unknown>;

export class StjBuilder {
  #name: string;
  #namespace: string;
  #spec: Spec;
  #meta: Record<string, unknown> = { uid: 'uid-1', generation: 1, resourceVersion: '100' };
  #status: StreamingTrainingJob['status'];

  constructor(name: string, namespace: string) {
    this.#name = name;
    this.#namespace = namespace;
    this.#spec = {
      model: { architecture: 'smallcnn', width: 8, head: { pooling: 'max', classes: 1 } },
      data: {
        root: '/data',
        train: 'train.csv',
        imageSize: { height: 512, width: 512 },
        channels: 1,
        volume: { persistentVolumeClaim: { claimName: 'slides' } },
      },
      training: { epochs: 1, loss: 'binary-cross-entropy' },
    };
  }
  spec(patch: (s: Spec) => void): this {
    patch(this.#spec);
    return this;
  }
  tileSize(t: number | 'auto'): this {
    return this.spec((s) => {
      s.streaming = { ...(s.streaming as Spec), tileSize: t };
    });
  }
  minTileSize(t: number): this {
    return this.spec((s) => {
      s.streaming = { ...(s.streaming as Spec), minTileSize: t };
    });
  }
  image(px: number): this {
    return this.spec((s) => {
      (s.data as Spec).imageSize = { height: px, width: px };
    });
  }
  model(m: Spec): this {
    return this.spec((s) => {
      s.model = { head: { pooling: 'max', classes: 1 }, ...m };
    });
  }
  resources(r: Spec): this {
    return this.spec((s) => {
      s.resources = { ...(s.resources as Spec), ...r };
    });
  }
  runPolicy(r: Spec): this {
    return this.spec((s) => {
      s.runPolicy = { ...(s.runPolicy as Spec), ...r };
    });
  }
  checkpoint(c: Spec): this {
    return this.spec((s) => {
      s.checkpoint = c;
    });
  }
  meta(m: Record<string, unknown>): this {
    Object.assign(this.#meta, m);
    return this;
  }
  status(s: StreamingTrainingJob['status']): this {
    this.#status = s;
    return this;
  }
  obj(): StreamingTrainingJob {
    const r = validateJob({
      apiVersion: 'tilestream.io/v1alpha1',
      kind: 'StreamingTrainingJob',
      metadata: { name: this.#name, namespace: this.#namespace },
      spec: structuredClone(this.#spec),
    });
    if (!r.ok) throw new Error(`invalid test fixture: ${JSON.stringify(r.problems)}`);
    r.job.metadata = { ...r.job.metadata, ...structuredClone(this.#meta) };
    if (this.#status) r.job.status = structuredClone(this.#status);
    return r.job;
  }
}

export const makeStj = (name = 'demo', namespace = 'team') => new StjBuilder(name, namespace);

export class NodeBuilder {
  #node: Node;
  constructor(name: string) {
    this.#node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, resourceVersion: '1', labels: { 'kubernetes.io/hostname': name } },
      spec: {},
      status: {
        allocatable: { cpu: '32', memory: '256Gi', pods: '110' },
        conditions: [{ type: 'Ready', status: 'True' }],
      },
    };
  }
  #labels(): Record<string, string> {
    return this.#node.metadata.labels as Record<string, string>;
  }
  #alloc(): Record<string, string> {
    return this.#node.status?.allocatable as Record<string, string>;
  }
  /** GFD labels for `count` whole GPUs of `product` with `mib` MiB each. */
  gpus(count: number, product: string, mib: number): this {
    Object.assign(this.#labels(), {
      'nvidia.com/gpu.product': product,
      'nvidia.com/gpu.memory': String(mib),
      'nvidia.com/gpu.count': String(count),
      'nvidia.com/gpu.replicas': String(count),
      'nvidia.com/mig.strategy': 'none',
    });
    this.#alloc()['nvidia.com/gpu'] = String(count);
    return this;
  }
  /** GPUs with no GFD memory label; optionally a product label. */
  gpusWithoutGfd(count: number, productLabel?: [string, string]): this {
    if (productLabel) this.#labels()[productLabel[0]] = productLabel[1];
    this.#alloc()['nvidia.com/gpu'] = String(count);
    return this;
  }
  /** MIG `single`: gpu.* describe the slice. */
  migSingle(count: number, parent: string, profile: string, mib: number): this {
    Object.assign(this.#labels(), {
      'nvidia.com/gpu.product': `${parent}-MIG-${profile}`,
      'nvidia.com/gpu.memory': String(mib),
      'nvidia.com/gpu.count': String(count),
      'nvidia.com/mig.strategy': 'single',
    });
    this.#alloc()['nvidia.com/gpu'] = String(count);
    return this;
  }
  /** MIG `mixed`: a resource and labels per profile. */
  migMixed(parent: string, profile: string, count: number, mib?: number): this {
    Object.assign(this.#labels(), { 'nvidia.com/gpu.product': parent, 'nvidia.com/mig.strategy': 'mixed' });
    this.#labels()[`nvidia.com/mig-${profile}.count`] = String(count);
    if (mib !== undefined) this.#labels()[`nvidia.com/mig-${profile}.memory`] = String(mib);
    this.#alloc()[`nvidia.com/mig-${profile}`] = String(count);
    return this;
  }
  shared(strategy: 'time-slicing' | 'mps', replicasPerGpu: number): this {
    const count = Number(this.#labels()['nvidia.com/gpu.count']);
    this.#labels()['nvidia.com/gpu.sharing-strategy'] = strategy;
    this.#labels()['nvidia.com/gpu.replicas'] = String(count * replicasPerGpu);
    this.#alloc()['nvidia.com/gpu'] = String(count * replicasPerGpu);
    return this;
  }
  taint(key: string, effect: Taint['effect'], value?: string): this {
    (this.#node.spec as { taints?: Taint[] }).taints = [
      ...(this.#node.spec?.taints ?? []),
      { key, effect, ...(value !== undefined && { value }) },
    ];
    return this;
  }
  label(k: string, v: string): this {
    this.#labels()[k] = v;
    return this;
  }
  cordoned(): this {
    (this.#node.spec as { unschedulable?: boolean }).unschedulable = true;
    return this;
  }
  notReady(): this {
    (this.#node.status as { conditions: unknown[] }).conditions = [{ type: 'Ready', status: 'Unknown' }];
    return this;
  }
  obj(): Node {
    return structuredClone(this.#node);
  }
}

export const makeNode = (name: string) => new NodeBuilder(name);

/** A trainer pod of Job `jobName`, bound to `node`, in a phase, with an optional terminated state. */
export function makePod(
  jobName: string,
  namespace: string,
  o: {
    name?: string;
    node?: string;
    phase?: NonNullable<Pod['status']>['phase'];
    exitCode?: number;
    message?: string;
    gpus?: number;
    stj?: string;
    disrupted?: boolean;
  } = {},
): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: o.name ?? `${jobName}-abcde`,
      namespace,
      resourceVersion: '1',
      labels: {
        'batch.kubernetes.io/job-name': jobName,
        'tilestream.io/job-name': o.stj ?? jobName.replace(/-\d+$/, ''),
        'app.kubernetes.io/managed-by': 'tilestream-operator',
      },
    },
    spec: {
      ...(o.node !== undefined && { nodeName: o.node }),
      containers: [{ name: 'trainer', resources: { limits: { 'nvidia.com/gpu': String(o.gpus ?? 1) } } }],
    },
    status: {
      phase: o.phase ?? 'Running',
      ...(o.disrupted && {
        conditions: [{ type: 'DisruptionTarget', status: 'True', reason: 'PreemptionByScheduler' }],
      }),
      containerStatuses: [
        {
          name: 'trainer',
          restartCount: 0,
          ...(o.exitCode !== undefined
            ? { state: { terminated: { exitCode: o.exitCode, reason: 'Error', message: o.message ?? '' } } }
            : { state: { running: {} } }),
        },
      ],
    },
  };
}

/** Marks a Job (as built by the operator) with the status the Job controller would report. */
export function withJobStatus(job: Job, status: NonNullable<Job['status']>): Job {
  return {
    ...structuredClone(job),
    metadata: { ...job.metadata, uid: 'job-uid', resourceVersion: '7' },
    status,
  };
}
