// Issue 16's "done when": a folder of Aperio .svs and DICOM WSI slides with CSV labels trains at a
// chosen resolution (spec.data.slides.micronsPerPixel), cropped to the tissue, locally with
// `tilestream train` and on a real control plane (kubectl → operator → Job → node agent → trainer
// pod reading the slides from a hostPath volume) — and nothing decodes a whole slide: every
// OpenSlide read of both runs is recorded (slide-reads.ts) and must be the thumbnail or lie inside
// the tissue crop, never level 0. Skipped with the reason without OpenSlide, wsidicomizer (both made
// by test/prepare.ts) or the control-plane binaries.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { operatorConfig } from '../../operator/config.ts';
import { KubeClient } from '../../operator/kube/client.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { openslideAvailability } from '../../trainer/data/slide/openslide.ts';
import { OPENSLIDE_CACHE_ENV, openslideCacheRoot } from '../../trainer/data/slide/openslide-lib.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { createOperatorAccount } from '../controlplane/operator-account.ts';
import { waitFor } from '../controlplane/wait.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { wsidicomizerMissing } from '../wsidicomizer.ts';
import { checkSlideRun, type DatasetSlide, slideJobSpec, writeSlideDataset } from './slide-dataset.ts';
import { readSlideReads, SLIDE_READS_ENV, SLIDE_READS_PRELOAD } from './slide-reads.ts';
import { conditionOf } from './tiny-job.ts';
import { POD_TRAINER, startTrainingCluster, type TrainingCluster } from './training-cluster.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const openslide = openslideAvailability();
const skipSlides =
  skipUnlessRequired(openslide.ok ? undefined : `OpenSlide is not set up (${openslide.reason})`) ??
  skipUnlessRequired(wsidicomizerMissing());
// The control plane only when the slides can be made: it takes a while to start.
const started = skipSlides === undefined ? await startControlPlaneOrSkip() : { skip: skipSlides };
if (skipSlides) process.stderr.write(`SKIP whole-slide training: ${skipSlides}\n`);
else if (started.skip)
  process.stderr.write(`SKIP whole-slide training on the control plane: ${started.skip}\n`);

const NS = 'slides';
const work = mkdtempSync(join(tmpdir(), 'tilestream-e2e-slides-'));
const dataDir = join(work, 'slides');
const STJ = `/apis/tilestream.io/v1alpha1/namespaces/${NS}/streamingtrainingjobs`;

interface Stj {
  status?: {
    phase?: string;
    plan?: { tileSize?: number };
    progress?: { step?: number; fraction?: number };
    result?: Record<string, unknown>;
    conditions?: { type: string; status: string; reason: string; message?: string }[];
  };
}

let slides: DatasetSlide[] = [];
/** Made once for both suites (the DICOM conversions take a few seconds each). */
let dataset: Promise<DatasetSlide[]> | undefined;
const ensureDataset = () => {
  dataset ??= writeSlideDataset(dataDir);
  return dataset;
};

