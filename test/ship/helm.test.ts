// The Helm chart with the real helm (built from Go modules; skipped with the reason when it cannot
// be had here): lint, render with default and non-default values, check the rendered objects against
// the operator's own sources (RBAC rules, CLI flags, GPU table parser, the CRD), and apply the
// rendered manifests to a real kube-apiserver with a server-side dry run.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { parseAllDocuments, parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { parseQuantity, type StreamingTrainingJob } from '../../crds/index.ts';
import { DASHBOARD_UID } from '../../helm/dashboard/dashboard.ts';
import { DASHBOARD_FILE } from '../../helm/dashboard/generate.ts';
import { metricNames } from '../../helm/dashboard/promql.ts';
import { childLabels, LABEL } from '../../operator/children/names.ts';
import { registerOperatorCommand } from '../../operator/cli.ts';
import { parseGpuMemoryTable } from '../../operator/cluster/gpu-memory-table.ts';
import { operatorConfig } from '../../operator/config.ts';
import {
  LEADER_ELECTION_RULES,
  OPERATOR_NODE_RULES,
  OPERATOR_RULES,
  type PolicyRule,
} from '../../operator/rbac.ts';
import { ensureBinaries } from '../controlplane/binaries.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { PROMETHEUS_OPERATOR } from '../tools.ts';

const root = join(import.meta.dirname, '..', '..');
const chart = join(root, 'helm', 'tilestream');
const CRD_SOURCE = join(root, 'crds', 'tilestream.io_streamingtrainingjobs.yaml');
const CRD_COPY = join(chart, 'files', 'crd.yaml');
const NS = 'tilestream-system';

const found = await ensureBinaries(['helm']);
const skip = found.ok ? undefined : found.reason;
const promtool = await ensureBinaries(['promtool']);
const helmBin = found.ok ? found.bin.helm : undefined;

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are checked field by field
type Obj = any;

