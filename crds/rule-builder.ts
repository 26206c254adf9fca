// Generators for the common CEL rule shapes, producing the CEL text and its JavaScript twin from
// one description, so the two cannot say different things. Only for rules on object nodes.

import type { ValidationRule } from './schema-builder.ts';

type Obj = Record<string, unknown>;

function celList(values: readonly string[]): string {
  return values.length === 1 ? `== '${values[0]}'` : `in [${values.map((v) => `'${v}'`).join(', ')}]`;
}
function prose(values: readonly string[]): string {
  const quoted = values.map((v) => `'${v}'`);
  return quoted.length === 1 ? quoted[0]! : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

/** `field` must be set when `discriminator` is one of `values`. */
export function requiredWhen(
  field: string,
  discriminator: string,
  values: readonly string[],
): ValidationRule<Obj> {
  return {
    rule: `!(self.${discriminator} ${celList(values)}) || has(self.${field})`,
    message: `${field} is required when ${discriminator} is ${prose(values)}`,
    fieldPath: `.${field}`,
    reason: 'FieldValueRequired',
    check: (s) => !values.includes(s[discriminator] as string) || s[field] !== undefined,
  };
}

/** `field` may be set only when `discriminator` is one of `values`. */
export function onlyWhen(
  field: string,
  discriminator: string,
  values: readonly string[],
): ValidationRule<Obj> {
  return {
    rule: `self.${discriminator} ${celList(values)} || !has(self.${field})`,
    message: `${field} may be set only when ${discriminator} is ${prose(values)}`,
    fieldPath: `.${field}`,
    reason: 'FieldValueForbidden',
    check: (s) => values.includes(s[discriminator] as string) || s[field] === undefined,
  };
}

/** Exactly one of `fields` is set (a Kubernetes-style one-of, like a volume source). */
export function exactlyOneOf(fields: readonly string[]): ValidationRule<Obj> {
  return {
    rule: `${fields.map((f) => `(has(self.${f}) ? 1 : 0)`).join(' + ')} == 1`,
    message: `set exactly one of ${fields.join(', ')}`,
    check: (s) => fields.filter((f) => s[f] !== undefined).length === 1,
  };
}

/** The subtree cannot change after creation (a transition rule: the API server checks it on update only). */
export function immutable<T>(what: string, hint: string): ValidationRule<T> {
  return { rule: 'self == oldSelf', message: `${what} is immutable; ${hint}` };
}
