// Dataset manifests: which images, with which labels, in which split.
//
// Two formats, chosen by extension (.csv; .jsonl/.ndjson/.json) or, failing that, by the first
// non-blank character ('{' means JSON lines):
//   CSV         a header naming the columns `path` and `label` (and optionally `split`), in any order;
//               other columns (patient, slide id, ...) are ignored. RFC 4180 quoting.
//   JSON lines  one object per line: {"path": "...", "label": 1, "split": "train"}.
//
// Labels are numbers: a class index (0, 1, ... for classification; 0/1 for binary) or a regression
// target. The manifest does not know the loss, so it accepts any finite number and the trainer
// checks class labels with `checkClassLabels`. Paths are relative to the root folder (absolute paths
// are taken as they are). Errors name the file and line.

import { readFile } from 'node:fs/promises';
import { extname, isAbsolute, resolve } from 'node:path';
import { CsvSyntaxError, parseCsv } from './csv.ts';

export const SPLITS = ['train', 'validation', 'test'] as const;
export type Split = (typeof SPLITS)[number];

/** Spellings accepted in the split column, mapped to the split they mean. */
const SPLIT_ALIASES: Readonly<Record<string, Split>> = {
  train: 'train',
  training: 'train',
  validation: 'validation',
  val: 'validation',
  valid: 'validation',
  test: 'test',
};

export interface ManifestEntry {
  /** Absolute path of the image (root joined with the manifest's path). */
  path: string;
  /** The path as written in the manifest. */
  relativePath: string;
  label: number;
  split?: Split;
  /** 1-based line of the manifest where the row starts. */
  line: number;
}

export interface Manifest {
  /** Absolute path of the manifest file (or the name given to `parseManifest`). */
  file: string;
  root: string;
  entries: ManifestEntry[];
}

export type ManifestFormat = 'csv' | 'jsonl';

/** A malformed manifest: names the file and, when it is about one row, the line. */
export class ManifestError extends Error {
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, line: number | undefined, message: string) {
    super(line === undefined ? `${file}: ${message}` : `${file}:${line}: ${message}`);
    this.name = 'ManifestError';
    this.file = file;
    this.line = line;
  }
}

export interface ParseManifestOptions {
  /** Name used in errors (usually the file path). */
  file: string;
  /** Folder that relative image paths are resolved against. */
  root: string;
  /** Format; guessed from the file name, then from the text, when unset. */
  format?: ManifestFormat;
}

/** Guesses the format from the file extension, then from the first non-blank character. */
export function detectManifestFormat(file: string, text: string): ManifestFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  return text
    .replace(/^\uFEFF/, '')
    .trimStart()
    .startsWith('{')
    ? 'jsonl'
    : 'csv';
}

/** Parses manifest text. Throws ManifestError naming the file and line of the first bad row. */
export function parseManifest(text: string, options: ParseManifestOptions): ManifestEntry[] {
  const format = options.format ?? detectManifestFormat(options.file, text);
  const entries = format === 'csv' ? parseCsvManifest(text, options) : parseJsonLines(text, options);
  if (entries.length === 0) {
    throw new ManifestError(options.file, undefined, 'the manifest has no rows; expected at least one image');
  }
  return entries;
}

export interface ReadManifestOptions {
  /** Folder for relative image paths. Default: the manifest's own folder. */
  root?: string;
  format?: ManifestFormat;
  /** Keep only rows of this split (rows without a split are dropped). */
  split?: Split;
}

/** Reads and parses a manifest file. */
export async function readManifest(file: string, options: ReadManifestOptions = {}): Promise<Manifest> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new ManifestError(abs, undefined, `cannot read the manifest (${why})`);
  }
  const root = resolve(options.root ?? resolve(abs, '..'));
  const parseOptions: ParseManifestOptions = { file: abs, root };
  if (options.format) parseOptions.format = options.format;
  let entries = parseManifest(text, parseOptions);
  if (options.split) {
    const split = options.split;
    entries = filterSplit(entries, split);
    if (entries.length === 0) {
      throw new ManifestError(abs, undefined, `no rows have split '${split}'`);
    }
  }
  return { file: abs, root, entries };
}

/** The rows of one split. */
export function filterSplit(entries: readonly ManifestEntry[], split: Split): ManifestEntry[] {
  return entries.filter((e) => e.split === split);
}

