import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import {
  formatProblems,
  loadJobFile,
  parseJobText,
  type StreamingTrainingJob,
  type ValidationResult,
  validateJob,
} from '../../crds/index.ts';
import { edit, INVALID_MANIFESTS, VALID_MANIFESTS, validManifest } from './invalid-manifests.ts';

function problemsOf(r: ValidationResult) {
  assert.equal(r.ok, false, 'expected the manifest to be refused');
  return r.ok ? [] : r.problems;
}
function jobOf(r: ValidationResult): StreamingTrainingJob {
  if (!r.ok) assert.fail(`expected the manifest to be accepted, got:\n${formatProblems(r.problems)}`);
  return r.job;
}

describe('validateJob refuses each invalid manifest, naming the field', () => {
  it('has at least 30 distinct cases', () => {
    assert.ok(INVALID_MANIFESTS.length >= 30, `only ${INVALID_MANIFESTS.length}`);
    assert.equal(
      new Set(INVALID_MANIFESTS.map((c) => c.name)).size,
      INVALID_MANIFESTS.length,
      'duplicate case names',
    );
  });
  for (const c of INVALID_MANIFESTS) {
    it(`${c.name} → ${c.path}`, () => {
      const problems = problemsOf(validateJob(c.manifest));
      const hit = problems.find((p) => p.path === c.path);
      assert.ok(hit, `no problem at ${c.path}; got:\n${formatProblems(problems)}`);
      if (c.message)
        assert.ok(
          hit.message.includes(c.message),
          `message ${JSON.stringify(hit.message)} lacks ${c.message}`,
        );
      // One mistake, one complaint: a case that trips unrelated fields is a badly built fixture or a noisy validator.
      assert.deepEqual(
        problems.filter((p) => !p.path.startsWith(c.path) && !c.path.startsWith(p.path)),
        [],
        'problems unrelated to the mistake',
      );
    });
  }
});

describe('validateJob accepts valid manifests', () => {
  for (const c of VALID_MANIFESTS) {
    it(c.name, () => {
      const job = jobOf(validateJob(c.manifest));
      assert.equal(job.kind, 'StreamingTrainingJob');
    });
  }

  it('fills in every schema default of a minimal manifest', () => {
    const minimal = VALID_MANIFESTS.find((c) => c.name === 'a minimal local job')!.manifest;
    const { spec } = jobOf(validateJob(minimal));
    assert.deepEqual(spec.model, { architecture: 'midl2018', head: { pooling: 'max', classes: 2 } });
    assert.deepEqual(spec.streaming, {
      tileSize: 'auto',
      minTileSize: 64,
      memoryHeadroom: 0.2,
      saliency: false,
    });
    assert.deepEqual(spec.training, {
      epochs: 10,
      batchSize: 8,
      optimizer: { type: 'adam', learningRate: 0.001, weightDecay: 0 },
      schedule: { type: 'constant', warmupEpochs: 0 },
      loss: 'softmax-cross-entropy',
      seed: 0,
      backend: 'auto',
    });
    assert.deepEqual(spec.resources, { gpus: 1, replicas: 1 });
    assert.deepEqual(spec.runPolicy, { backoffLimit: 3, suspend: false, maxTileReductions: 3 });
    assert.deepEqual(spec.data.augmentation, { flips: false, rotate90: false, colorJitter: 0 });
    assert.equal(spec.data.channels, 3);
    assert.equal(spec.data.maxBadImageFraction, 0.1);
    assert.equal(spec.checkpoint, undefined, 'an optional object without a default stays absent');
  });

  it('keeps the values a user set over the defaults', () => {
    const { spec } = jobOf(validateJob(validManifest()));
    assert.equal(spec.streaming.minTileSize, 128);
    assert.equal(spec.training.optimizer.learningRate, 0.003);
    assert.equal(spec.checkpoint?.keep, 3, 'defaults inside a user-given object still apply');
    assert.equal(spec.checkpoint?.everySteps, 100);
  });

  it('treats null as absent, so the default applies (the API server prunes nulls)', () => {
    const { spec } = jobOf(validateJob(edit(validManifest(), { 'spec.streaming.tileSize': null })));
    assert.equal(spec.streaming.tileSize, 'auto');
  });

  it('drops status, as the API server does on create', () => {
    const job = jobOf(validateJob({ ...validManifest(), status: { phase: 'Succeeded' } }));
    assert.equal(job.status, undefined);
  });

  it('does not modify its input', () => {
    const m = validManifest();
    const before = structuredClone(m);
    validateJob(m);
    assert.deepEqual(m, before);
  });

  it('narrows the model union by architecture', () => {
    const { spec } = jobOf(validateJob(VALID_MANIFESTS[2]!.manifest));
    assert.equal(spec.model.architecture, 'tfjs');
    if (spec.model.architecture === 'tfjs') assert.equal(spec.model.tfjsModel.endsWith('model.json'), true);
  });
});

