// Local validation of a StreamingTrainingJob manifest: what the API server would do on create
// (defaults, structural schema with strict field validation, CEL rules), so `tilestream train
// job.yaml` refuses exactly what `kubectl apply` would, and lists every problem by field path.

import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { applyDefaults, isPlainObject, type Problem, validateValue } from './structural-validator.ts';
import { API_VERSION, KIND } from './v1alpha1/names.ts';
import { metadataNameSchema, specSchema } from './v1alpha1/schema.ts';
import type { ObjectMeta, StreamingTrainingJob } from './v1alpha1/types.ts';

export type { Problem } from './structural-validator.ts';

export type ValidationResult = { ok: true; job: StreamingTrainingJob } | { ok: false; problems: Problem[] };

const TOP_LEVEL = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Checks a parsed manifest and returns it with the schema defaults applied, or every problem found.
 * `status` is dropped, as the API server drops it on create (it has the status subresource).
 * Transition rules (immutability) are not checked: a single manifest has no previous version.
 */
export function validateJob(obj: unknown): ValidationResult {
  if (!isPlainObject(obj)) {
    const got = Array.isArray(obj) ? 'a list' : obj === null || obj === undefined ? 'nothing' : typeof obj;
    return {
      ok: false,
      problems: [{ path: '', message: `expected a ${KIND} object (a YAML/JSON mapping), got ${got}` }],
    };
  }
  const problems: Problem[] = [];
  for (const [field, want] of [
    ['apiVersion', API_VERSION],
    ['kind', KIND],
  ] as const) {
    const got = obj[field];
    if (got === undefined || got === null)
      problems.push({ path: field, message: `Required value: must be ${want}` });
    else if (got !== want) {
      problems.push({
        path: field,
        message: `Unsupported value: ${JSON.stringify(got)}: supported values: "${want}"`,
      });
    }
  }
  for (const field of Object.keys(obj)) {
    if (!TOP_LEVEL.includes(field)) {
      problems.push({
        path: field,
        message: `unknown field ${JSON.stringify(field)} (known fields: ${TOP_LEVEL.join(', ')})`,
      });
    }
  }
  problems.push(...checkMetadata(obj.metadata));
  let spec: unknown;
  if (obj.spec === undefined || obj.spec === null) {
    problems.push({ path: 'spec', message: 'Required value: this field must be set' });
  } else {
    spec = applyDefaults(specSchema, obj.spec);
    problems.push(...validateValue(specSchema, spec, 'spec'));
  }
  if (problems.length > 0) return { ok: false, problems };
  const job = { apiVersion: API_VERSION, kind: KIND, metadata: structuredClone(obj.metadata), spec };
  // The schema's rules enforce the unions that StreamingTrainingJob spells out, so this is the checked shape.
  return { ok: true, job: job as StreamingTrainingJob };
}

function checkMetadata(meta: unknown): Problem[] {
  if (meta === undefined || meta === null)
    return [{ path: 'metadata', message: 'Required value: metadata.name must be set' }];
  if (!isPlainObject(meta)) return [{ path: 'metadata', message: 'Invalid value: must be an object' }];
  const problems: Problem[] = [];
  const m = meta as Partial<ObjectMeta> & { generateName?: unknown };
  if (m.name === undefined && m.generateName === undefined) {
    problems.push({ path: 'metadata.name', message: 'Required value: name or generateName is required' });
  }
  if (m.name !== undefined) problems.push(...validateValue(metadataNameSchema, m.name, 'metadata.name'));
  if (m.namespace !== undefined && !(typeof m.namespace === 'string' && DNS1123_LABEL.test(m.namespace))) {
    problems.push({
      path: 'metadata.namespace',
      message: `Invalid value: ${JSON.stringify(m.namespace)}: must be a DNS-1123 label (lower-case letters, digits, '-')`,
    });
  }
  for (const field of ['labels', 'annotations'] as const) {
    const v = m[field];
    if (v === undefined) continue;
    if (!isPlainObject(v))
      problems.push({ path: `metadata.${field}`, message: 'Invalid value: must be a map of strings' });
    else {
      for (const [k, x] of Object.entries(v)) {
        if (typeof x !== 'string') {
          problems.push({
            path: `metadata.${field}[${k}]`,
            message: `Invalid value: must be a string, not ${typeof x}`,
          });
        }
      }
    }
  }
  return problems;
}

/** Parses the text of a job file: exactly one YAML (or JSON) document. */
export function parseJobText(
  text: string,
  source: string,
): { ok: true; value: unknown } | { ok: false; problems: Problem[] } {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  // parseAllDocuments returns an EmptyStream (not an array) for a file with no documents.
  const list = Array.isArray(docs) ? docs.filter((d) => d.contents !== null || d.errors.length > 0) : [];
  if (list.length === 0) return fail(source, 'the file is empty; expected one StreamingTrainingJob manifest');
  const errors = list.flatMap((d) => d.errors);
  if (errors.length > 0) {
    return {
      ok: false,
      problems: errors.map((e) => ({ path: '', message: `${source}: malformed YAML/JSON: ${e.message}` })),
    };
  }
  let doc = list[0]!;
  if (list.length > 1) {
    // A file may carry the job's companions (claims, queues) as further documents, as kubectl
    // applies them; exactly one of them must be the job.
    const jobs = list.filter((d) => d.get('kind') === 'StreamingTrainingJob');
    if (jobs.length !== 1) {
      return fail(
        source,
        `the file holds ${list.length} documents of which ${jobs.length} are StreamingTrainingJobs; expected exactly one`,
      );
    }
    doc = jobs[0]!;
  }
  try {
    // maxAliasCount bounds alias expansion ("billion laughs").
    return { ok: true, value: doc.toJS({ maxAliasCount: 100 }) };
  } catch (e) {
    return fail(source, `malformed YAML: ${(e as Error).message}`);
  }
}

/** Reads, parses and validates a job file (YAML or JSON). Unreadable and malformed files become problems too. */
export async function loadJobFile(file: string): Promise<ValidationResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'ENOENT'
        ? 'no such file'
        : err.code === 'EISDIR'
          ? 'it is a directory, not a file'
          : err.code === 'EACCES'
            ? 'permission denied'
            : err.message;
    return fail(file, `cannot read the job file: ${why}`);
  }
  const parsed = parseJobText(text, file);
  return parsed.ok ? validateJob(parsed.value) : parsed;
}

/** One line per problem, `path: message`, for logs and the CLI. */
export function formatProblems(problems: readonly Problem[], source?: string): string {
  const prefix = source ? `${source}: ` : '';
  return problems.map((p) => `${prefix}${p.path === '' ? '' : `${p.path}: `}${p.message}`).join('\n');
}

function fail(source: string, message: string): { ok: false; problems: Problem[] } {
  return { ok: false, problems: [{ path: '', message: `${source}: ${message}` }] };
}
