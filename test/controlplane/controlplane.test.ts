// Against a real kube-apiserver/etcd/controller-manager/scheduler (built from Go modules; skipped
// with the reason when they cannot be built here): API round-trips, RBAC, fake GPU nodes, and a
// Job whose pod is scheduled onto the right GPU class and run by the node agent.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { ensureBinaries } from './binaries.ts';
import { type FakeGpuNodes, registerFakeGpuNodes } from './fake-gpu-nodes.ts';
import { CLASS_LABEL, STANDARD_GPU_CLASSES } from './gpu-node-spec.ts';
import { type ControlPlane, startControlPlaneOrSkip } from './harness.ts';
import { type NodeAgent, startNodeAgent } from './node-agent.ts';
import { waitFor } from './wait.ts';

const started = await startControlPlaneOrSkip();
// helm is optional here: a missing build skips only the chart test, with the reason.
const helm = started.skip === undefined ? await ensureBinaries(['helm']) : undefined;
if (started.skip) process.stderr.write(`SKIP control-plane suite: ${started.skip}\n`);

describe('real control plane', () => {
  if (started.skip !== undefined) {
    // A skipped test (not only a skipped suite) so that runners count and show the reason.
    it('runs against etcd, kube-apiserver, controllers and scheduler', { skip: started.skip }, () => {});
    return;
  }
  const plane: ControlPlane = started.plane;
  let core: CoreV1Api;
  let batch: BatchV1Api;
  let nodes: FakeGpuNodes;
  let agent: NodeAgent;
  const ns = 'cp-test';

  before(async () => {
    core = plane.kubeConfig.makeApiClient(CoreV1Api);
    batch = plane.kubeConfig.makeApiClient(BatchV1Api);
    // Each node acts with its own kubelet identity, so Node authorization + NodeRestriction apply.
    nodes = await registerFakeGpuNodes(plane.kubeConfig, STANDARD_GPU_CLASSES, {
      kubeConfigForNode: plane.nodeKubeConfig,
    });
    agent = await startNodeAgent(plane.kubeConfig, nodes.names, {
      kubeConfigForNode: plane.nodeKubeConfig,
      restartDelayMs: 200,
    });
    await plane.createNamespace(ns);
  });

  after(async () => {
    await agent?.stop();
    await nodes?.stop();
    await plane.stop();
  });

  it('serves /version stamped with the release it was built from', async () => {
    const r = await plane.kubectl(['version', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const v = JSON.parse(r.stdout) as {
      serverVersion: { gitVersion: string };
      clientVersion: { gitVersion: string };
    };
    assert.match(v.serverVersion.gitVersion, /^v1\.\d+\.\d+$/);
    assert.equal(v.clientVersion.gitVersion, v.serverVersion.gitVersion);
  });

  it('round-trips a ConfigMap in a new namespace', async () => {
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'cm' }, data: { k: 'v' } },
    });
    const cm = await core.readNamespacedConfigMap({ name: 'cm', namespace: ns });
    assert.deepEqual(cm.data, { k: 'v' });
    // kubectl sees the same object through the admin kubeconfig file.
    const r = await plane.kubectl(['get', 'configmap', 'cm', '-n', ns, '-o', 'jsonpath={.data.k}']);
    assert.equal(r.stdout, 'v', r.stderr);
  });

  it('enforces RBAC: a service account without rights gets 403, and 200 once bound', async () => {
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'nobody' } } });
    const kcPath = await plane.serviceAccountKubeconfig(ns, 'nobody');
    const kc = new KubeConfig();
    kc.loadFromFile(kcPath);
    const saCore = kc.makeApiClient(CoreV1Api);
    await assert.rejects(
      saCore.listNamespacedConfigMap({ namespace: ns }),
      (err: { code?: number }) => err.code === 403,
    );

    const rbac = plane.kubeConfig.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: 'cm-reader' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'nobody-cm-reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'cm-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'nobody', namespace: ns }],
      },
    });
    const list = await waitFor('the RoleBinding to take effect', async () =>
      saCore.listNamespacedConfigMap({ namespace: ns }),
    );
    assert.ok(list.items.some((c) => c.metadata?.name === 'cm'));
    // Still nothing beyond the role.
    await assert.rejects(
      saCore.listNamespacedSecret({ namespace: ns }),
      (err: { code?: number }) => err.code === 403,
    );
  });

  it('has Ready, untainted fake GPU nodes with GPU allocatable and GFD labels', async () => {
    const list = await core.listNode();
    assert.equal(list.items.length, STANDARD_GPU_CLASSES.length);
    for (const n of list.items) {
      const ready = n.status?.conditions?.find((c) => c.type === 'Ready');
      assert.equal(ready?.status, 'True', `${n.metadata?.name} Ready`);
      assert.deepEqual(n.spec?.taints ?? [], [], `${n.metadata?.name} taints`);
      assert.ok(Number(n.status?.allocatable?.['nvidia.com/gpu']) > 0, `${n.metadata?.name} GPU allocatable`);
      assert.match(n.metadata?.labels?.['nvidia.com/gpu.memory'] ?? '', /^\d+$/);
    }
    const n40 = list.items.find((n) => n.metadata?.labels?.[CLASS_LABEL] === 'gpu-40g');
    assert.equal(n40?.metadata?.labels?.['nvidia.com/gpu.memory'], '40960');
    // Heartbeat: the node Lease exists and is held by the node.
    const lease = await waitFor('a renewed node lease', async () => {
      const l = await plane.kubeConfig
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ name: n40?.metadata?.name ?? '', namespace: 'kube-node-lease' });
      return l.spec?.holderIdentity === n40?.metadata?.name ? l : undefined;
    });
    assert.equal(lease.spec?.leaseDurationSeconds, 40);
  });

  it('runs a GPU Job on the 40 GiB node to Complete, with the SA token projected and the termination message read', async () => {
    const job = await batch.createNamespacedJob({
      namespace: ns,
      body: {
        metadata: { name: 'gpu-job' },
        spec: {
          backoffLimit: 0,
          template: {
            spec: {
              restartPolicy: 'Never',
              affinity: {
                nodeAffinity: {
                  requiredDuringSchedulingIgnoredDuringExecution: {
                    nodeSelectorTerms: [
                      {
                        matchExpressions: [
                          { key: 'nvidia.com/gpu.memory', operator: 'Gt', values: ['30000'] },
                          { key: 'nvidia.com/gpu.memory', operator: 'Lt', values: ['50000'] },
                        ],
                      },
                    ],
                  },
                },
              },
              containers: [
                {
                  name: 'main',
                  image: 'tilestream/test',
                  command: ['sh', '-c'],
                  // The namespace file comes from the projected SA volume; the token must be non-empty.
                  args: [
                    'R=$TILESTREAM_POD_ROOT; SA=$R/var/run/secrets/kubernetes.io/serviceaccount; test -s $SA/token && test -s $SA/ca.crt && echo "done in $(cat $SA/namespace) on $(NODE)" > $R/dev/termination-log',
                  ],
                  env: [{ name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
                  resources: { limits: { 'nvidia.com/gpu': '1' } },
                },
              ],
            },
          },
        },
      },
    });
    assert.ok(job.metadata?.uid);
    const done = await waitFor(
      'Job gpu-job Complete',
      async () => {
        const j = await batch.readNamespacedJob({ name: 'gpu-job', namespace: ns });
        const failed = j.status?.conditions?.find((c) => c.type === 'Failed' && c.status === 'True');
        if (failed) throw new Error(`Job failed: ${failed.reason} ${failed.message}`);
        return j.status?.conditions?.find((c) => c.type === 'Complete' && c.status === 'True')
          ? j
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(done.status?.succeeded, 1);
    const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=gpu-job' });
    assert.equal(pods.items.length, 1);
    const pod = pods.items[0] as V1Pod;
    assert.equal(pod.spec?.nodeName, 'gpu-40g-0');
    assert.equal(pod.status?.phase, 'Succeeded');
    const term = pod.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(term?.exitCode, 0);
    assert.equal(term?.reason, 'Completed');
    assert.equal(term?.message?.trim(), `done in ${ns} on gpu-40g-0`);
  });

  it('reports a process exit code 3 as a Failed pod with exitCode 3 and the log as message', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'exit3' },
        spec: {
          restartPolicy: 'Never',
          nodeSelector: { [CLASS_LABEL]: 'gpu-16g' },
          containers: [
            {
              name: 'main',
              image: 'tilestream/test',
              command: ['sh', '-c', 'echo about to fail; exit 3'],
              terminationMessagePolicy: 'FallbackToLogsOnError',
            },
          ],
        },
      },
    });
    const pod = await waitFor('pod exit3 Failed', async () => {
      const p = await core.readNamespacedPod({ name: 'exit3', namespace: ns });
      return p.status?.phase === 'Failed' ? p : undefined;
    });
    const term = pod.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(term?.exitCode, 3);
    assert.equal(term?.reason, 'Error');
    assert.match(term?.message ?? '', /about to fail/);
    assert.equal(pod.spec?.nodeName, 'gpu-16g-0');
  });

  it('on deletion sends SIGTERM, reports the exit and removes the pod', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'sleeper' },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 20,
          nodeSelector: { [CLASS_LABEL]: 'gpu-80g' },
          containers: [
            {
              name: 'main',
              image: 'tilestream/test',
              // Records SIGTERM in a PVC folder that outlives the pod.
              command: [
                'sh',
                '-c',
                'trap "echo got-term > $TILESTREAM_POD_ROOT/data/term; exit 143" TERM; while true; do sleep 0.1; done',
              ],
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
            },
          ],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'sleeper-data' } }],
        },
      },
    });
    // PVC-backed pods need a bound claim to be scheduled; the test stands in for a provisioner.
    await core.createPersistentVolume({
      body: {
        metadata: { name: 'sleeper-pv' },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteOnce'],
          hostPath: { path: `${agent.pvcRoot}/pv-sleeper` },
          claimRef: { namespace: ns, name: 'sleeper-data' },
          storageClassName: '',
        },
      },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name: 'sleeper-data' },
        spec: {
          accessModes: ['ReadWriteOnce'],
          resources: { requests: { storage: '1Gi' } },
          storageClassName: '',
          volumeName: 'sleeper-pv',
        },
      },
    });
    await waitFor('pod sleeper Running', async () => {
      const p = await core.readNamespacedPod({ name: 'sleeper', namespace: ns });
      return p.status?.phase === 'Running' ? p : undefined;
    });
    const started = Date.now();
    await core.deleteNamespacedPod({ name: 'sleeper', namespace: ns });
    await waitFor('pod sleeper gone', async () => {
      try {
        await core.readNamespacedPod({ name: 'sleeper', namespace: ns });
        return false;
      } catch (err) {
        return (err as { code?: number }).code === 404;
      }
    });
    // SIGTERM was handled (no 20 s SIGKILL wait) and the trap wrote into the claim's folder.
    assert.ok(Date.now() - started < 15_000);
    const termFile = `${agent.pvcRoot}/${ns}/sleeper-data/term`;
    assert.ok(existsSync(termFile), `${termFile} written by the TERM trap`);
  });

  it('restarts an OnFailure container in place, keeping emptyDir, and counts the restart', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'flaky' },
        spec: {
          restartPolicy: 'OnFailure',
          nodeSelector: { [CLASS_LABEL]: 'gpu-mig-10g' },
          containers: [
            {
              name: 'main',
              image: 'tilestream/test',
              // Fails on the first start, succeeds on the second (the marker survives in emptyDir).
              command: [
                'sh',
                '-c',
                'M=$TILESTREAM_POD_ROOT/scratch/once; if [ -e $M ]; then exit 0; fi; touch $M; exit 1',
              ],
              volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }],
            },
          ],
          volumes: [{ name: 'scratch', emptyDir: {} }],
        },
      },
    });
    const pod = await waitFor('pod flaky Succeeded', async () => {
      const p = await core.readNamespacedPod({ name: 'flaky', namespace: ns });
      return p.status?.phase === 'Succeeded' ? p : undefined;
    });
    const cs = pod.status?.containerStatuses?.[0];
    assert.equal(cs?.restartCount, 1);
    assert.equal(cs?.lastState?.terminated?.exitCode, 1);
    assert.equal(cs?.state?.terminated?.exitCode, 0);
  });

  it('reports an OOM kill as reason OOMKilled with exit code 137', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'hog' },
        spec: {
          restartPolicy: 'Never',
          nodeSelector: { [CLASS_LABEL]: 'gpu-16g' },
          containers: [{ name: 'main', image: 'tilestream/test', command: ['sleep', '60'] }],
        },
      },
    });
    await waitFor('pod hog Running', async () => {
      const p = await core.readNamespacedPod({ name: 'hog', namespace: ns });
      return p.status?.phase === 'Running' ? p : undefined;
    });
    assert.ok(agent.oomKill(ns, 'hog', 'main'));
    const pod = await waitFor('pod hog Failed', async () => {
      const p = await core.readNamespacedPod({ name: 'hog', namespace: ns });
      return p.status?.phase === 'Failed' ? p : undefined;
    });
    const term = pod.status?.containerStatuses?.[0]?.state?.terminated;
    assert.equal(term?.reason, 'OOMKilled');
    assert.equal(term?.exitCode, 137);
  });

  it('installs a chart with helm through the admin kubeconfig', {
    skip: helm?.ok === false ? helm.reason : undefined,
  }, async (t) => {
    const helmBin = helm?.ok ? helm.bin.helm : undefined;
    assert.ok(helmBin);
    const home = mkdtempSync(join(tmpdir(), 'tilestream-helm-'));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    const chart = join(home, 'chart');
    mkdirSync(join(chart, 'templates'), { recursive: true });
    writeFileSync(
      join(chart, 'Chart.yaml'),
      'apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: ">=1.30.0-0"\n',
    );
    writeFileSync(
      join(chart, 'templates', 'cm.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: helm-probe\ndata:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n',
    );
    const env = {
      ...process.env,
      HELM_CACHE_HOME: join(home, 'c'),
      HELM_CONFIG_HOME: join(home, 'cf'),
      HELM_DATA_HOME: join(home, 'd'),
    };
    const r = spawnSync(
      helmBin,
      [
        'install',
        'probe',
        chart,
        '-n',
        ns,
        '--kubeconfig',
        plane.kubeconfigPath,
        '--wait',
        '--timeout',
        '60s',
      ],
      { env, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const cm = await core.readNamespacedConfigMap({ name: 'helm-probe', namespace: ns });
    // Capabilities come from the live server, whose /version is stamped v1.37.x.
    assert.match(cm.data?.kube ?? '', /^v1\.\d+\.\d+$/);
    assert.equal(cm.metadata?.labels?.['app.kubernetes.io/managed-by'], 'Helm');
    assert.equal(cm.metadata?.annotations?.['meta.helm.sh/release-name'], 'probe');
  });

  it('deletes a finished Job and its pods after ttlSecondsAfterFinished', async () => {
    await batch.createNamespacedJob({
      namespace: ns,
      body: {
        metadata: { name: 'short-lived' },
        spec: {
          ttlSecondsAfterFinished: 0,
          template: {
            spec: {
              restartPolicy: 'Never',
              nodeSelector: { [CLASS_LABEL]: 'gpu-80g' },
              containers: [{ name: 'main', image: 'tilestream/test', command: ['true'] }],
            },
          },
        },
      },
    });
    await waitFor(
      'Job short-lived and its pods deleted',
      async () => {
        const jobs = await batch.listNamespacedJob({
          namespace: ns,
          fieldSelector: 'metadata.name=short-lived',
        });
        const pods = await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=short-lived' });
        return jobs.items.length === 0 && pods.items.length === 0;
      },
      { timeoutMs: 30_000 },
    );
  });
});