describe('validateJob reports every problem at once', () => {
  it('lists each independent mistake of one manifest with its own path', () => {
    const m = edit(validManifest(), {
      'metadata.name': 'Bad_Name',
      'spec.model.head.pooling': 'sum',
      'spec.data.channels': 2,
      'spec.streaming.tileSize': 'huge',
      'spec.training.optimizer.momentum': 0.9,
      'spec.resources.memory': '16GB',
      'spec.runPolicy.colour': 'blue',
    });
    const paths = problemsOf(validateJob(m)).map((p) => p.path);
    assert.deepEqual(paths.sort(), [
      'metadata.name',
      'spec.data.channels',
      'spec.model.head.pooling',
      'spec.resources.memory',
      'spec.runPolicy.colour',
      'spec.streaming.tileSize',
      'spec.training.optimizer.momentum',
    ]);
  });

  it('skips the cross-field rules of an object whose fields have the wrong type, like the API server', () => {
    const m = edit(validManifest(), { 'spec.streaming': { tileSize: 256, minTileSize: '512' } });
    const problems = problemsOf(validateJob(m));
    assert.deepEqual(
      problems.map((p) => p.path),
      ['spec.streaming.minTileSize'],
    );
    assert.match(problems[0]!.message, /must be an integer, not a string/);
  });

  it('suggests the field a typo was meant to be', () => {
    const [p] = problemsOf(validateJob(edit(validManifest(), { 'spec.training.learningRate': 0.1 })));
    assert.match(p!.message, /unknown field "learningRate"/);
    const [q] = problemsOf(validateJob(edit(validManifest(), { 'spec.streaming.tilesize': 512 })));
    assert.match(q!.message, /did you mean "tileSize"\?/);
  });

  it('explains a bad quantity with its valid forms', () => {
    const [p] = problemsOf(validateJob(edit(validManifest(), { 'spec.resources.memory': '16GB' })));
    assert.match(p!.message, /'16GB' is written '16G'/);
  });

  it('refuses what is not an object at all', () => {
    for (const x of [null, 42, 'job', [validManifest()]]) {
      const [p] = problemsOf(validateJob(x));
      assert.equal(p!.path, '');
      assert.match(p!.message, /expected a StreamingTrainingJob object/);
    }
  });

  it('formats problems one per line as path: message', () => {
    const text = formatProblems(
      [
        { path: 'spec.a', message: 'x' },
        { path: '', message: 'y' },
      ],
      'job.yaml',
    );
    assert.equal(text, 'job.yaml: spec.a: x\njob.yaml: y');
  });
});

describe('loadJobFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tilestream-crds-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('reads and validates a YAML manifest', async () => {
    const r = await loadJobFile(file('job.yaml', stringify(validManifest())));
    assert.equal(jobOf(r).metadata.name, 'lesions');
  });

  it('reads a JSON manifest', async () => {
    const r = await loadJobFile(file('job.json', JSON.stringify(validManifest(), null, 2)));
    assert.equal(jobOf(r).spec.data.imageSize.height, 512);
  });

  it('reads YAML 1.2: "yes" is a string, not a boolean', async () => {
    const text = stringify(validManifest()).replace('tileSize: auto', 'tileSize: auto\n    saliency: yes');
    const problems = problemsOf(await loadJobFile(file('yes.yaml', text)));
    assert.deepEqual(
      problems.map((p) => p.path),
      ['spec.streaming.saliency'],
    );
  });

  it('returns validation problems for a well-formed but invalid file', async () => {
    const r = await loadJobFile(
      file('bad.yaml', stringify(edit(validManifest(), { 'spec.data.channels': 4 }))),
    );
    assert.equal(problemsOf(r)[0]!.path, 'spec.data.channels');
  });

  const fileErrors: [string, () => string, RegExp][] = [
    ['a missing file', () => join(dir, 'nope.yaml'), /nope\.yaml: cannot read the job file: no such file/],
    ['a directory', () => dir, /cannot read the job file: it is a directory/],
    ['an empty file', () => file('empty.yaml', '# nothing here\n'), /the file is empty/],
    [
      'malformed YAML',
      () => file('broken.yaml', 'spec:\n  model: [unclosed\n'),
      /broken\.yaml: malformed YAML\/JSON: .*line/s,
    ],
    ['malformed JSON', () => file('broken.json', '{"spec": {"model": }'), /malformed YAML\/JSON/],
    [
      'duplicate keys',
      () => file('dup.yaml', 'kind: A\nkind: B\n'),
      /malformed YAML\/JSON: .*[Dd]uplicate|unique/,
    ],
    [
      'two jobs in one file',
      () => file('two.yaml', `${stringify(validManifest())}---\n${stringify(validManifest())}`),
      /holds 2 documents of which 2 are StreamingTrainingJobs; expected exactly one/,
    ],
    [
      'several documents and no job',
      () => file('nojob.yaml', `kind: PersistentVolumeClaim\n---\nkind: ConfigMap\n`),
      /holds 2 documents of which 0 are StreamingTrainingJobs/,
    ],
  ];
  it('takes the one job of a file that also carries other objects (claims, queues)', async () => {
    const claim = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data' } };
    const path = file('with-claim.yaml', `${stringify(claim)}---\n${stringify(validManifest())}`);
    const result = await loadJobFile(path);
    assert.equal(result.ok, true, result.ok ? '' : formatProblems(result.problems));
  });

  for (const [name, make, pattern] of fileErrors) {
    it(`explains ${name}`, async () => {
      const problems = problemsOf(await loadJobFile(make()));
      assert.equal(problems.length >= 1, true);
      assert.match(problems[0]!.message, pattern);
      assert.equal(problems[0]!.path, '');
    });
  }

  it('parses text without a file', () => {
    const r = parseJobText('kind: StreamingTrainingJob\n', 'stdin');
    assert.deepEqual(r, { ok: true, value: { kind: 'StreamingTrainingJob' } });
  });

  it('refuses a document that aliases itself into a huge expansion', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]'];
    bomb.push(
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
    );
    const r = parseJobText(bomb.join('\n'), 'bomb.yaml');
    assert.equal(r.ok, false);
  });
});
