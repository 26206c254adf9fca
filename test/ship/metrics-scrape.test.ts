// The /metrics of a RUNNING operator and a RUNNING trainer, scraped over HTTP: promtool check metrics
// finds nothing to lint in either, and every metric that a dashboard query or a PrometheusRule
// expression reads is in what they export. The operator runs in-process against a real kube-apiserver
// (test/controlplane) as its own service account, with a fake GPU node and one StreamingTrainingJob,
// so the per-job series exist; the trainer is `tilestream train` on a tiny synthetic job, scraped
// mid-run once every queried trainer series has a sample. Skipped with the reason when the binaries
// cannot be had (the trainer part and its promtool check still run without a control plane).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { dashboardQueries } from '../../helm/dashboard/dashboard.ts';
import { DASHBOARD_FILE } from '../../helm/dashboard/generate.ts';
import { OPERATOR, TRAINER } from '../../helm/dashboard/metric-names.ts';
import { metricNames } from '../../helm/dashboard/promql.ts';
import { operatorConfig } from '../../operator/config.ts';
import { KubeClient } from '../../operator/kube/client.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { ensureBinaries } from '../controlplane/binaries.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { type Exposition, familyOf, parseExposition, unionOf } from './exposition.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const CHART = fileURLToPath(new URL('../../helm/tilestream', import.meta.url));
const NS = 'team';
const JOB = 'scrape';
/** Counters that only move on events this test does not cause (no OOM exit, no failed reconcile,
 *  no failed watch, no retry): they must be declared in the exposition, samples are not expected. */
const EVENT_ONLY = new Set<string>([
  OPERATOR.tileReductions,
  OPERATOR.reconcileErrors,
  OPERATOR.watchErrors,
  OPERATOR.queueRetries,
]);
/** Series that Prometheus makes itself, per scrape target. */
const PROMETHEUS_OWN = new Set(['up']);

const promtool = await ensureBinaries(['promtool']);
const helm = await ensureBinaries(['helm']);

const dashboard = dashboardQueries(JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')));

/** The PrometheusRule's expressions, rendered by helm (undefined without helm). */
function ruleExpressions(): { where: string; expr: string }[] | undefined {
  if (!helm.ok || !helm.bin.helm) return undefined;
  const r = spawnSync(
    helm.bin.helm,
    [
      'template',
      'ts',
      CHART,
      '--set-json',
      'prometheusRule={"enabled":true}',
      '-s',
      'templates/prometheusrule.yaml',
    ],
    { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: '/tmp/tilestream-helm-cache' } },
  );
  assert.equal(r.status, 0, r.stderr);
  // biome-ignore lint/suspicious/noExplicitAny: a rendered PrometheusRule, read field by field
  const rule = parseAllDocuments(r.stdout)[0]?.toJS() as any;
  return rule.spec.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) =>
    g.rules.map((x) => ({ where: `alert ${x.alert}`, expr: x.expr })),
  );
}

/** Metric names of these queries, minus Prometheus's own; each with where it is used. */
function usedNames(queries: { where: string; expr: string }[]): Map<string, string[]> {
  const used = new Map<string, string[]>();
  for (const q of queries)
    for (const n of metricNames(q.expr))
      if (!PROMETHEUS_OWN.has(n)) used.set(n, [...(used.get(n) ?? []), q.where]);
  return used;
}

const allUsed = () => usedNames([...dashboard, ...(ruleExpressions() ?? [])]);

/** Names in `used` whose family this exposition declares but that have no sample yet. */
function missingSamples(e: Exposition, used: Iterable<string>): string[] {
  return [...used].filter((n) => {
    const family = familyOf(e, n);
    return family !== undefined && !EVENT_ONLY.has(family) && !e.samples.has(n);
  });
}

