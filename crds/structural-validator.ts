// Defaulting and validation of a value against a structural schema, the way the Kubernetes API
// server treats a custom resource: nulls pruned, defaults applied top-down, then types, required
// fields, enums, bounds, patterns, list types and unknown fields (strict field validation), then
// the JavaScript twins of the CEL rules. Pure: no I/O.

import { type JSONSchemaProps, patternHint, type ValidationRule } from './schema-builder.ts';

export interface Problem {
  /** Field path as the API server prints it: `spec.resources.tolerations[0].operator`. */
  path: string;
  message: string;
}

interface Found extends Problem {
  /** Type errors and missing required fields stop the rules above them, as in the API server. */
  blocking: boolean;
}

/** A deep copy of `value` with nulls pruned and schema defaults filled in, top-down. */
export function applyDefaults(schema: JSONSchemaProps, value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = schema.items;
    return items ? value.map((v) => applyDefaults(items, v)) : structuredClone(value);
  }
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  const props = schema.properties;
  for (const [k, v] of Object.entries(value)) {
    // undefined cannot come from JSON or YAML; a JavaScript caller means "absent" by it.
    if (v === undefined) continue;
    if (v === null && (props?.[k] !== undefined || schema.additionalProperties === undefined)) continue;
    const child = props?.[k] ?? schema.additionalProperties;
    out[k] = child ? applyDefaults(child, v) : structuredClone(v);
  }
  if (props) {
    for (const [k, child] of Object.entries(props)) {
      if (out[k] === undefined && child.default !== undefined)
        out[k] = applyDefaults(child, structuredClone(child.default));
    }
  }
  return out;
}

/** Every problem of `value` (already defaulted) against `schema`; `path` prefixes the reported paths. */
export function validateValue(schema: JSONSchemaProps, value: unknown, path: string): Problem[] {
  const found: Found[] = [];
  walk(schema, value, path, found);
  return found.map(({ path, message }) => ({ path, message }));
}

/** Whether `value` has type errors or missing required fields, which keep the API server from running CEL rules. */
export function hasBlockingProblems(schema: JSONSchemaProps, value: unknown): boolean {
  const found: Found[] = [];
  walk(schema, value, '', found);
  return found.some((p) => p.blocking);
}

/** Runs the JavaScript twins of `rules` on `self`, reporting failures at `path` + the rule's fieldPath. */
export function runRules(rules: readonly ValidationRule[], self: unknown, path: string): Problem[] {
  const out: Problem[] = [];
  for (const r of rules) {
    if (r.check === undefined) continue;
    // A rule's check is typed for its own node; the walk only calls it on a value that matched that node.
    const check = r.check as (self: unknown) => boolean;
    if (check(self)) continue;
    const describe = r.describe as ((self: unknown) => string) | undefined;
    out.push({ path: joinFieldPath(path, r.fieldPath), message: describe ? describe(self) : r.message });
  }
  return out;
}

function walk(s: JSONSchemaProps, v: unknown, path: string, found: Found[]): void {
  const before = found.length;
  if (!checkType(s, v, path, found)) return;
  if (s.enum !== undefined && !s.enum.includes(v as string | number)) {
    const allowed = s.enum.map((e) => JSON.stringify(e)).join(', ');
    add(found, path, `Unsupported value: ${JSON.stringify(v)}: supported values: ${allowed}`);
  }
  if (typeof v === 'number') checkNumber(s, v, path, found);
  else if (typeof v === 'string') checkString(s, v, path, found);
  else if (Array.isArray(v)) checkArray(s, v, path, found);
  else if (isPlainObject(v)) checkObject(s, v, path, found);
  const rules = s['x-kubernetes-validations'];
  if (rules && !found.slice(before).some((p) => p.blocking)) {
    for (const p of runRules(rules, v, path)) add(found, p.path, p.message);
  }
}

function checkType(s: JSONSchemaProps, v: unknown, path: string, found: Found[]): boolean {
  const want = s['x-kubernetes-int-or-string'] ? 'int-or-string' : s.type;
  const ok =
    want === undefined ||
    (want === 'int-or-string' && (Number.isInteger(v) || typeof v === 'string')) ||
    (want === 'object' && isPlainObject(v)) ||
    (want === 'array' && Array.isArray(v)) ||
    (want === 'string' && typeof v === 'string') ||
    (want === 'integer' && Number.isInteger(v)) ||
    (want === 'number' && typeof v === 'number' && Number.isFinite(v)) ||
    (want === 'boolean' && typeof v === 'boolean');
  if (!ok) {
    const name = want === 'int-or-string' ? 'an integer or a string' : article(want ?? 'value');
    add(found, path, `Invalid value: ${show(v)}: must be ${name}, not ${describe(v)}`, true);
  }
  return ok;
}