/**
 * Checks that every label is a class index in [0, classes) (an integer); throws ManifestError naming
 * the first bad row. For binary cross-entropy pass classes = 2.
 */
export function checkClassLabels(manifest: Manifest, classes: number): void {
  for (const e of manifest.entries) {
    if (!Number.isInteger(e.label) || e.label < 0 || e.label >= classes) {
      throw new ManifestError(
        manifest.file,
        e.line,
        `label ${e.label} of '${e.relativePath}' is not a class index in 0..${classes - 1}`,
      );
    }
  }
}

function parseCsvManifest(text: string, options: ParseManifestOptions): ManifestEntry[] {
  let records: ReturnType<typeof parseCsv>;
  try {
    records = parseCsv(text);
  } catch (e) {
    if (e instanceof CsvSyntaxError) throw new ManifestError(options.file, e.line, e.message);
    throw e;
  }
  const header = records[0];
  if (!header)
    throw new ManifestError(options.file, undefined, 'the manifest is empty; expected a header line');
  const names = header.fields.map((f) => f.trim().toLowerCase());
  const column = (name: string): number => names.indexOf(name);
  const pathCol = column('path');
  const labelCol = column('label');
  const splitCol = column('split');
  if (pathCol < 0 || labelCol < 0) {
    throw new ManifestError(
      options.file,
      header.line,
      `the header must name the columns 'path' and 'label' (and optionally 'split'); found: ${header.fields.join(',')}`,
    );
  }
  return records.slice(1).map((r) => {
    if (r.fields.length !== header.fields.length) {
      throw new ManifestError(
        options.file,
        r.line,
        `expected ${header.fields.length} fields as in the header, found ${r.fields.length}`,
      );
    }
    const split = splitCol >= 0 ? (r.fields[splitCol] as string) : undefined;
    return makeEntry(options, r.line, r.fields[pathCol] as string, r.fields[labelCol] as string, split);
  });
}

function parseJsonLines(text: string, options: ParseManifestOptions): ManifestEntry[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const entries: ManifestEntry[] = [];
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (e) {
      throw new ManifestError(options.file, line, `not valid JSON (${(e as Error).message})`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      throw new ManifestError(options.file, line, 'expected an object like {"path": "a.png", "label": 1}');
    }
    const o = obj as Record<string, unknown>;
    if (typeof o.path !== 'string') {
      throw new ManifestError(options.file, line, `'path' must be a string, found ${describe(o.path)}`);
    }
    if (typeof o.label !== 'number' && typeof o.label !== 'string') {
      throw new ManifestError(options.file, line, `'label' must be a number, found ${describe(o.label)}`);
    }
    if (o.split !== undefined && o.split !== null && typeof o.split !== 'string') {
      throw new ManifestError(options.file, line, `'split' must be a string, found ${describe(o.split)}`);
    }
    entries.push(
      makeEntry(options, line, o.path, String(o.label), typeof o.split === 'string' ? o.split : undefined),
    );
  });
  return entries;
}

function makeEntry(
  options: ParseManifestOptions,
  line: number,
  rawPath: string,
  rawLabel: string,
  rawSplit: string | undefined,
): ManifestEntry {
  const relativePath = rawPath.trim();
  if (relativePath === '') throw new ManifestError(options.file, line, 'the path is empty');
  const labelText = rawLabel.trim();
  const label = labelText === '' ? Number.NaN : Number(labelText);
  if (!Number.isFinite(label)) {
    throw new ManifestError(
      options.file,
      line,
      `label '${rawLabel}' is not a number; labels are class indices (0, 1, ...) or regression values`,
    );
  }
  const entry: ManifestEntry = {
    path: isAbsolute(relativePath) ? relativePath : resolve(options.root, relativePath),
    relativePath,
    label,
    line,
  };
  const splitText = rawSplit?.trim().toLowerCase() ?? '';
  if (splitText !== '') {
    const split = SPLIT_ALIASES[splitText];
    if (!split) {
      throw new ManifestError(
        options.file,
        line,
        `split '${rawSplit}' is not one of ${SPLITS.join(', ')} (or val, valid, training)`,
      );
    }
    entry.split = split;
  }
  return entry;
}

function describe(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}