/** The value of the first sample of `name` (NaN if none). */
function sampleValue(text: string, name: string, labels = ''): number {
  const m = new RegExp(`^${name}(?:\\{${labels}[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return Number(m?.[1]);
}

function checkMetrics(text: string): { status: number | null; out: string } {
  assert.ok(promtool.ok && promtool.bin.promtool);
  const r = spawnSync(promtool.bin.promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

const scrape = async (port: number) => {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(r.status, 200);
  return r.text();
};

/** A tiny synthetic job (test/train/train-command.test.ts's) with many epochs, so it runs while scraped. */
function trainerManifest(work: string): string {
  const file = join(work, 'job.yaml');
  writeFileSync(
    file,
    stringify({
      apiVersion: 'tilestream.io/v1alpha1',
      kind: 'StreamingTrainingJob',
      metadata: { name: JOB, namespace: NS },
      spec: {
        model: { architecture: 'smallcnn', width: 4, head: { pooling: 'max', classes: 1 } },
        data: {
          root: join(work, 'data'),
          train: 'train.csv',
          validation: 'val.csv',
          imageSize: { height: 192, width: 192 },
          channels: 1,
          normalization: { mean: [0.5], std: [0.05] },
          synthetic: { count: 8, validationCount: 4, seed: 3, format: 'png' },
        },
        training: {
          epochs: 50,
          batchSize: 2,
          loss: 'binary-cross-entropy',
          optimizer: { type: 'adam', learningRate: 0.003 },
          seed: 7,
          backend: 'wasm',
        },
        streaming: { tileSize: 96 },
        checkpoint: { path: join(work, 'checkpoints'), everySteps: 1, keep: 2 },
      },
    }),
  );
  return file;
}

/** Runs the trainer, scrapes it until every queried trainer series has a sample, then stops it. */
async function scrapeTrainer(work: string): Promise<string> {
  const child: ChildProcess = spawn(
    process.execPath,
    [BIN, 'train', trainerManifest(work), '--metrics-port', '0', '--json'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (d) => {
    log += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const port = await waitFor(
      'the trainer to serve /metrics',
      async () => {
        assert.equal(child.exitCode, null, `the trainer exited ${child.exitCode}:\n${log.slice(-3000)}`);
        const m = /metrics on :(\d+)\/metrics/.exec(log);
        return m ? Number(m[1]) : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const used = allUsed().keys();
    const wanted = [...used];
    return await waitFor(
      'a trainer exposition with every queried trainer series',
      async () => {
        assert.equal(child.exitCode, null, `the trainer exited ${child.exitCode}:\n${log.slice(-3000)}`);
        const text = await scrape(port);
        const e = parseExposition(text);
        const missing = missingSamples(e, wanted);
        if (missing.length > 0) throw new Error(`no samples yet for ${missing.join(', ')}`);
        // unlabelled gauges read 0 from the start: wait for a finished epoch and a checkpoint
        const epoch = sampleValue(text, TRAINER.epoch);
        const checkpoint = sampleValue(text, TRAINER.lastCheckpoint);
        if (!(epoch >= 1 && checkpoint > 0)) throw new Error(`epoch ${epoch}, checkpoint ${checkpoint}`);
        return text;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
  } finally {
    child.kill('SIGTERM');
    const code = await exited;
    // 143: stopped by SIGTERM after a checkpoint (a finished run would be 0; either is fine here)
    assert.ok(code === 143 || code === 0, `trainer exit ${code}:\n${log.slice(-3000)}`);
  }
}

const started = await startControlPlaneOrSkip({
  controllers: ['node-lifecycle-controller', 'serviceaccount-controller', 'serviceaccount-token-controller'],
});
if (started.skip) process.stderr.write(`SKIP operator scrape: ${started.skip}\n`);

describe('scraped /metrics of a running operator and trainer', { timeout: 180_000 }, () => {
  const plane = started.plane as ControlPlane | undefined;
  const work = mkdtempSync(join(tmpdir(), 'tilestream-scrape-'));
  const stop = new AbortController();
  let exit: Promise<number> | undefined;
  let nodes: Awaited<ReturnType<typeof registerFakeGpuNodes>> | undefined;
  let trainerText = '';
  let operatorText = '';

  /** The operator with one planned job; resolves with its exposition once the per-job series exist. */
  async function scrapeOperator(p: ControlPlane): Promise<string> {
    await installCrd(p);
    nodes = await registerFakeGpuNodes(
      p.kubeConfig,
      [{ name: 'gpu-40g', product: 'A100-SXM4-40GB', memoryMiB: 40960, gpuCount: 8 }],
      { kubeConfigForNode: (n) => p.nodeKubeConfig(n) },
    );
    await p.createNamespace(NS);
    const { kubeConfig } = await createOperatorAccount(p, NS, { prefix: 'scrape' });
    let metricsPort = 0;
    exit = runOperator(
      operatorConfig({
        identity: 'scrape-0',
        leaseNamespace: NS,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:scrape',
      }),
      {
        signal: stop.signal,
        kubeConfig,
        log: silentLogger,
        handleSignals: false,
        onListening: (ports) => {
          metricsPort = ports.metricsPort;
        },
      },
    );
    await new KubeClient(p.kubeConfig).request(
      'POST',
      `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`,
      {
        body: {
          apiVersion: 'tilestream.io/v1alpha1',
          kind: 'StreamingTrainingJob',
          metadata: { name: JOB, namespace: NS },
          spec: {
            model: { architecture: 'smallcnn', width: 8, head: { pooling: 'max', classes: 1 } },
            data: {
              root: 'data',
              train: 'train.csv',
              imageSize: { height: 16384, width: 16384 },
              channels: 1,
            },
            training: { epochs: 1, loss: 'binary-cross-entropy' },
          },
        },
      },
    );
    const wanted = [...allUsed().keys()];
    return waitFor(
      'an operator exposition with the job planned and every queried operator series',
      async () => {
        if (metricsPort === 0) return undefined;
        const text = await scrape(metricsPort);
        const missing = missingSamples(parseExposition(text), wanted);
        if (missing.length > 0) throw new Error(`no samples yet for ${missing.join(', ')}`);
        return text;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  }

  before(async () => {
    // both at once: the trainer computes while the control plane mostly waits on the network
    [trainerText, operatorText] = await Promise.all([
      scrapeTrainer(work),
      plane ? scrapeOperator(plane) : Promise.resolve(''),
    ]);
  });

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await nodes?.stop();
    await plane?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('the trainer exposition passes promtool check metrics and carries the job labels', (t) => {
    const job = `namespace="${NS}",job="${JOB}"`;
    assert.ok(sampleValue(trainerText, TRAINER.pixels, job) >= 192 * 192, 'pixels trained on');
    assert.ok(sampleValue(trainerText, `${TRAINER.stepDuration}_count`, job) >= 1, 'steps timed');
    assert.ok(sampleValue(trainerText, TRAINER.progress, job) > 0, 'progress made');
    if (!promtool.ok) return t.skip(promtool.reason);
    const r = checkMetrics(trainerText);
    assert.equal(r.status, 0, r.out);
    assert.equal(r.out, '', 'no lint findings');
  });

  it('the operator exposition passes promtool check metrics and has the per-job series', (t) => {
    if (!plane) return t.skip(started.skip ?? 'no control plane');
    const job = `namespace="${NS}",job="${JOB}"`;
    for (const series of [
      `${OPERATOR.predictedPeak}{${job},mode="streamed"}`,
      `${OPERATOR.predictedPeak}{${job},mode="conventional"}`,
      `${OPERATOR.savingsRatio}{${job}}`,
      `${OPERATOR.tileSize}{${job},gpu_class=`,
      `${OPERATOR.jobs}{namespace="${NS}",phase=`,
    ])
      assert.ok(operatorText.includes(series), `no ${series}… in:\n${operatorText}`);
    const ratio = sampleValue(operatorText, OPERATOR.savingsRatio, job);
    const streamed = sampleValue(operatorText, OPERATOR.predictedPeak, `${job},mode="streamed"`);
    const conventional = sampleValue(operatorText, OPERATOR.predictedPeak, `${job},mode="conventional"`);
    assert.ok(streamed > 0 && conventional > streamed, `streamed ${streamed} < conventional ${conventional}`);
    assert.ok(Math.abs(ratio - (1 - streamed / conventional)) < 1e-3, `savings ratio ${ratio}`);
    if (!promtool.ok) return t.skip(promtool.reason);
    const r = checkMetrics(operatorText);
    assert.equal(r.status, 0, r.out);
    assert.equal(r.out, '', 'no lint findings');
  });

  it('every metric a dashboard query reads is exported by the operator or the trainer', (t) => {
    if (!plane) return t.skip(started.skip ?? 'no control plane');
    const exported = unionOf(parseExposition(operatorText), parseExposition(trainerText));
    const used = usedNames(dashboard);
    assert.ok(used.size >= 25, `${used.size} names`);
    const unknown = [...used].filter(([n]) => familyOf(exported, n) === undefined);
    assert.deepEqual(
      unknown.map(([n, where]) => `${n} (${where.join('; ')})`),
      [],
      'dashboard queries read metrics that neither /metrics exports',
    );
    const noSamples = [...used.keys()].filter((n) => !exported.samples.has(n));
    t.diagnostic(
      `${used.size} metric names in ${dashboard.length} queries; declared without samples here: ${noSamples.join(', ')}`,
    );
    assert.deepEqual(
      noSamples.filter((n) => !EVENT_ONLY.has(familyOf(exported, n) ?? '')),
      [],
    );
  });

  it('every metric a PrometheusRule expression reads is exported by the operator or the trainer', (t) => {
    if (!plane) return t.skip(started.skip ?? 'no control plane');
    const rules = ruleExpressions();
    if (!rules) return t.skip(helm.ok ? 'no helm' : helm.reason);
    assert.equal(rules.length, 6);
    const exported = unionOf(parseExposition(operatorText), parseExposition(trainerText));
    const unknown = [...usedNames(rules)].filter(([n]) => familyOf(exported, n) === undefined);
    assert.deepEqual(
      unknown.map(([n, where]) => `${n} (${where.join('; ')})`),
      [],
      'alerts read metrics that neither /metrics exports',
    );
  });
});