function trainLocally(
  jobFile: string,
  readsFile: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', SLIDE_READS_PRELOAD, BIN, 'train', jobFile, '--json'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, [SLIDE_READS_ENV]: readsFile },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

after(() => rmSync(work, { recursive: true, force: true }));

describe('a folder of .svs and DICOM slides with a CSV trains locally', {
  skip: skipSlides,
  timeout: 300_000,
}, () => {
  before(async () => {
    slides = await ensureDataset();
  });

  it('at 1 µm/px, cropped to the tissue, reading only thumbnails and tiles of the crops', async (t) => {
    const readsFile = join(work, 'local-reads.jsonl');
    const jobFile = join(work, 'local.yaml');
    const job = {
      apiVersion: 'tilestream.io/v1alpha1',
      kind: 'StreamingTrainingJob',
      metadata: { name: 'slides-local' },
      spec: {
        ...slideJobSpec(dataDir),
        checkpoint: { path: join(work, 'local-checkpoints'), everySteps: 1 },
      },
    };
    writeFileSync(jobFile, stringify(job));
    const r = await trainLocally(jobFile, readsFile);
    assert.equal(r.code, 0, `tilestream train: exit ${r.code}\n${r.stderr.slice(-3000)}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
    assert.equal(summary.status, 'completed');
    assert.deepEqual(summary.image, [256, 256]);
    assert.equal(summary.steps, 2, '4 training slides, batch 2');
    assert.equal(summary.skippedImages, 0, 'every slide was read');
    assert.ok(Number.isFinite(summary.validation?.loss), 'the validation slides were read');
    // The read-ahead budget is planned at start (on 2 CPUs: none) and said.
    assert.match(r.stderr, /read-ahead budget \d+ MiB \(|no read-ahead: \d+ CPUs/);
    t.diagnostic(
      checkSlideRun(slides, dataDir, join(work, 'local-checkpoints', 'tissue'), readSlideReads(readsFile)),
    );
  });
});

describe('the same folder trains on the control plane, applied with kubectl', {
  skip: started.skip,
  timeout: 420_000,
}, () => {
  const plane = started.plane as ControlPlane;
  const admin = started.plane ? new KubeClient(plane.kubeConfig) : (undefined as unknown as KubeClient);
  const stop = new AbortController();
  const readsFile = join(work, 'pod-reads.jsonl');
  const checkpoints = join(work, 'cluster-checkpoints');
  let exit: Promise<number> | undefined;
  let cluster: TrainingCluster | undefined;

  before(async () => {
    slides = await ensureDataset();
    // The trainer image carries OpenSlide and says where (ENV TILESTREAM_OPENSLIDE_CACHE); the
    // agent's pods get their own HOME, so this "image" says so too.
    const image = [
      '/usr/bin/env',
      `${OPENSLIDE_CACHE_ENV}=${openslideCacheRoot()}`,
      process.execPath,
      POD_TRAINER,
      `--e2e-slide-reads=${readsFile}`,
    ];
    cluster = await startTrainingCluster(plane, join(work, 'synthetic'), { 'tilestream:e2e-slides': image });
    await plane.createNamespace(NS);
    await waitFor('the StreamingTrainingJob API', async () =>
      admin.request('GET', STJ).then(
        () => true,
        () => undefined,
      ),
    );
    const { kubeConfig } = await createOperatorAccount(plane, NS, { prefix: 'slides' });
    exit = runOperator(
      operatorConfig({
        identity: 'slides-0',
        leaseNamespace: NS,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:e2e-slides',
      }),
      { signal: stop.signal, kubeConfig, log: silentLogger, handleSignals: false },
    );
  });

  /** The trainer pods' logs, for failure messages (the agent has no `kubectl logs`). */
  const trainerLogs = async () => {
    const pods = await admin.request<{ items: { metadata: { name: string } }[] }>(
      'GET',
      `/api/v1/namespaces/${NS}/pods`,
    );
    return pods.items
      .map((p) => {
        const log = cluster?.agent.logPath(NS, p.metadata.name, 'trainer');
        return `--- ${p.metadata.name}: ${log && existsSync(log) ? readFileSync(log, 'utf8').slice(-3000) : '(no log)'}`;
      })
      .join('\n');
  };

  after(async () => {
    stop.abort();
    if (exit) assert.equal(await exit, 0);
    await cluster?.stop();
    await plane?.stop();
  });

  it('runs to Succeeded at 1 µm/px, saves the tissue reports beside the checkpoints, decodes no slide whole', async (t) => {
    mkdirSync(checkpoints, { recursive: true });
    const base = slideJobSpec('/data');
    const manifest = {
      apiVersion: 'tilestream.io/v1alpha1',
      kind: 'StreamingTrainingJob',
      metadata: { name: 'slides', namespace: NS },
      spec: {
        ...base,
        data: { ...base.data, volume: { hostPath: { path: dataDir } } },
        resources: { gpus: 1 },
        checkpoint: { path: '/checkpoints', volume: { hostPath: { path: checkpoints } }, everySteps: 1 },
      },
    };
    const applied = await plane.kubectl(['apply', '-f', '-'], { input: stringify(manifest) });
    assert.equal(applied.code, 0, applied.stderr);
    const done = await waitFor(
      'slides: Succeeded',
      async () => {
        const s = await admin.request<Stj>('GET', `${STJ}/slides`);
        if (conditionOf(s, 'Failed')?.status === 'True')
          throw new Error(`failed: ${JSON.stringify(s.status)}`);
        return s.status?.phase === 'Succeeded' ? s : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 300 },
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await trainerLogs()}`);
    });
    assert.equal(done.status?.plan?.tileSize, 128, 'the spec’s tile');
    assert.equal(done.status?.progress?.step, 2);
    assert.equal(done.status?.progress?.fraction, 1);
    assert.equal(typeof done.status?.result?.validationAccuracy, 'number');
    // In the pod the slides are at /data, i.e. <pod root>/data: the reads and reports name that path.
    const reads = readSlideReads(readsFile);
    assert.ok(reads.length > 0, `no reads recorded in ${readsFile}`);
    const seen = reads[0]?.path as string;
    const podData = seen.slice(0, seen.lastIndexOf('/data/') + '/data'.length);
    t.diagnostic(checkSlideRun(slides, podData, join(checkpoints, 'tissue'), reads));
  });
});
