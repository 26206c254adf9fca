// Registers fake GPU nodes and keeps them Ready the way a kubelet does: a Lease in kube-node-lease
// renewed every leaseDuration/4 and a Ready condition in node status. The node-lifecycle controller
// then removes the `node.kubernetes.io/not-ready` taint that admission put on each new Node.
import {
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Lease,
  type V1Node,
} from '@kubernetes/client-node';
import {
  type FakeGpuClass,
  fakeGpuNode,
  microTime,
  nodeConditions,
  nodeNamesOf,
  rfc3339,
} from './gpu-node-spec.ts';

export interface FakeGpuNodesOptions {
  /** Client per node; pass ControlPlane.nodeKubeConfig to act as each node's kubelet identity. */
  kubeConfigForNode?: (nodeName: string) => KubeConfig;
  leaseDurationSeconds?: number;
  /** Lease renewal period (default leaseDuration/4 s, as the kubelet). */
  renewIntervalMs?: number;
  /** Node status (Ready heartbeat) period. */
  statusIntervalMs?: number;
  /** Wait until the scheduler may use the nodes (not-ready taint removed). Default true. */
  waitSchedulable?: boolean;
  timeoutMs?: number;
}

export interface FakeGpuNodes {
  names: string[];
  classOf: Map<string, FakeGpuClass>;
  /** Stops heartbeats (nodes go NotReady/unreachable after the grace period); nodes stay. */
  stopHeartbeat(nodeName?: string): void;
  /** Sets the Ready condition of a node (and keeps reporting it). */
  setReady(nodeName: string, ready: boolean): Promise<void>;
  /** Stops all heartbeats; with deleteNodes, deletes the Node objects too. */
  stop(opts?: { deleteNodes?: boolean }): Promise<void>;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const NODE_LEASE_NS = 'kube-node-lease';

interface NodeState {
  name: string;
  core: CoreV1Api;
  coord: CoordinationV1Api;
  ready: boolean;
  transition: string;
  leaseTimer?: NodeJS.Timeout;
  statusTimer?: NodeJS.Timeout;
  stopped: boolean;
}

async function renewLease(s: NodeState): Promise<void> {
  await s.coord.patchNamespacedLease(
    {
      name: s.name,
      namespace: NODE_LEASE_NS,
      body: { spec: { holderIdentity: s.name, renewTime: microTime() } },
    },
    mergePatch,
  );
}

async function postStatus(s: NodeState): Promise<void> {
  const now = rfc3339();
  await s.core.patchNodeStatus(
    { name: s.name, body: { status: { conditions: nodeConditions(now, s.ready, s.transition) } } },
    mergePatch,
  );
}

function errText(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  return `${e.code ?? ''} ${typeof e.body === 'string' ? e.body : JSON.stringify(e.body ?? e.message ?? err)}`;
}

export async function registerFakeGpuNodes(
  kc: KubeConfig,
  classes: readonly FakeGpuClass[],
  opts: FakeGpuNodesOptions = {},
): Promise<FakeGpuNodes> {
  const leaseSeconds = opts.leaseDurationSeconds ?? 40;
  const renewMs = opts.renewIntervalMs ?? (leaseSeconds * 1000) / 4;
  const statusMs = opts.statusIntervalMs ?? 60_000;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const adminCore = kc.makeApiClient(CoreV1Api);
  const states = new Map<string, NodeState>();
  const classOf = new Map<string, FakeGpuClass>();

  for (const cls of classes) {
    for (const name of nodeNamesOf(cls)) {
      const nodeKc = opts.kubeConfigForNode?.(name) ?? kc;
      const now = rfc3339();
      const s: NodeState = {
        name,
        core: nodeKc.makeApiClient(CoreV1Api),
        coord: nodeKc.makeApiClient(CoordinationV1Api),
        ready: true,
        transition: now,
        stopped: false,
      };
      let node: V1Node;
      try {
        node = await s.core.createNode({ body: fakeGpuNode(cls, name, now) });
      } catch (err) {
        throw new Error(`creating fake node ${name} failed: ${errText(err)}`);
      }
      // The Lease is owned by the Node so that deleting the node removes it (as with kubelet).
      const lease: V1Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name,
          namespace: NODE_LEASE_NS,
          ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name, uid: node.metadata?.uid ?? '' }],
        },
        spec: {
          holderIdentity: name,
          leaseDurationSeconds: leaseSeconds,
          // MicroTime strings pass the client's serializer unchanged; a Date would lose digits.
          renewTime: microTime() as unknown as Date,
        },
      };
      try {
        await s.coord.createNamespacedLease({ namespace: NODE_LEASE_NS, body: lease });
      } catch (err) {
        throw new Error(`creating node lease ${NODE_LEASE_NS}/${name} failed: ${errText(err)}`);
      }
      const tick = (fn: (s: NodeState) => Promise<void>, what: string) => () => {
        if (s.stopped) return;
        fn(s).catch((err) => {
          if (!s.stopped) process.stderr.write(`fake node ${name}: ${what} failed: ${errText(err)}\n`);
        });
      };
      s.leaseTimer = setInterval(tick(renewLease, 'lease renewal'), renewMs);
      s.statusTimer = setInterval(tick(postStatus, 'status heartbeat'), statusMs);
      s.leaseTimer.unref();
      s.statusTimer.unref();
      states.set(name, s);
      classOf.set(name, cls);
    }
  }

  const names = [...states.keys()];
  if (opts.waitSchedulable ?? true) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = await adminCore.listNode();
      const tainted = list.items
        .filter((n) => n.metadata?.name && states.has(n.metadata.name))
        .filter((n) =>
          (n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute'),
        )
        .map(
          (n) =>
            `${n.metadata?.name}: ${(n.spec?.taints ?? []).map((t) => `${t.key}:${t.effect}`).join(',')}`,
        );
      if (tainted.length === 0) break;
      if (Date.now() > deadline) {
        throw new Error(
          `fake nodes still tainted after ${timeoutMs} ms (is node-lifecycle-controller running?): ${tainted.join('; ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const stopOne = (s: NodeState) => {
    s.stopped = true;
    clearInterval(s.leaseTimer);
    clearInterval(s.statusTimer);
  };
  return {
    names,
    classOf,
    stopHeartbeat(nodeName) {
      for (const s of states.values()) if (!nodeName || s.name === nodeName) stopOne(s);
    },
    async setReady(nodeName, ready) {
      const s = states.get(nodeName);
      if (!s) throw new Error(`unknown fake node ${nodeName}; known: ${names.join(', ')}`);
      if (s.ready !== ready) s.transition = rfc3339();
      s.ready = ready;
      await postStatus(s);
    },
    async stop(stopOpts = {}) {
      for (const s of states.values()) stopOne(s);
      if (stopOpts.deleteNodes) {
        for (const name of names) await adminCore.deleteNode({ name }).catch(() => {});
      }
    },
  };
}