function helm(args: readonly string[]): { status: number | null; out: string; stdout: string } {
  assert.ok(helmBin);
  const r = spawnSync(helmBin, args, {
    encoding: 'utf8',
    env: { ...process.env, HELM_CACHE_HOME: '/tmp/tilestream-helm-cache' },
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

/** `helm template` → the YAML text and its objects. `set` uses --set-json so that types survive. */
function render(setJson: readonly string[] = [], namespace = NS): { text: string; objects: Obj[] } {
  const r = helm([
    'template',
    'ts',
    chart,
    '--namespace',
    namespace,
    ...setJson.flatMap((s) => ['--set-json', s]),
  ]);
  assert.equal(r.status, 0, r.out);
  const objects = parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Obj)
    .filter((o) => o !== null && o !== undefined);
  return { text: r.stdout, objects };
}

function find(objects: Obj[], kind: string, name?: string, namespace?: string): Obj[] {
  return objects.filter(
    (o) =>
      o.kind === kind &&
      (name === undefined || o.metadata?.name === name) &&
      (namespace === undefined || o.metadata?.namespace === namespace),
  );
}

function one(objects: Obj[], kind: string, name?: string, namespace?: string): Obj {
  const hits = find(objects, kind, name, namespace);
  assert.equal(hits.length, 1, `expected one ${kind} ${name ?? ''} ${namespace ?? ''}, got ${hits.length}`);
  return hits[0];
}

/** Rules as a set of (group, resource, verb) triples: equal permissions whatever the grouping. */
function triples(rules: readonly PolicyRule[]): string[] {
  const out = new Set<string>();
  for (const r of rules)
    for (const g of r.apiGroups)
      for (const res of r.resources) for (const v of r.verbs) out.add(`${g}|${res}|${v}`);
  return [...out].sort();
}

function operatorOptionNames(): Set<string> {
  const program = new Command('tilestream');
  registerOperatorCommand(program, '0.0.0');
  const cmd = program.commands.find((c) => c.name() === 'operator');
  assert.ok(cmd);
  return new Set(cmd.options.map((o) => o.long ?? ''));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function container(objects: Obj[]): Obj {
  return one(objects, 'Deployment').spec.template.spec.containers[0];
}

describe('helm chart', { skip }, () => {
  it('passes helm lint --strict with default values and with every mode on', () => {
    const r = helm(['lint', chart, '--strict']);
    assert.equal(r.status, 0, r.out);
    const all = helm([
      'lint',
      chart,
      '--strict',
      '--set-json',
      'replicaCount=3',
      '--set-json',
      'watchNamespaces=["team-a","team-b"]',
      '--set-json',
      'gpuMemoryTable={"Tesla-T4":"15Gi","RTX-A6000":49140}',
      '--set-json',
      'image={"registry":"registry.local:5000","repository":"tilestream/op","digest":"sha256:' +
        'a'.repeat(64) +
        '"}',
      '--set-json',
      'imagePullSecrets=[{"name":"regcred"}]',
      '--set-json',
      'serviceMonitor={"enabled":true}',
      '--set-json',
      'podMonitor={"enabled":true}',
      '--set-json',
      'prometheusRule={"enabled":true}',
      '--set-json',
      'grafanaDashboard={"enabled":true,"namespace":"monitoring","labels":{"team":"ml"}}',
    ]);
    assert.equal(all.status, 0, all.out);
  });

  it('keeps files/crd.yaml identical to the generated CRD and renders it with resource-policy keep', () => {
    assert.equal(
      readFileSync(CRD_COPY, 'utf8'),
      readFileSync(CRD_SOURCE, 'utf8'),
      "the chart's CRD copy is stale: run `npm run generate:crd` (it writes both files)",
    );
    const crd = one(render().objects, 'CustomResourceDefinition');
    const source = parseYaml(readFileSync(CRD_SOURCE, 'utf8')) as Obj;
    assert.equal(crd.metadata.annotations['helm.sh/resource-policy'], 'keep');
    delete crd.metadata.annotations;
    assert.deepEqual(crd, source);
    assert.equal(find(render(['crds={"install":false}']).objects, 'CustomResourceDefinition').length, 0);
  });

  it('grants exactly the rules of operator/rbac.ts, cluster-wide by default', () => {
    const { objects } = render();
    const role = one(objects, 'ClusterRole', 'ts-tilestream');
    assert.deepEqual(triples(role.rules), triples([...OPERATOR_RULES, ...OPERATOR_NODE_RULES]));
    assert.equal(find(objects, 'Role').length, 0, 'no Lease Role without leader election');
    const binding = one(objects, 'ClusterRoleBinding', 'ts-tilestream');
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'ts-tilestream', namespace: NS }]);
    assert.equal(one(objects, 'ServiceAccount').metadata.name, 'ts-tilestream');
    assert.equal(container(objects).args.includes('--no-leader-elect'), true);
  });

  it('uses Roles in the watched namespaces and passes them to the operator', () => {
    const { objects } = render(['watchNamespaces=["team-a","team-b"]']);
    assert.equal(find(objects, 'ClusterRole', 'ts-tilestream').length, 0);
    assert.deepEqual(
      triples(one(objects, 'ClusterRole', 'ts-tilestream-nodes').rules),
      triples(OPERATOR_NODE_RULES),
    );
    for (const ns of ['team-a', 'team-b']) {
      assert.deepEqual(triples(one(objects, 'Role', 'ts-tilestream', ns).rules), triples(OPERATOR_RULES));
      assert.equal(one(objects, 'RoleBinding', 'ts-tilestream', ns).subjects[0].namespace, NS);
    }
    const args: string[] = container(objects).args;
    assert.ok(args.includes('--namespace=team-a') && args.includes('--namespace=team-b'), args.join(' '));
  });

  it('turns leader election on with more than one replica, with a Lease Role in the release namespace', () => {
    const { objects } = render(['replicaCount=2']);
    const deploy = one(objects, 'Deployment');
    assert.equal(deploy.spec.replicas, 2);
    assert.equal(deploy.spec.strategy, undefined, 'rolling update is safe with a leader');
    const args: string[] = container(objects).args;
    assert.ok(!args.includes('--no-leader-elect'));
    assert.ok(args.includes('--lease-name=tilestream-operator'));
    const lease = one(objects, 'Role', 'ts-tilestream-leader-election', NS);
    assert.deepEqual(triples(lease.rules), triples(LEADER_ELECTION_RULES));
    assert.equal(one(render(['replicaCount=1']).objects, 'Deployment').spec.strategy.type, 'Recreate');
    assert.ok(
      container(render(['leaderElection={"mode":"on"}']).objects).args.includes(
        '--lease-name=tilestream-operator',
      ),
    );
  });

  it('runs the operator hardened, with probes on the health port and metrics on 8080', () => {
    const { objects } = render();
    const pod = one(objects, 'Deployment').spec.template.spec;
    const c = container(objects);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.equal(c.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'health' });
    assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'health' });
    const ports = Object.fromEntries(c.ports.map((p: Obj) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { metrics: 8080, health: 8081 });
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
    assert.equal(c.args[0], 'operator');
    assert.ok(c.args.includes('--metrics-port=8080') && c.args.includes('--health-port=8081'));
    const env = Object.fromEntries(
      c.env.map((e: Obj) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]),
    );
    assert.deepEqual(env, {
      POD_NAME: 'metadata.name',
      POD_NAMESPACE: 'metadata.namespace',
      NODE_OPTIONS: '--max-old-space-size=256',
    });
    // The V8 heap cap is a third of the memory limit: npm run bench:operator measured 471 MiB RSS at
    // 500 jobs with it, the planner threads' heaps included.
    assert.equal(parseQuantity(c.resources.limits.memory) / 2 ** 20, 3 * 256);
    const uncapped = container(render(['operator={"maxHeapMiB":0}']).objects);
    assert.ok(!uncapped.env.some((e: Obj) => e.name === 'NODE_OPTIONS'));
    const svc = one(objects, 'Service', 'ts-tilestream-metrics');
    assert.deepEqual(svc.spec.ports, [
      { name: 'metrics', port: 8080, targetPort: 'metrics', protocol: 'TCP' },
    ]);
    assert.deepEqual(svc.spec.selector, one(objects, 'Deployment').spec.selector.matchLabels);
    const pdb = one(objects, 'PodDisruptionBudget');
    assert.deepEqual(pdb.spec.selector.matchLabels, svc.spec.selector);
    assert.equal(pdb.spec.maxUnavailable, 1);
  });

  it('passes only flags that `tilestream operator` declares', () => {
    const known = operatorOptionNames();
    const { objects } = render([
      'replicaCount=2',
      'watchNamespaces=["a"]',
      'productLabels=["cloud.google.com/gke-accelerator"]',
      'operator={"logLevel":"debug","workers":4,"resyncSeconds":300}',
      'trainer={"command":"tilestream","imagePullSecrets":[{"name":"regcred"},{"name":"mirror"}]}',
    ]);
    const args: string[] = container(objects).args.slice(1);
    assert.ok(args.length >= 10, args.join(' '));
    for (const a of args)
      assert.ok(known.has(a.split('=')[0] ?? ''), `${a} is not an option of tilestream operator`);
    assert.ok(
      args.includes('--workers=4') && args.includes('--resync=300') && args.includes('--log-level=debug'),
    );
    // The operator parses these flags into the trainer pods' imagePullSecrets.
    const parsed = operatorConfig({
      leaderElect: false,
      trainerImagePullSecrets: args
        .filter((a) => a.startsWith('--trainer-image-pull-secrets='))
        .map((a) => a.split('=')[1] as string),
    });
    assert.deepEqual(parsed.trainer.imagePullSecrets, ['regcred', 'mirror']);
  });

  it('feeds the GPU memory table from the values to --gpu-memory-table in a form the operator parses', () => {
    const { objects } = render(['gpuMemoryTable={"Tesla-T4":"15Gi","RTX-A6000":49140}']);
    const cm = one(objects, 'ConfigMap', 'ts-tilestream-gpu-memory');
    const table = parseGpuMemoryTable(cm.data['gpu-memory-table.yaml'], 'configmap');
    assert.deepEqual(
      table,
      new Map([
        ['Tesla-T4', 15 * 2 ** 30],
        ['RTX-A6000', 49140 * 2 ** 20],
      ]),
    );
    const deploy = one(objects, 'Deployment');
    const c = deploy.spec.template.spec.containers[0];
    const mount = c.volumeMounts.find((m: Obj) => m.name === 'gpu-memory-table');
    const flag: string = c.args.find((a: string) => a.startsWith('--gpu-memory-table='));
    assert.equal(flag, `--gpu-memory-table=${mount.mountPath}/gpu-memory-table.yaml`);
    const vol = deploy.spec.template.spec.volumes.find((v: Obj) => v.name === 'gpu-memory-table');
    assert.equal(vol.configMap.name, cm.metadata.name);
    // an empty table is still valid for the operator, and changing the table rolls the pods
    const empty = one(render().objects, 'ConfigMap', 'ts-tilestream-gpu-memory');
    assert.equal(parseGpuMemoryTable(empty.data['gpu-memory-table.yaml'], 'configmap').size, 0);
    const checksum = (o: Obj[]) =>
      one(o, 'Deployment').spec.template.metadata.annotations['checksum/gpu-memory-table'];
    assert.notEqual(checksum(objects), checksum(render().objects));
  });

  it('lets an air-gapped install set registry, repository, tag or digest and pull secrets', () => {
    const digest = `sha256:${'b'.repeat(64)}`;
    const { objects } = render([
      `image={"registry":"registry.local:5000","repository":"mirror/op","tag":"9.9.9","digest":"${digest}"}`,
      'trainer={"image":{"registry":"registry.local:5000","repository":"mirror/trainer","tag":"1.2.3","pullPolicy":"Always"}}',
      'imagePullSecrets=[{"name":"regcred"}]',
    ]);
    const pod = one(objects, 'Deployment').spec.template.spec;
    assert.equal(pod.containers[0].image, `registry.local:5000/mirror/op@${digest}`);
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'regcred' }]);
    assert.ok(pod.containers[0].args.includes('--trainer-image=registry.local:5000/mirror/trainer:1.2.3'));
    assert.ok(pod.containers[0].args.includes('--image-pull-policy=Always'));
    // defaults: the chart's appVersion as tag
    const chartMeta = parseYaml(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    assert.equal(
      container(render().objects).image,
      `ghcr.io/tilestream/tilestream-operator:${chartMeta.appVersion}`,
    );
  });

  it('scrapes the operator with a ServiceMonitor and the trainer pods with a PodMonitor when asked', () => {
    const none = render().objects;
    assert.equal(find(none, 'ServiceMonitor').length + find(none, 'PodMonitor').length, 0, 'off by default');
    const { objects } = render(['serviceMonitor={"enabled":true}', 'podMonitor={"enabled":true}']);
    const sm = one(objects, 'ServiceMonitor');
    const svc = one(objects, 'Service', 'ts-tilestream-metrics');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels))
      assert.equal(svc.metadata.labels[k], v, k);
    assert.deepEqual(sm.spec.namespaceSelector, { matchNames: [NS] });
    assert.ok(svc.spec.ports.some((p: Obj) => p.name === sm.spec.endpoints[0].port));
    const pm = one(objects, 'PodMonitor');
    const stj = { metadata: { name: 'wsi-1', namespace: 'team-a' } } as StreamingTrainingJob;
    const trainerLabels = childLabels(stj);
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(trainerLabels[k], v, k);
    assert.equal(pm.spec.podMetricsEndpoints[0].port, 'metrics');
    // the series keep the job's namespace and job labels (dashboard and alerts group by them): the
    // operator's as it exposes them, a trainer's from its pod's namespace and operator-set label,
    // so that a trainer cannot put its series in another namespace or job
    assert.equal(sm.spec.endpoints[0].honorLabels, true);
    // Prometheus sends its own token to the authenticated /metrics
    assert.equal(sm.spec.endpoints[0].bearerTokenFile, '/var/run/secrets/kubernetes.io/serviceaccount/token');
    assert.equal(sm.spec.endpoints[0].scheme, undefined, 'plain HTTP without metrics.tls');
    // with a TLS Secret: the operator serves HTTPS from it, Prometheus verifies against its ca.crt
    const tls = render([
      'serviceMonitor={"enabled":true}',
      'metrics.tls={"secretName":"metrics-tls"}',
    ]).objects;
    const tlsEndpoint = one(tls, 'ServiceMonitor').spec.endpoints[0];
    assert.equal(tlsEndpoint.scheme, 'https');
    assert.deepEqual(tlsEndpoint.tlsConfig, {
      serverName: `ts-tilestream-metrics.${NS}.svc`,
      ca: { secret: { name: 'metrics-tls', key: 'ca.crt' } },
    });
    const tlsPod = one(tls, 'Deployment').spec.template.spec;
    assert.ok(tlsPod.containers[0].args.includes('--metrics-cert-dir=/etc/tilestream-metrics-tls'));
    assert.deepEqual(
      tlsPod.volumes.find((v: Obj) => v.name === 'metrics-tls'),
      { name: 'metrics-tls', secret: { secretName: 'metrics-tls' } },
    );
    const reader = one(objects, 'ClusterRole', 'ts-tilestream-metrics-reader');
    assert.deepEqual(reader.rules, [{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
    const trainerEndpoint = pm.spec.podMetricsEndpoints[0];
    assert.equal(trainerEndpoint.honorLabels, false);
    assert.deepEqual(trainerEndpoint.relabelings, [
      {
        sourceLabels: [`__meta_kubernetes_pod_label_${LABEL.job.replace(/[./-]/g, '_')}`],
        targetLabel: 'job',
        action: 'replace',
      },
    ]);
    assert.deepEqual(trainerEndpoint.metricRelabelings, [
      { regex: 'exported_(namespace|job)', action: 'labeldrop' },
    ]);
    assert.ok(pm.spec.podTargetLabels.includes(LABEL.job));
    assert.deepEqual(pm.spec.namespaceSelector, { any: true });
    const scoped = one(
      render(['podMonitor={"enabled":true}', 'watchNamespaces=["team-a"]']).objects,
      'PodMonitor',
    );
    assert.deepEqual(scoped.spec.namespaceSelector, { matchNames: ['team-a'] });
    // the tenant policy binds cluster-wide, or only in the watched namespaces
    const binding = (values: string[]) =>
      one(render(values).objects, 'ValidatingAdmissionPolicyBinding', 'ts-tilestream-tenant-policy').spec;
    assert.equal(binding([]).matchResources, undefined);
    assert.deepEqual(binding(['watchNamespaces=["team-a","team-b"]']).matchResources, {
      namespaceSelector: {
        matchExpressions: [
          { key: 'kubernetes.io/metadata.name', operator: 'In', values: ['team-a', 'team-b'] },
        ],
      },
    });
    assert.deepEqual(binding([]).paramRef, {
      name: 'ts-tilestream-tenant-policy',
      namespace: NS,
      parameterNotFoundAction: 'Deny',
    });
  });

  it('alerts only on metrics the operator and trainer export, in rules promtool accepts', (t) => {
    const { objects } = render(['prometheusRule={"enabled":true}']);
    const rule = one(objects, 'PrometheusRule');
    const rules: Obj[] = rule.spec.groups.flatMap((g: Obj) => g.rules);
    assert.deepEqual(rules.map((r) => r.alert).sort(), [
      'TilestreamCheckpointStale',
      'TilestreamJobFailed',
      'TilestreamOperatorDown',
      'TilestreamProgressStalled',
      'TilestreamReconcileErrors',
      'TilestreamRepeatedOutOfMemory',
    ]);
    const sources = ['operator/metrics.ts', 'trainer/train/observe.ts']
      .map((f) => readFileSync(join(root, f), 'utf8'))
      .join('\n');
    for (const r of rules) {
      // `up` is Prometheus's own per-target series; the scraped-exposition check is metrics-scrape.test.ts
      for (const name of metricNames(String(r.expr)).filter((n) => n !== 'up')) {
        assert.ok(
          sources.includes(`name: '${name}'`),
          `${r.alert}: ${name} is not a metric the operator or trainer exports`,
        );
      }
    }
    // the operator-down alert follows the ServiceMonitor's job label (the Service name)
    const down = rules.find((r) => r.alert === 'TilestreamOperatorDown');
    assert.match(down.expr, new RegExp(`job="${one(objects, 'Service').metadata.name}"`));
    if (!promtool.ok) return t.skip(promtool.reason);
    const dir = mkdtempSync(join(tmpdir(), 'tilestream-rules-'));
    try {
      const file = join(dir, 'rules.yaml');
      writeFileSync(file, stringifyYaml({ groups: rule.spec.groups }));
      const r = spawnSync(promtool.bin.promtool ?? 'promtool', ['check', 'rules', file], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /SUCCESS: 6 rules found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ships the generated dashboard in a ConfigMap labelled grafana_dashboard "1" when asked', () => {
    assert.equal(find(render().objects, 'ConfigMap', 'ts-tilestream-dashboard').length, 0, 'off by default');
    const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Obj;
    const cm = one(
      render(['grafanaDashboard={"enabled":true}']).objects,
      'ConfigMap',
      'ts-tilestream-dashboard',
    );
    assert.equal(cm.metadata.namespace, NS, 'the release namespace by default');
    assert.equal(cm.metadata.labels.grafana_dashboard, '1');
    assert.deepEqual(Object.keys(cm.data), ['tilestream.json']);
    assert.deepEqual(JSON.parse(cm.data['tilestream.json']), dashboard, 'the committed JSON, unchanged');
    assert.equal(JSON.parse(cm.data['tilestream.json']).uid, DASHBOARD_UID);
    // legend templates such as {{namespace}} survive: the file is not a Helm template
    assert.match(cm.data['tilestream.json'], /"legendFormat": "\{\{namespace\}\}\/\{\{job\}\}"/);
    const placed = one(
      render([
        'grafanaDashboard={"enabled":true,"namespace":"monitoring","labels":{"team":"ml"},"annotations":{"grafana_folder":"Training"}}',
      ]).objects,
      'ConfigMap',
      'ts-tilestream-dashboard',
    );
    assert.equal(placed.metadata.namespace, 'monitoring');
    assert.equal(placed.metadata.labels.team, 'ml');
    assert.equal(placed.metadata.labels.grafana_dashboard, '1');
    assert.deepEqual(placed.metadata.annotations, { grafana_folder: 'Training' });
  });

  it('rejects values that the schema forbids', () => {
    for (const bad of [
      'replicaCount=-1',
      'bogus=1',
      'gpuMemoryTable={"T4":"lots"}',
      'leaderElection={"mode":"maybe"}',
      'image={"repository":"x","digest":"latest"}',
      'watchNamespaces=["Team_A"]',
      'grafanaDashboard={"enabled":true,"namespace":"Monitoring"}',
      'grafanaDashboard={"enable":true}',
    ]) {
      const r = helm(['template', 'ts', chart, '--set-json', bad]);
      assert.notEqual(r.status, 0, `${bad} was accepted`);
      assert.match(r.out, /values don't meet the specifications of the schema|at '/, bad);
    }
  });
});

describe('helm chart on a real API server (server-side dry run)', { skip }, () => {
  let plane: ControlPlane | undefined;
  let planeSkip: string | undefined;
  before(async () => {
    if (skip) return;
    const started = await startControlPlaneOrSkip({ controllers: [] });
    planeSkip = started.skip;
    plane = started.plane;
    // kubectl rather than createNamespace: no serviceaccount controller runs, and a dry run of a
    // Deployment does not need the ServiceAccount to exist
    if (plane) {
      const r = await plane.kubectl(['create', 'namespace', NS]);
      assert.equal(r.code, 0, r.stderr);
      for (const ns of ['team-a', 'team-b'])
        assert.equal((await plane.kubectl(['create', 'namespace', ns])).code, 0);
    }
  });
  after(async () => {
    await plane?.stop();
  });

  const cases: [string, string[]][] = [
    ['default values', []],
    [
      'leader election, namespace-scoped, GPU table, air-gapped image, dashboard in another namespace',
      [
        'replicaCount=2',
        'watchNamespaces=["team-a","team-b"]',
        'gpuMemoryTable={"Tesla-T4":"15Gi"}',
        `image={"registry":"registry.local:5000","repository":"mirror/op","digest":"sha256:${'c'.repeat(64)}"}`,
        'imagePullSecrets=[{"name":"regcred"}]',
        'grafanaDashboard={"enabled":true,"namespace":"team-b","labels":{"team":"ml"}}',
      ],
    ],
  ];
  for (const [name, values] of cases) {
    it(`accepts every rendered object: ${name}`, async (t) => {
      if (!plane) return t.skip(planeSkip ?? 'no control plane');
      const { text, objects } = render(values);
      const r = await plane.kubectl(['apply', '--dry-run=server', '-o', 'name', '-f', '-'], { input: text });
      assert.equal(r.code, 0, r.stderr);
      const applied = r.stdout.trim().split('\n').filter(Boolean);
      assert.equal(applied.length, objects.length, r.stdout);
    });
  }

  it('installs with helm --dry-run=server and prints NOTES that say what to do next', (t) => {
    if (!plane) return t.skip(planeSkip ?? 'no control plane');
    const kubeconfig = plane.kubeconfigPath;
    const install = (...extra: string[]) =>
      helm(['install', 'ts', chart, '-n', NS, '--dry-run=server', '--kubeconfig', kubeconfig, ...extra]);
    const r = install();
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /rollout status deployment\/ts-tilestream/);
    assert.match(r.out, /kubectl get stj/);
    assert.doesNotMatch(r.out, /grafana_dashboard/, 'no dashboard note when it is off');
    // metrics need a token by default; the policy and the roles are named
    assert.match(
      r.out,
      /curl -s -H "Authorization: Bearer \$\(kubectl -n <ns> create token <account>\)" http:\/\/localhost:8080\/metrics/,
    );
    assert.match(r.out, /Tenant policy: ConfigMap tilestream-system\/ts-tilestream-tenant-policy/);
    assert.match(r.out, /Volume kinds allowed: persistentVolumeClaim, configMap, emptyDir\./);
    assert.match(r.out, /Env sources allowed: configMapKeyRef\. Service accounts a job may name: none/);
    assert.match(r.out, /edit or admin role in a namespace may create StreamingTrainingJobs/);
    const open = install(
      '--set',
      'metrics.auth.enabled=false',
      '--set',
      'metrics.tls.secretName=metrics-tls',
    );
    assert.equal(open.status, 0, open.out);
    assert.match(open.out, /curl -sk https:\/\/localhost:8080\/metrics/);
    const withDashboard = install('--set-json', 'grafanaDashboard={"enabled":true,"namespace":"team-a"}');
    assert.equal(withDashboard.status, 0, withDashboard.out);
    assert.match(
      withDashboard.out,
      /ConfigMap\s+team-a\/ts-tilestream-dashboard, labelled grafana_dashboard: "1"/,
    );
  });

  it('runs `tilestream operator` with the rendered args under the chart RBAC until ready and leader', async (t) => {
    if (!plane) return t.skip(planeSkip ?? 'no control plane');
    // a real install (not a dry run) of the RBAC and CRD, then the operator as the chart's
    // ServiceAccount: a missing permission shows up as an informer that never syncs
    const { text, objects } = render([
      'replicaCount=2',
      'gpuMemoryTable={"Tesla-T4":"15Gi"}',
      `metrics.auth.readers=[{"name":"prometheus","namespace":"${NS}"}]`,
    ]);
    const apply = await plane.kubectl(['apply', '-f', '-'], { input: text });
    assert.equal(apply.code, 0, apply.stderr);
    // /metrics is authenticated (--metrics-auth): a scraper bound to <release>-metrics-reader reads
    // it; the operator's own token (not bound) is forbidden; no token is unauthorised
    assert.ok((container(objects).args as string[]).includes('--metrics-auth'));
    assert.equal((await plane.kubectl(['create', 'serviceaccount', 'prometheus', '-n', NS])).code, 0);
    const cp = plane;
    const tokenOf = async (sa: string) =>
      JSON.parse(readFileSync(await cp.serviceAccountKubeconfig(NS, sa), 'utf8')).users[0].user
        .token as string;
    const scraper = { authorization: `Bearer ${await tokenOf('prometheus')}` };
    const notReader = { authorization: `Bearer ${await tokenOf('ts-tilestream')}` };
    const wait = await plane.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/streamingtrainingjobs.tilestream.io',
    ]);
    assert.equal(wait.code, 0, wait.stderr);
    const kubeconfig = await plane.serviceAccountKubeconfig(NS, 'ts-tilestream');
    const dir = mkdtempSync(join(tmpdir(), 'tilestream-ship-'));
    const tablePath = join(dir, 'gpu-memory-table.yaml');
    writeFileSync(
      tablePath,
      one(objects, 'ConfigMap', 'ts-tilestream-gpu-memory').data['gpu-memory-table.yaml'],
    );
    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    const args = (container(objects).args as string[]).map((a) =>
      a.startsWith('--gpu-memory-table=')
        ? `--gpu-memory-table=${tablePath}`
        : a.startsWith('--metrics-port=')
          ? `--metrics-port=${metricsPort}`
          : a.startsWith('--health-port=')
            ? `--health-port=${healthPort}`
            : a,
    );
    const child = spawn(
      process.execPath,
      [join(root, 'bin', 'tilestream.js'), ...args, '--bind-address=127.0.0.1', `--kubeconfig=${kubeconfig}`],
      {
        env: { ...process.env, POD_NAME: 'ts-tilestream-0', POD_NAMESPACE: NS },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d;
    });
    try {
      const deadline = Date.now() + 30_000;
      let metrics = '';
      for (;;) {
        assert.equal(child.exitCode, null, `operator exited ${child.exitCode}:\n${output}`);
        const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
        if (ready === 200) {
          metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { headers: scraper }).then(
            (r) => r.text(),
            () => '',
          );
          if (/^leader_election_master_status\{[^}]*name="tilestream-operator"[^}]*\} 1$/m.test(metrics))
            break;
        }
        assert.ok(Date.now() < deadline, `not ready and leader within 30 s (readyz ${ready}):\n${output}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.doesNotMatch(output, /forbidden/i);
      const url = `http://127.0.0.1:${metricsPort}/metrics`;
      assert.equal((await fetch(url)).status, 401);
      const forbidden = await fetch(url, { headers: notReader });
      assert.equal(forbidden.status, 403);
      assert.match(
        await forbidden.text(),
        /system:serviceaccount:tilestream-system:ts-tilestream" may not get \/metrics/,
      );
      assert.equal((await fetch(`http://127.0.0.1:${healthPort}/readyz`)).status, 200, 'probes stay open');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('accepts every optional part on (ServiceMonitor, PodMonitor, PrometheusRule against the Prometheus Operator CRDs; dashboard ConfigMap)', async (t) => {
    if (!plane) return t.skip(planeSkip ?? 'no control plane');
    const go = spawnSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' });
    const crdDir = join(
      go.stdout.trim(),
      'github.com',
      'prometheus-operator',
      `prometheus-operator@${PROMETHEUS_OPERATOR.version}`,
      'example',
      'prometheus-operator-crd',
    );
    if (go.status !== 0 || !existsSync(crdDir))
      return t.skip(
        skipUnlessRequired(
          `Prometheus Operator CRDs not in the Go module cache (npm test fetches them first: go mod download ${PROMETHEUS_OPERATOR.module}@${PROMETHEUS_OPERATOR.version})`,
        ),
      );
    for (const kind of ['servicemonitors', 'podmonitors', 'prometheusrules']) {
      const r = await plane.kubectl([
        'apply',
        '--server-side',
        '-f',
        join(crdDir, `monitoring.coreos.com_${kind}.yaml`),
      ]);
      assert.equal(r.code, 0, r.stderr);
    }
    const wait = await plane.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/servicemonitors.monitoring.coreos.com',
      'crd/podmonitors.monitoring.coreos.com',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
    assert.equal(wait.code, 0, wait.stderr);
    const { text } = render([
      'serviceMonitor={"enabled":true,"labels":{"release":"prom"}}',
      'podMonitor={"enabled":true}',
      'prometheusRule={"enabled":true}',
      'grafanaDashboard={"enabled":true}',
      'watchNamespaces=["team-a"]',
    ]);
    const r = await plane.kubectl(['apply', '--dry-run=server', '-o', 'name', '-f', '-'], { input: text });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /servicemonitor\.monitoring\.coreos\.com\/ts-tilestream/);
    assert.match(r.stdout, /podmonitor\.monitoring\.coreos\.com\/ts-tilestream-trainers/);
    assert.match(r.stdout, /prometheusrule\.monitoring\.coreos\.com\/ts-tilestream/);
    assert.match(r.stdout, /configmap\/ts-tilestream-dashboard/);
  });
});
