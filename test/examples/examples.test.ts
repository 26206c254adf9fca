// examples/ as a user meets it. Every file in the folder is covered without editing this test:
// - every StreamingTrainingJob document passes the project's validator, and its file passes loadJobFile
//   (what `tilestream train|plan <file>` read: one job, maybe with its claims), and the claims, volumes and Kueue
//   queues the jobs name are declared by the examples with fitting access modes and quota;
// - `tilestream plan` gives a tile for every job (and the figures quoted in the comments);
// - the pyramidal-TIFF example's data settings read a real tiled pyramid made by `tilestream synth`:
//   the level of imageSize is read, and a scaled-down copy of the job trains one step;
// - the .svs example's data settings read real Aperio slides made by `tilestream synth --format svs`
//   through OpenSlide (resolution and tissue crop), and a scaled-down copy trains one step;
// - on a real kube-apiserver with the CRD installed, every document applies with kubectl (server-side
//   schema and CEL validation), leaving out only kinds whose CRDs are not installed there — Kueue's,
//   checked to be exactly those — each job reads back with the spec validateJob gives, and the
//   operator (in this process) plans every job onto fake GPU nodes: fixed tiles kept, minGpuMemory
//   honoured, the Kueue job's trainer Job created suspended with the queue label.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { parseQuantity } from '../../crds/quantity.ts';
import { formatProblems, loadJobFile, validateJob } from '../../crds/validate.ts';
import { operatorConfig } from '../../operator/config.ts';
import { silentLogger } from '../../operator/log.ts';
import { runOperator } from '../../operator/main.ts';
import { openImage } from '../../trainer/data/image.ts';
import { ImageError } from '../../trainer/data/image-error.ts';
import { openslideAvailability } from '../../trainer/data/slide/openslide.ts';
import { registerSynthCommand } from '../../trainer/data/synth-cli.ts';
import { readSyntheticInfo } from '../../trainer/data/synthetic.ts';
import { registerPlanCommands } from '../../trainer/plan/cli.ts';
import { ensureBinaries } from '../controlplane/binaries.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { STANDARD_GPU_CLASSES } from '../controlplane/gpu-node-spec.ts';
import { type ControlPlane, startControlPlane } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { opensslAvailable } from '../controlplane/pki.ts';
import { waitFor } from '../controlplane/wait.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { sortKeys } from '../sort-keys.ts';
import {
  allDocs,
  docsOf,
  EXAMPLES_DIR,
  type ExampleDoc,
  type ExampleObject,
  exampleFiles,
  findObject,
  gvk,
  isJob,
  namespaceOf,
} from './example-docs.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tilestream.js');
const work = mkdtempSync(join(tmpdir(), 'tilestream-examples-'));

/** The examples the README and the issue promise; others may be added and are covered too. */
const PROMISED = [
  'synthetic-local.yaml',
  'single-gpu-auto-tile.yaml',
  'fixed-tile.yaml',
  'kueue-queued.yaml',
  'pyramidal-tiff-pvc.yaml',
  'svs-slides-pvc.yaml',
];
/** Kinds the test control plane has no CRD for; their documents are left out of the apply. */
const KUEUE_KINDS = [
  'kueue.x-k8s.io/v1beta2/ClusterQueue',
  'kueue.x-k8s.io/v1beta2/LocalQueue',
  'kueue.x-k8s.io/v1beta2/ResourceFlavor',
];

// The API server's validation and the operator's planning are under test: the only controller is
// node-lifecycle (it lifts the not-ready taint of the fake GPU nodes); no pod is run. The plane
// starts while the tests before it run (its start is mostly waiting); they never touch it.
const found = await ensureBinaries(['etcd', 'k8s']);
const openslide = openslideAvailability();
const skipSlides = skipUnlessRequired(
  openslide.ok ? undefined : `OpenSlide is not set up: ${openslide.reason}`,
);
const skipPlane = !found.ok
  ? found.reason
  : opensslAvailable()
    ? undefined
    : 'openssl 3.x is not installed; it mints the control-plane certificates';
