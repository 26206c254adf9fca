// The generated CRD on a real kube-apiserver (built from Go modules; skipped with the reason when it
// cannot be built here): the API server accepts the CRD, refuses every invalid fixture naming the
// same field as validateJob, stores the same defaults, enforces immutability, and prints the columns.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { validateJob } from '../../crds/validate.ts';
import { type ControlPlane, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { sortKeys } from '../sort-keys.ts';
import {
  edit,
  INVALID_MANIFESTS,
  type Manifest,
  VALID_MANIFESTS,
  validManifest,
} from './invalid-manifests.ts';
import { mapLimit } from './map-limit.ts';

// No controllers or scheduler needed: only the API server's validation is under test.
const started = await startControlPlaneOrSkip({ controllers: [] });
if (started.skip) process.stderr.write(`SKIP CRD API-server suite: ${started.skip}\n`);

describe('the CRD on a real kube-apiserver', { skip: started.skip }, () => {
  const plane = started.plane as ControlPlane;
  const create = (m: Manifest, ...args: string[]) =>
    plane.kubectl(['create', ...args, '-f', '-'], { input: JSON.stringify(m) });

  before(async () => {
    await installCrd(plane);
  });

  after(async () => {
    await plane.stop();
  });

  it('refuses every invalid fixture with an error naming the field (and the rule message)', async () => {
    const cases = INVALID_MANIFESTS.filter((c) => !c.localOnly);
    const failures = await mapLimit(cases, 3, async (c, i) => {
      // A unique name, so a manifest that is wrongly accepted cannot make the next one fail for a conflict.
      const m = c.path.startsWith('metadata')
        ? c.manifest
        : edit(c.manifest, { 'metadata.name': `bad-${i}` });
      const r = await create(m);
      const text = r.stdout + r.stderr;
      const named = text.includes(c.path) && (c.message === undefined || text.includes(c.message));
      return r.code !== 0 && named ? null : `${c.name} [${c.path}]: exit ${r.code}: ${text.trim()}`;
    });
    assert.deepEqual(
      failures.filter((f) => f !== null),
      [],
    );
  });

  it('accepts every valid fixture and stores exactly the defaults validateJob applies', async () => {
    const problems = await mapLimit(VALID_MANIFESTS, 3, async (c, i) => {
      const m = edit(c.manifest, { 'metadata.name': `good-${i}`, 'metadata.namespace': 'default' });
      const r = await create(m, '-o', 'json');
      if (r.code !== 0) return `${c.name}: refused: ${r.stderr}`;
      const stored = (JSON.parse(r.stdout) as { spec: unknown }).spec;
      const local = validateJob(m);
      if (!local.ok) return `${c.name}: validateJob refused it`;
      const [a, b] = [JSON.stringify(sortKeys(stored)), JSON.stringify(sortKeys(local.job.spec))];
      return a === b ? null : `${c.name}: server stored ${a}\nvalidateJob gave ${b}`;
    });
    assert.deepEqual(
      problems.filter((p) => p !== null),
      [],
    );
  });

  it('refuses changes to the immutable parts and allows the rest', async () => {
    assert.equal((await create(edit(validManifest(), { 'metadata.name': 'immut' }))).code, 0);
    const patch = (p: unknown) =>
      plane.kubectl(['patch', 'stj', 'immut', '--type=merge', '-p', JSON.stringify(p)]);
    const refused: [unknown, string][] = [
      [{ spec: { model: { head: { classes: 3 } } } }, 'spec.model: Invalid value: spec.model is immutable'],
      [{ spec: { data: { train: 'x.csv' } } }, 'spec.data is immutable'],
      [{ spec: { training: { epochs: 4 } } }, 'spec.training is immutable'],
      [{ spec: { checkpoint: { keep: 5 } } }, 'spec.checkpoint is immutable'],
      [{ spec: { checkpoint: null } }, 'spec.checkpoint cannot be added or removed'],
      [
        { spec: { runPolicy: { queueName: 'other' } } },
        'spec.runPolicy.queueName: Invalid value: "other": queueName is immutable',
      ],
      [{ spec: { runPolicy: { queueName: null } } }, 'queueName cannot be added or removed'],
    ];
    for (const [p, message] of refused) {
      const r = await patch(p);
      assert.notEqual(r.code, 0, `patch ${JSON.stringify(p)} was accepted`);
      assert.ok(r.stderr.includes(message), `patch ${JSON.stringify(p)}: ${r.stderr}`);
    }
    for (const p of [
      { spec: { streaming: { tileSize: 512 } } },
      { spec: { runPolicy: { suspend: true } } },
    ]) {
      const r = await patch(p);
      assert.equal(r.code, 0, `patch ${JSON.stringify(p)}: ${r.stderr}`);
    }
  });

  it('prints Phase, Tile, GPU, Saved, Progress and the Running reason from status (a subresource)', async () => {
    assert.equal((await create(edit(validManifest(), { 'metadata.name': 'printed' }))).code, 0);
    const status = {
      status: {
        phase: 'Running',
        plan: { tileSize: 2048, gpuProduct: 'NVIDIA-A100-SXM4-40GB', memorySaved: '46.2Gi (94%)' },
        progress: { percent: '42%', epoch: 2 },
        conditions: [
          {
            type: 'Planned',
            status: 'True',
            reason: 'PlanFound',
            message: 'tile 2048 px',
            lastTransitionTime: '2026-06-01T12:00:00Z',
          },
          {
            type: 'Running',
            status: 'False',
            reason: 'TrainerRestarted',
            message: 'waiting for the trainer pod to start again',
            lastTransitionTime: '2026-06-01T12:00:00Z',
          },
        ],
      },
    };
    const patched = await plane.kubectl([
      'patch',
      'stj',
      'printed',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify(status),
    ]);
    assert.equal(patched.code, 0, patched.stderr);
    const r = await plane.kubectl(['get', 'stj', 'printed']);
    assert.equal(r.code, 0, r.stderr);
    const [header, row] = r.stdout.trim().split('\n');
    assert.deepEqual(header!.split(/\s+/), [
      'NAME',
      'PHASE',
      'TILE',
      'GPU',
      'SAVED',
      'PROGRESS',
      'REASON',
      'AGE',
    ]);
    assert.match(
      row!,
      /^printed\s+Running\s+2048\s+NVIDIA-A100-SXM4-40GB\s+46\.2Gi \(94%\)\s+42%\s+TrainerRestarted\s+\S+$/,
    );
    const short = await plane.kubectl(['get', 'stj', '-o', 'name']);
    assert.match(short.stdout, /streamingtrainingjob\.tilestream\.io\/printed/);
  });
});
