import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCsv } from '../../trainer/data/csv.ts';
import {
  checkClassLabels,
  detectManifestFormat,
  ManifestError,
  parseManifest,
  readManifest,
} from '../../trainer/data/manifest.ts';

const root = '/data/root';
const parse = (text: string, file = 'm.csv') => parseManifest(text, { file, root });

/** Asserts a ManifestError naming the file and line, with a message matching `pattern`. */
function assertManifestError(
  fn: () => unknown,
  line: number | undefined,
  pattern: RegExp,
  file = 'm.csv',
): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ManifestError, `expected ManifestError, got ${String(e)}`);
    assert.equal(e.file, file);
    assert.equal(e.line, line);
    assert.match(e.message, pattern);
    assert.ok(e.message.startsWith(line === undefined ? `${file}: ` : `${file}:${line}: `), e.message);
    return true;
  });
}

describe('CSV records', () => {
  it('splits quoted fields with commas, doubled quotes and newlines, and keeps start lines', () => {
    const text = '\uFEFFa,b\r\n"x, y","say ""hi"""\r\n\r\n"multi\nline",2\nlast,"" \n';
    assert.throws(() => parseCsv(text), /after a closing quote/); // '"" ' has text after the quote
    const ok = '\uFEFFa,b\r\n"x, y","say ""hi"""\r\n\r\n"multi\nline",2\nlast,""\n';
    assert.deepEqual(parseCsv(ok), [
      { fields: ['a', 'b'], line: 1 },
      { fields: ['x, y', 'say "hi"'], line: 2 },
      { fields: ['multi\nline', '2'], line: 4 },
      { fields: ['last', ''], line: 6 },
    ]);
  });

  it('refuses an unterminated quote, naming the line it opened on', () => {
    assert.throws(() => parseCsv('a,b\n1,"open\n2,3\n'), /opened on line 2 is never closed/);
  });
});

describe('manifests', () => {
  it('reads CSV with columns in any order, extra columns, split aliases and absolute paths', () => {
    const entries = parse(
      'patient,label,path,split\n' +
        'p1,1,slides/a.tiff,train\n' +
        'p2,0,"slides/with, comma.png",VAL\n' +
        'p3,2.5,/abs/c.jpg,\n' +
        'p4,-1,d.png,Test\n',
    );
    assert.deepEqual(entries, [
      { path: '/data/root/slides/a.tiff', relativePath: 'slides/a.tiff', label: 1, split: 'train', line: 2 },
      {
        path: '/data/root/slides/with, comma.png',
        relativePath: 'slides/with, comma.png',
        label: 0,
        split: 'validation',
        line: 3,
      },
      { path: '/abs/c.jpg', relativePath: '/abs/c.jpg', label: 2.5, line: 4 },
      { path: '/data/root/d.png', relativePath: 'd.png', label: -1, split: 'test', line: 5 },
    ]);
  });

  it('reads JSON lines, skipping blank lines, with numeric-string labels', () => {
    const entries = parse(
      '{"path": "a.png", "label": 1, "split": "validation"}\n\n{"path": "b.png", "label": "0", "split": null}\r\n',
      'm.jsonl',
    );
    assert.deepEqual(entries, [
      { path: '/data/root/a.png', relativePath: 'a.png', label: 1, split: 'validation', line: 1 },
      { path: '/data/root/b.png', relativePath: 'b.png', label: 0, line: 3 },
    ]);
  });

  it('detects the format from the extension, then the content', () => {
    assert.equal(detectManifestFormat('x.csv', '{'), 'csv');
    assert.equal(detectManifestFormat('x.ndjson', 'path,label'), 'jsonl');
    assert.equal(detectManifestFormat('x.txt', '\n  {"path":1}'), 'jsonl');
    assert.equal(detectManifestFormat('x', 'path,label'), 'csv');
  });

  it('names the file and line of malformed rows', () => {
    assertManifestError(() => parse('path,label\na.png,1\nb.png,cat\n'), 3, /label 'cat' is not a number/);
    assertManifestError(() => parse('path,label\na.png,\n'), 2, /label '' is not a number/);
    assertManifestError(() => parse('path,label\na.png,1,extra\n'), 2, /expected 2 fields.*found 3/);
    assertManifestError(
      () => parse('path,label,split\na.png,1,holdout\n'),
      2,
      /split 'holdout' is not one of/,
    );
    assertManifestError(() => parse('path,label\n"",1\n'), 2, /the path is empty/);
    assertManifestError(() => parse('file,class\na.png,1\n'), 1, /must name the columns 'path' and 'label'/);
    assertManifestError(() => parse('path,label\n"a.png,1\n'), 2, /never closed/);
    assertManifestError(() => parse('path,label\n'), undefined, /no rows/);
    assertManifestError(() => parse(''), undefined, /empty/);
    const j = (t: string) => parse(t, 'm.jsonl');
    assertManifestError(() => j('{"path":"a","label":1}\n{"path":"b",'), 2, /not valid JSON/, 'm.jsonl');
    assertManifestError(() => j('["a", 1]'), 1, /expected an object/, 'm.jsonl');
    assertManifestError(() => j('{"path":"a"}'), 1, /'label' must be a number, found nothing/, 'm.jsonl');
    assertManifestError(() => j('{"path":3,"label":1}'), 1, /'path' must be a string, found 3/, 'm.jsonl');
    assertManifestError(
      () => j('{"path":"a","label":true}'),
      1,
      /'label' must be a number, found true/,
      'm.jsonl',
    );
    assertManifestError(
      () => j('{"path":"a","label":1,"split":5}'),
      1,
      /'split' must be a string/,
      'm.jsonl',
    );
  });

  it('checks class labels against the number of classes', () => {
    const manifest = { file: 'm.csv', root, entries: parse('path,label\na,0\nb,1\nc,1.5\n') };
    assertManifestError(
      () => checkClassLabels(manifest, 2),
      4,
      /label 1.5 of 'c' is not a class index in 0..1/,
    );
    const ok = { file: 'm.csv', root, entries: parse('path,label\na,0\nb,2\n') };
    checkClassLabels(ok, 3);
    assertManifestError(() => checkClassLabels(ok, 2), 3, /label 2/);
  });
});

describe('manifest files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-manifest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves paths against the manifest folder by default, or a given root, and filters a split', async () => {
    const file = join(dir, 'all.csv');
    await writeFile(file, 'path,label,split\na.png,0,train\nb.png,1,validation\nc.png,1,val\nd.png,0,\n');
    const all = await readManifest(file);
    assert.equal(all.file, file);
    assert.equal(all.root, dir);
    assert.deepEqual(
      all.entries.map((e) => e.path),
      ['a.png', 'b.png', 'c.png', 'd.png'].map((p) => join(dir, p)),
    );
    const val = await readManifest(file, { root: '/elsewhere', split: 'validation' });
    assert.deepEqual(
      val.entries.map((e) => [e.path, e.line]),
      [
        ['/elsewhere/b.png', 3],
        ['/elsewhere/c.png', 4],
      ],
    );
    await assert.rejects(readManifest(file, { split: 'test' }), /all\.csv: no rows have split 'test'/);
  });

  it('says which manifest is missing', async () => {
    await assert.rejects(readManifest(join(dir, 'nope.csv')), (e: unknown) => {
      assert.ok(e instanceof ManifestError);
      assert.match(e.message, /nope\.csv: cannot read the manifest \(no such file\)/);
      return true;
    });
  });
});