if (skipPlane) process.stderr.write(`SKIP examples on the API server: ${skipPlane}\n`);
const planeStart: Promise<ControlPlane> | undefined =
  found.ok && !skipPlane
    ? startControlPlane({ bin: found.bin, controllers: ['node-lifecycle-controller'] })
    : undefined;
// Awaited in the suite's before(); until then a failed start must not be an unhandled rejection.
planeStart?.catch(() => {});

after(async () => {
  rmSync(work, { recursive: true, force: true });
  // Here, not in the suite: the plane runs even when a name filter leaves its suite out.
  const plane = await planeStart?.catch(() => undefined);
  await plane?.stop();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `tilestream <args>` with the Node running the tests (24), from the repository root. */
function tilestream(args: readonly string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const jobs = (): ExampleDoc[] => allDocs().filter(isJob);
const where = (d: ExampleDoc): string =>
  `examples/${d.file} #${d.index} ${d.obj.kind}/${d.obj.metadata.name}`;

const readExample = (file: string): string => readFileSync(join(EXAMPLES_DIR, file), 'utf8');

/** A single-document file with just this job, for the commands that take one manifest. */
function jobFile(d: ExampleDoc): string {
  if (docsOf(d.file).length === 1) return join(EXAMPLES_DIR, d.file);
  const file = join(work, `${d.obj.metadata.name}.yaml`);
  writeFileSync(file, stringify(d.obj));
  return file;
}

describe('examples/: the manifests', () => {
  it('holds the promised examples, each with a StreamingTrainingJob', () => {
    const files = exampleFiles();
    for (const f of PROMISED) {
      assert.ok(files.includes(f), `examples/${f} is missing`);
      assert.ok(docsOf(f).some(isJob), `examples/${f} holds no StreamingTrainingJob`);
    }
  });

  it('every StreamingTrainingJob document passes validateJob, and its file passes loadJobFile', async () => {
    const all = jobs();
    assert.ok(all.length >= PROMISED.length);
    for (const d of all) {
      const r = validateJob(d.obj);
      assert.ok(r.ok, `${where(d)}:\n${r.ok ? '' : formatProblems(r.problems)}`);
      // `tilestream plan|train` take a file whose one job may come with other objects (claims).
      const loaded = await loadJobFile(join(EXAMPLES_DIR, d.file));
      assert.ok(loaded.ok, `${where(d)}:\n${loaded.ok ? '' : formatProblems(loaded.problems)}`);
    }
  });

  it('names every object once, with a name, and no two jobs share a name in a namespace', () => {
    const seen = new Map<string, string>();
    for (const d of allDocs()) {
      assert.ok(
        d.obj.apiVersion && d.obj.kind && d.obj.metadata?.name,
        `${where(d)}: apiVersion, kind, name`,
      );
      const key = `${gvk(d.obj)} ${namespaceOf(d.obj) ?? '-'}/${d.obj.metadata.name}`;
      assert.equal(seen.get(key), undefined, `${key} is declared by ${seen.get(key)} and ${where(d)}`);
      seen.set(key, where(d));
    }
  });

  it('every claim a job mounts is declared beside it: data read-only-many, checkpoints one job each', () => {
    const docs = allDocs();
    const checkpointUsers = new Map<string, string>();
    let claims = 0;
    for (const d of jobs()) {
      const ns = namespaceOf(d.obj);
      const { data, checkpoint } = d.obj.spec;
      const dataClaim: string | undefined = data.volume?.persistentVolumeClaim?.claimName;
      const ckptClaim: string | undefined = checkpoint?.volume?.persistentVolumeClaim?.claimName;
      if (dataClaim !== undefined) {
        claims++;
        const pvc = findObject(docs, 'PersistentVolumeClaim', dataClaim, ns);
        assert.ok(pvc, `${where(d)}: claim ${ns}/${dataClaim} is declared in no example`);
        // The dataset is mounted read-only, often by several jobs on several nodes at once.
        assert.ok(pvc.obj.spec.accessModes.includes('ReadOnlyMany'), `${where(pvc)}: ReadOnlyMany`);
        const pvName: string | undefined = pvc.obj.spec.volumeName;
        if (pvName !== undefined) {
          const pv = findObject(docs, 'PersistentVolume', pvName);
          assert.ok(pv, `${where(pvc)}: PersistentVolume ${pvName} is declared in no example`);
          assert.ok(pv.obj.spec.accessModes.includes('ReadOnlyMany'), `${where(pv)}: ReadOnlyMany`);
          // Static binding: a class of "" on both sides, so no provisioner creates an empty volume.
          assert.equal(pvc.obj.spec.storageClassName, '', `${where(pvc)}: storageClassName ""`);
          assert.equal(pv.obj.spec.storageClassName, '', `${where(pv)}: storageClassName ""`);
        }
      }
      if (ckptClaim !== undefined) {
        claims++;
        const pvc = findObject(docs, 'PersistentVolumeClaim', ckptClaim, ns);
        assert.ok(pvc, `${where(d)}: claim ${ns}/${ckptClaim} is declared in no example`);
        const modes: string[] = pvc.obj.spec.accessModes;
        assert.ok(
          modes.includes('ReadWriteOnce') || modes.includes('ReadWriteMany'),
          `${where(pvc)}: writable`,
        );
        // Checkpoint files are named by step only: two jobs on one volume would overwrite each other.
        const key = `${ns}/${ckptClaim}`;
        assert.equal(checkpointUsers.get(key), undefined, `${key} holds the checkpoints of two jobs`);
        checkpointUsers.set(key, where(d));
      }
    }
    assert.ok(claims >= 6, `expected the cluster examples to mount claims, found ${claims}`);
  });

  it('a queued job names a LocalQueue whose ClusterQueue covers what its pod requests', () => {
    const docs = allDocs();
    const queued = jobs().filter((d) => d.obj.spec.runPolicy?.queueName !== undefined);
    assert.ok(queued.length >= 1);
    for (const d of queued) {
      const spec = d.obj.spec;
      // Kueue needs the trainer Job suspended at creation; the operator does that. The job's own
      // suspend is the user's pause switch and would keep the Job suspended after admission.
      assert.notEqual(spec.runPolicy.suspend, true, `${where(d)}: runPolicy.suspend would block admission`);
      const lq = findObject(docs, 'LocalQueue', spec.runPolicy.queueName, namespaceOf(d.obj));
      assert.ok(lq, `${where(d)}: LocalQueue ${spec.runPolicy.queueName} is declared in no example`);
      const cq = findObject(docs, 'ClusterQueue', lq.obj.spec.clusterQueue);
      assert.ok(cq, `${where(lq)}: ClusterQueue ${lq.obj.spec.clusterQueue} is declared in no example`);
      const covered = cq.obj.spec.resourceGroups.flatMap(
        (g: { coveredResources: string[] }) => g.coveredResources,
      );
      const requested = [
        ...((spec.resources?.gpus ?? 1) > 0 ? ['nvidia.com/gpu'] : []),
        ...(spec.resources?.cpu !== undefined ? ['cpu'] : []),
        ...(spec.resources?.memory !== undefined ? ['memory'] : []),
      ];
      for (const r of requested) assert.ok(covered.includes(r), `${where(cq)} does not cover ${r}`);
      for (const g of cq.obj.spec.resourceGroups) {
        for (const f of g.flavors) {
          assert.ok(findObject(docs, 'ResourceFlavor', f.name), `${where(cq)}: ResourceFlavor ${f.name}`);
        }
      }
      // The ClusterQueue admits the job's namespace only if its labels match; the example says which.
      const selector: Record<string, string> = cq.obj.spec.namespaceSelector?.matchLabels ?? {};
      const ns = namespaceOf(d.obj) as string;
      for (const [k, v] of Object.entries(selector)) {
        const text = `kubectl label namespace ${ns} ${k}=${v}`;
        assert.ok(
          readExample(cq.file).includes(text),
          `examples/${cq.file} should tell the user to run '${text}'`,
        );
      }
    }
  });
});

interface StjStatus {
  phase?: string;
  conditions?: { type: string; status: string; reason: string; message: string }[];
  plan?: { tileSize: number; gpuMemoryBytes: number; gpuProduct?: string };
}

interface PlanJson {
  fits: boolean;
  tile: number;
  tiles: number;
  stride: number;
  minimumTile: number;
  usableBytes: number;
  largestTile?: number;
  streamed: { requiredBytes: number };
}

/**
 * `tilestream plan <file> --json`: through bin/tilestream.js (`cli`), or the same command in this
 * process (`here`), which spares a Node start-up and module load per plan on a busy machine.
 */
async function plan(how: 'cli' | 'here', file: string, ...flags: string[]): Promise<PlanJson> {
  const args = ['plan', file, '--json', ...flags];
  let stdout = '';
  if (how === 'cli') {
    const r = await tilestream(args);
    assert.equal(r.code, 0, `tilestream ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    stdout = r.stdout;
  } else {
    const program = new Command('tilestream').exitOverride().configureOutput({
      writeOut: (s) => {
        stdout += s;
      },
    });
    registerPlanCommands(program);
    await program.parseAsync(args, { from: 'user' });
  }
  const p = JSON.parse(stdout) as PlanJson;
  assert.equal(p.fits, true, `${file}: no tile fits`);
  assert.ok(p.tile >= p.minimumTile, `${file}: tile ${p.tile} below the minimum ${p.minimumTile}`);
  assert.equal(p.tile % p.stride, 0, `${file}: tile ${p.tile} is not a multiple of the stride ${p.stride}`);
  return p;
}

const GiB = 2 ** 30;

describe('examples/: tilestream plan', () => {
  it('single-gpu-auto-tile.yaml: the planner picks the tiles its comment quotes', async () => {
    const file = join(EXAMPLES_DIR, 'single-gpu-auto-tile.yaml');
    const text = readExample('single-gpu-auto-tile.yaml');
    // The comment's table: GPU memory → tile (grid), and the largest tile that fits (same grid).
    for (const [memory, tile, grid, largest] of [
      ['16Gi', 2208, '4×4', 2752],
      ['24Gi', 2880, '3×3', 3408],
      ['40Gi', 4208, '2×2', 4416],
      ['80Gi', 4208, '2×2', 6288],
    ] as const) {
      const p = await plan(memory === '16Gi' ? 'cli' : 'here', file, '--gpu-memory', memory);
      assert.equal(p.tile, tile, `${memory}: planned tile ${p.tile}, the comment says ${tile}`);
      assert.equal(p.largestTile, largest, `${memory}: the largest tile that fits`);
      assert.equal(p.tiles, Number(grid[0]) ** 2);
      assert.ok(text.includes(`${tile} (${grid})`), `the comment should quote ${tile} (${grid})`);
    }
  });

  it('fixed-tile.yaml: the fixed tile fits minGpuMemory as the comment says', async () => {
    const file = join(EXAMPLES_DIR, 'fixed-tile.yaml');
    const job = docsOf('fixed-tile.yaml')[0] as ExampleDoc;
    const p = await plan('cli', file); // the budget is spec.resources.minGpuMemory
    assert.equal(p.tile, job.obj.spec.streaming.tileSize, 'a fixed tile is planned as it is');
    const quoted = `tile ${p.tile}: ${p.tiles} tiles, ${(p.streamed.requiredBytes / GiB).toFixed(1)} GiB of ${(p.usableBytes / GiB).toFixed(1)} usable`;
    assert.ok(readExample('fixed-tile.yaml').includes(quoted), `the comment should say '${quoted}'`);
  });

  it('every other job plans on its minimum GPU (or 16 GiB)', async () => {
    for (const d of jobs()) {
      if (d.file === 'single-gpu-auto-tile.yaml' || d.file === 'fixed-tile.yaml') continue;
      const budget = d.obj.spec.resources?.minGpuMemory === undefined ? ['--gpu-memory', '16Gi'] : [];
      await plan('here', jobFile(d), ...budget);
    }
  });
});

describe('examples/pyramidal-tiff-pvc.yaml: its data settings read a tiled pyramid', () => {
  const dataDir = join(work, 'wsi-pyramids');
  const example = () => docsOf('pyramidal-tiff-pvc.yaml').find(isJob) as ExampleDoc;

  before(async () => {
    // The command the example's comment gives, with fewer images.
    const args = [
      'synth',
      '--out',
      dataDir,
      '--size',
      '1024',
      '--count',
      '2',
      '--val-count',
      '2',
      '--format',
      'tiff',
    ];
    assert.ok(
      readExample('pyramidal-tiff-pvc.yaml').includes(
        `tilestream ${args.slice(0, 5).join(' ').replace(dataDir, '/tmp/wsi-pyramids')}`,
      ),
      'the comment should give the synth command',
    );
    // In this process (a Node start-up less); `plan` and `train` below go through bin/tilestream.js.
    const program = new Command('tilestream').exitOverride().configureOutput({ writeOut: () => {} });
    registerSynthCommand(program);
    await program.parseAsync([...args, '--json'], { from: 'user' });
  });

  it('imageSize chooses the pyramid page of that size, read region by region', async () => {
    const data = example().obj.spec.data;
    const file = join(dataDir, 'train', '000000.tiff');
    const opts = { channels: data.channels, normalization: data.normalization } as const;
    const img = await openImage(file, { ...opts, height: 512, width: 512 });
    try {
      const desc = img.describe();
      assert.equal(desc.format, 'tiff');
      assert.equal(desc.access, 'regions', 'a tiled page is read by region, never decoded whole');
      assert.deepEqual(
        desc.levels.map((l) => [l.width, l.tileWidth]),
        [
          [1024, 256],
          [512, 256],
          [256, 256],
        ],
      );
      assert.equal(desc.page, 1, 'imageSize 512 reads the second level of a 1024 pyramid');
      assert.equal(desc.conversion, 'grey-to-rgb');
    } finally {
      img.close();
    }
    // A size the pyramid does not hold is refused (and the image skipped), not resampled.
    await assert.rejects(
      openImage(file, { ...opts, height: 768, width: 768 }),
      (e: unknown) => e instanceof ImageError && e.reason === 'wrong-size',
    );
  });

  it('a scaled-down copy of the job (imageSize 512, level 1) trains a step on it', async () => {
    const job = example().obj;
    const copy: ExampleObject = structuredClone(job);
    const spec = copy.spec;
    // ResNet-18 streamed on wasm takes minutes per image on this machine; the data path is under test.
    spec.model = { architecture: 'smallcnn', width: 4, head: job.spec.model.head };
    spec.data.root = dataDir;
    delete spec.data.volume;
    spec.data.imageSize = { height: 512, width: 512 };
    spec.training = {
      ...spec.training,
      epochs: 1,
      batchSize: 2,
      backend: 'wasm',
      schedule: { type: 'constant' },
    };
    spec.streaming = { tileSize: 256 };
    spec.checkpoint = { path: 'checkpoints', everySteps: 1, keep: 1 };
    // Everything else about the data is the example's own.
    for (const k of [
      'train',
      'validation',
      'channels',
      'normalization',
      'augmentation',
      'maxBadImageFraction',
    ]) {
      assert.deepEqual(spec.data[k], job.spec.data[k], `spec.data.${k} is the example's`);
    }
    const checked = validateJob(copy);
    assert.ok(checked.ok, checked.ok ? '' : formatProblems(checked.problems));
    const file = join(work, 'pyramids-local.yaml');
    writeFileSync(file, stringify(copy));
    const r = await tilestream(['train', file, '--json']);
    assert.equal(r.code, 0, `tilestream train: exit ${r.code}\n${r.stderr.slice(-3000)}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
    assert.equal(summary.status, 'completed');
    assert.deepEqual(summary.image, [512, 512]);
    assert.equal(summary.steps, 1);
    assert.equal(summary.skippedImages, 0, 'every image was read');
    assert.ok(Number.isFinite(summary.validation?.loss), 'validation images were read');
  });
});

describe('examples/svs-slides-pvc.yaml: its data settings read whole slides', { skip: skipSlides }, () => {
  const dataDir = join(work, 'wsi-slides');
  const example = () => docsOf('svs-slides-pvc.yaml').find(isJob) as ExampleDoc;
  let normalization: { mean: number[]; std: number[] };

  before(async () => {
    // The command the example's comment gives, with fewer slides.
    const args = [
      'synth',
      '--out',
      dataDir,
      '--size',
      '256',
      '--count',
      '2',
      '--val-count',
      '2',
      '--format',
      'svs',
    ];
    assert.ok(
      readExample('svs-slides-pvc.yaml').includes(
        `tilestream ${args.slice(0, 5).join(' ').replace(dataDir, '/tmp/wsi-slides')}`,
      ),
      'the comment should give the synth command',
    );
    const program = new Command('tilestream').exitOverride().configureOutput({ writeOut: () => {} });
    registerSynthCommand(program);
    await program.parseAsync(args, { from: 'user' });
    // The normalization synth prints is the one dataset.json records.
    const info = await readSyntheticInfo(dataDir);
    assert.ok(info?.complete);
    normalization = info.normalization;
  });

  it('a scaled-down copy of the job (imageSize 256 at 0.5 µm/px) reads the tissue and trains a step', async () => {
    const job = example().obj;
    const img = await openImage(join(dataDir, 'train', '000001.svs'), {
      height: 256,
      width: 256,
      channels: 3,
      slide: { ...job.spec.data.slides, micronsPerPixel: 0.5 },
    });
    const d = img.describe().slide;
    img.close();
    assert.ok(d);
    assert.deepEqual([d.vendor, d.level, d.scaleX, d.tissue], ['aperio', 0, 1, 'found']);
    assert.ok(
      d.tissueBox.x1 - d.tissueBox.x0 >= 254 && d.tissueBox.x1 - d.tissueBox.x0 <= 260,
      JSON.stringify(d),
    );
    const copy: ExampleObject = structuredClone(job);
    const spec = copy.spec;
    spec.model = { architecture: 'smallcnn', width: 4, head: job.spec.model.head };
    spec.data.root = dataDir;
    delete spec.data.volume;
    spec.data.imageSize = { height: 256, width: 256 };
    spec.data.slides = { ...job.spec.data.slides, micronsPerPixel: 0.5 };
    spec.data.normalization = normalization;
    spec.training = {
      ...spec.training,
      epochs: 1,
      batchSize: 2,
      backend: 'wasm',
      schedule: { type: 'constant' },
    };
    spec.streaming = { tileSize: 128 };
    // Its own folder: the pyramidal-TIFF example's run leaves a finished checkpoint in checkpoints/.
    spec.checkpoint = { path: 'checkpoints-slides', everySteps: 1, keep: 1 };
    for (const k of ['train', 'validation', 'channels', 'augmentation', 'maxBadImageFraction']) {
      assert.deepEqual(spec.data[k], job.spec.data[k], `spec.data.${k} is the example's`);
    }
    const checked = validateJob(copy);
    assert.ok(checked.ok, checked.ok ? '' : formatProblems(checked.problems));
    const file = join(work, 'slides-local.yaml');
    writeFileSync(file, stringify(copy));
    const r = await tilestream(['train', file, '--json']);
    assert.equal(r.code, 0, `tilestream train: exit ${r.code}\n${r.stderr.slice(-3000)}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
    assert.equal(summary.status, 'completed');
    assert.deepEqual(summary.image, [256, 256]);
    assert.equal(summary.skippedImages, 0, 'every slide was read');
    assert.ok(Number.isFinite(summary.validation?.loss), 'validation slides were read');
    // Each slide's tissue pictures and crop, beside the checkpoints.
    const tissueDir = join(work, 'checkpoints-slides', 'tissue');
    assert.ok(existsSync(tissueDir), `no ${tissueDir}; tilestream train said:\n${r.stderr.slice(-3000)}`);
    const saved = readdirSync(tissueDir);
    for (const split of ['train', 'val']) {
      for (const n of ['000000', '000001']) {
        for (const ext of ['tissue.png', 'mask.png', 'json']) {
          assert.ok(
            saved.some((f) => f.startsWith(`${n}.svs-`) && f.endsWith(`.${ext}`)),
            `${split}/${n}.svs: no .${ext} in ${saved.join(', ')}`,
          );
        }
      }
    }
    assert.equal(saved.filter((f) => f.endsWith('.json')).length, 4, 'one report per slide');
  });
});

describe('examples/ on a real kube-apiserver', { skip: skipPlane }, () => {
  let plane: ControlPlane;
  const docs = allDocs();
  const skipped = new Set<string>();

  before(async () => {
    plane = await (planeStart as Promise<ControlPlane>);
    await installCrd(plane);
    const namespaces = new Set(docs.map((d) => namespaceOf(d.obj)).filter((n) => n !== undefined));
    for (const ns of namespaces) {
      if (ns === 'default') continue;
      const r = await plane.kubectl(['create', 'namespace', ns]);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  /** Kinds the API server serves, by discovery of each group/version the examples use. */
  async function servedKinds(): Promise<Set<string>> {
    const served = new Set<string>();
    for (const apiVersion of new Set(docs.map((d) => d.obj.apiVersion))) {
      const path = apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`;
      const r = await plane.kubectl(['get', '--raw', path]);
      if (r.code !== 0) continue; // 404: the group/version is not installed
      for (const res of (JSON.parse(r.stdout) as { resources: { kind: string }[] }).resources) {
        served.add(`${apiVersion}/${res.kind}`);
      }
    }
    return served;
  }

  it('applies every document with kubectl, leaving out only the kinds without a CRD (Kueue)', async () => {
    const served = await servedKinds();
    for (const file of exampleFiles()) {
      const fileDocs = docsOf(file);
      const keep = fileDocs.filter((d) => served.has(gvk(d.obj)));
      for (const d of fileDocs) if (!served.has(gvk(d.obj))) skipped.add(gvk(d.obj));
      if (keep.length === 0) continue;
      // The file as it is when every kind is served; else its served documents, in their order.
      let target = join(EXAMPLES_DIR, file);
      if (keep.length < fileDocs.length) {
        target = join(work, `served-${file}`);
        writeFileSync(target, keep.map((d) => stringify(d.obj)).join('---\n'));
      }
      const r = await plane.kubectl(['apply', '-f', target]);
      assert.equal(r.code, 0, `kubectl apply -f examples/${file}: ${r.stderr}`);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, keep.length, r.stdout);
      for (const line of lines) assert.match(line, / created$/);
    }
    assert.deepEqual([...skipped].sort(), KUEUE_KINDS, 'only Kueue kinds lack a CRD on the test plane');
  });

  it('each job reads back with the spec validateJob gives (defaults included)', async () => {
    for (const d of jobs()) {
      const ns = namespaceOf(d.obj) as string;
      const r = await plane.kubectl(['get', 'stj', d.obj.metadata.name, '-n', ns, '-o', 'json']);
      assert.equal(r.code, 0, `${where(d)}: ${r.stderr}`);
      const local = validateJob(d.obj);
      assert.ok(local.ok);
      assert.deepEqual(sortKeys(JSON.parse(r.stdout).spec), sortKeys(local.job.spec), where(d));
    }
  });

  it('kubectl get stj lists them with the columns the quickstart shows', async () => {
    const r = await plane.kubectl(['get', 'stj', '-n', 'pathology', '-o', 'wide']);
    assert.equal(r.code, 0, r.stderr);
    const [header, ...rows] = r.stdout.trim().split('\n');
    assert.deepEqual(
      header?.split(/\s{2,}/),
      [
        'NAME',
        'PHASE',
        'TILE',
        'GPU',
        'SAVED',
        'PROGRESS',
        'REASON',
        'AGE',
        'EPOCH',
        'LOSS',
        'RANKS',
        'QUEUE',
      ],
      `kubectl get stj -o wide printed:\n${r.stdout}\n${r.stderr}`,
    );
    const names = jobs()
      .filter((d) => namespaceOf(d.obj) === 'pathology')
      .map((d) => d.obj.metadata.name)
      .sort();
    assert.deepEqual(rows.map((l) => l.split(/\s+/)[0]).sort(), names);
    const queued = rows.find((l) => l.startsWith('resnet18-queued'));
    assert.match(queued ?? '', /pathology-gpu$/);
  });

  it('the operator plans every job onto the fake GPU classes (16, 40, 80 GiB and a MIG slice)', async (t) => {
    const nodes = await registerFakeGpuNodes(plane.kubeConfig, STANDARD_GPU_CLASSES, {
      kubeConfigForNode: (n) => plane.nodeKubeConfig(n),
    });
    const stop = new AbortController();
    const exit = runOperator(
      operatorConfig({
        leaderElect: false,
        metricsPort: 0,
        healthPort: 0,
        trainerImage: 'tilestream:examples',
      }),
      { signal: stop.signal, kubeConfig: plane.kubeConfig, log: silentLogger, handleSignals: false },
    );
    try {
      for (const d of jobs()) {
        const { name } = d.obj.metadata;
        const ns = namespaceOf(d.obj) as string;
        const spec = d.obj.spec;
        const s = await waitFor(
          `${where(d)}: planned`,
          async () => {
            const r = await plane.kubectl(['get', 'stj', name, '-n', ns, '-o', 'json']);
            const st = (JSON.parse(r.stdout) as { status?: StjStatus }).status;
            const planned = st?.conditions?.find((c) => c.type === 'Planned');
            if (planned?.status === 'False')
              throw new Error(`${where(d)}: ${planned.reason}: ${planned.message}`);
            return planned?.status === 'True' && st?.plan?.tileSize !== undefined && st.phase !== 'Pending'
              ? st
              : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 300 },
        );
        const chosen = s.plan as NonNullable<StjStatus['plan']>;
        const tile = spec.streaming?.tileSize ?? 'auto';
        if (tile === 'auto') assert.ok(chosen.tileSize >= (spec.streaming?.minTileSize ?? 64), where(d));
        else assert.equal(chosen.tileSize, tile, `${where(d)}: the fixed tile`);
        if (spec.resources?.minGpuMemory !== undefined) {
          assert.ok(
            chosen.gpuMemoryBytes >= parseQuantity(spec.resources.minGpuMemory),
            `${where(d)}: minGpuMemory`,
          );
        }
        const job = JSON.parse(
          (await plane.kubectl(['get', 'job', `${name}-0`, '-n', ns, '-o', 'json'])).stdout,
        ) as { metadata: { labels: Record<string, string> }; spec: { suspend: boolean } };
        const queue: string | undefined = spec.runPolicy?.queueName;
        // Kueue's contract: the Job is created suspended with the queue label; Kueue unsuspends it.
        assert.equal(job.spec.suspend, queue !== undefined, `${where(d)}: Job suspend`);
        assert.equal(job.metadata.labels['kueue.x-k8s.io/queue-name'], queue, `${where(d)}: queue label`);
        if (queue !== undefined) {
          assert.equal(s.phase, 'Suspended');
          const susp = s.conditions?.find((c) => c.type === 'Suspended');
          assert.match(susp?.message ?? '', new RegExp(`LocalQueue ${queue}`));
        }
        if (d.file === 'single-gpu-auto-tile.yaml') {
          // The operator and `tilestream plan` agree on the tile for the GPU the operator chose.
          const p = await plan('here', jobFile(d), '--gpu-memory', String(chosen.gpuMemoryBytes));
          assert.equal(chosen.tileSize, p.tile, `${where(d)}: operator vs tilestream plan`);
        }
      }
      const table = await plane.kubectl(['get', 'stj', '-A']);
      t.diagnostic(`kubectl get stj -A\n${table.stdout}`);
      const described = await plane.kubectl(['describe', 'stj', 'resnet34-fixed-tile', '-n', 'pathology']);
      t.diagnostic(`kubectl describe stj resnet34-fixed-tile -n pathology\n${described.stdout}`);
    } finally {
      stop.abort();
      assert.equal(await exit, 0);
      await nodes.stop();
    }
  });
});