function checkNumber(s: JSONSchemaProps, v: number, path: string, found: Found[]): void {
  if (s.minimum !== undefined && (s.exclusiveMinimum ? v <= s.minimum : v < s.minimum)) {
    add(
      found,
      path,
      `Invalid value: ${v}: must be ${s.exclusiveMinimum ? 'greater than' : '≥'} ${s.minimum}`,
    );
  }
  if (s.maximum !== undefined && (s.exclusiveMaximum ? v >= s.maximum : v > s.maximum)) {
    add(found, path, `Invalid value: ${v}: must be ${s.exclusiveMaximum ? 'less than' : '≤'} ${s.maximum}`);
  }
}

function checkString(s: JSONSchemaProps, v: string, path: string, found: Found[]): void {
  const length = [...v].length; // the API server counts characters, not UTF-16 units
  if (s.minLength !== undefined && length < s.minLength) {
    add(found, path, `Invalid value: ${show(v)}: must have at least ${s.minLength} characters`);
  }
  if (s.maxLength !== undefined && length > s.maxLength) {
    add(found, path, `Too long: may not be more than ${s.maxLength} characters (got ${length})`);
  }
  if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) {
    const hint = s[patternHint];
    const why =
      typeof hint === 'function' ? hint(v) : (hint ?? `must match the regular expression ${s.pattern}`);
    add(found, path, `Invalid value: ${show(v)}: ${why}`);
  }
  if (s.format === 'date-time' && Number.isNaN(Date.parse(v))) {
    add(found, path, `Invalid value: ${show(v)}: must be an RFC 3339 date-time`);
  }
}

function checkArray(s: JSONSchemaProps, v: unknown[], path: string, found: Found[]): void {
  if (s.minItems !== undefined && v.length < s.minItems) {
    add(found, path, `Invalid value: must have at least ${s.minItems} items (got ${v.length})`);
  }
  if (s.maxItems !== undefined && v.length > s.maxItems) {
    add(found, path, `Too many: ${v.length}: must have at most ${s.maxItems} items`);
  }
  const items = s.items;
  if (items) {
    for (const [i, item] of v.entries()) walk(items, item, `${path}[${i}]`, found);
  }
  const listType = s['x-kubernetes-list-type'];
  if (listType === 'set' || listType === 'map') {
    const keys = s['x-kubernetes-list-map-keys'] ?? [];
    const seen = new Map<string, number>();
    v.forEach((item, i) => {
      const key =
        listType === 'set'
          ? canonical(item)
          : canonical(keys.map((k) => (item as Record<string, unknown>)?.[k]));
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else
        add(
          found,
          `${path}[${i}]`,
          `Duplicate value: same ${listType === 'set' ? 'value' : keys.join('/')} as item ${first}`,
        );
    });
  }
}

function checkObject(s: JSONSchemaProps, v: Record<string, unknown>, path: string, found: Found[]): void {
  const props = s.properties;
  const extra = s.additionalProperties;
  for (const k of s.required ?? []) {
    if (v[k] === undefined) add(found, join(path, k), 'Required value: this field must be set', true);
  }
  if (s.maxProperties !== undefined && Object.keys(v).length > s.maxProperties) {
    add(found, path, `Too many: ${Object.keys(v).length}: must have at most ${s.maxProperties} entries`);
  }
  for (const [k, child] of Object.entries(v)) {
    const childSchema = props?.[k] ?? extra;
    if (childSchema) walk(childSchema, child, join(path, k), found);
    else if (props) add(found, join(path, k), unknownField(k, Object.keys(props)));
    // An object with neither properties nor additionalProperties (metadata) is opaque here.
  }
}

function unknownField(k: string, known: string[]): string {
  const near = known.find((c) => editDistance(c.toLowerCase(), k.toLowerCase()) <= 2);
  return `unknown field ${JSON.stringify(k)}${near ? `; did you mean ${JSON.stringify(near)}?` : ''} (known fields: ${known.join(', ')})`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        (prev[j] ?? 0) + 1,
        (cur[j - 1] ?? 0) + 1,
        (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function add(found: Found[], path: string, message: string, blocking = false): void {
  found.push({ path, message, blocking });
}

function join(path: string, key: string): string {
  const k = /^[A-Za-z_$][\w$-]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
  return path === '' ? k : k.startsWith('[') ? path + k : `${path}.${k}`;
}

function joinFieldPath(path: string, fieldPath: string | undefined): string {
  if (!fieldPath) return path;
  return path === '' ? fieldPath.replace(/^\./, '') : path + fieldPath;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    isPlainObject(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a fractional number';
  if (typeof v === 'object') return 'an object';
  return article(typeof v);
}

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
