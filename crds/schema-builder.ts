// Builders for a structural OpenAPI v3 schema (the apiextensions.k8s.io/v1 subset) that also carry
// the TypeScript type of the value they describe, so one object is both the CRD schema and the
// source of the API types. Pure data; imports nothing from the trainer or the operator.

/**
 * Key of a node's plain-language reading of its `pattern`, used in local error messages. A symbol,
 * so JSON (and therefore the CRD YAML) never carries it.
 */
export const patternHint: unique symbol = Symbol('patternHint');
export type PatternHint = string | ((value: string) => string);

/** The part of apiextensions.k8s.io/v1 JSONSchemaProps this project emits. */
export interface JSONSchemaProps {
  [patternHint]?: PatternHint;
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  format?: string;
  enum?: readonly (string | number)[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  items?: JSONSchemaProps;
  minProperties?: number;
  maxProperties?: number;
  properties?: Readonly<Record<string, JSONSchemaProps>>;
  required?: readonly string[];
  additionalProperties?: JSONSchemaProps;
  anyOf?: readonly JSONSchemaProps[];
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: readonly string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: readonly ValidationRule[];
}

/** Kubernetes reasons a CEL rule may report (apiextensions.k8s.io/v1 ValidationRule.reason). */
export type RuleReason =
  | 'FieldValueInvalid'
  | 'FieldValueRequired'
  | 'FieldValueForbidden'
  | 'FieldValueDuplicate';

/**
 * One `x-kubernetes-validations` entry plus its JavaScript twin. `rule` goes to the CRD and is
 * evaluated by the API server; `check` is what the local validator runs. Both live in one entry so
 * they cannot drift apart unnoticed (test/crds checks them against each other with a CEL evaluator).
 * Transition rules (those that read `oldSelf`) have no `check`: a single manifest has no old self.
 */
export interface ValidationRule<Self = never> {
  rule: string;
  /** The message; with messageExpression, what a client without CEL shows (kubectl explain, old servers). */
  message: string;
  /** CEL for a message with the values in it; `describe` is its JavaScript twin. */
  messageExpression?: string;
  /** Relative JSONPath of the field to blame, e.g. `.minTileSize`; the API server reports it. */
  fieldPath?: string;
  reason?: RuleReason;
  /** Runs on the defaulted value, only when that value has no type or required-field problems. */
  check?: (self: Self) => boolean;
  /** The message validateJob shows when `check` fails (the twin of messageExpression). */
  describe?: (self: Self) => string;
}

// Phantom type information: never present at run time.
declare const meta: unique symbol;
interface Meta<In, Out, HasDefault extends boolean> {
  in: In;
  out: Out;
  hasDefault: HasDefault;
}
/** A schema node that knows the TypeScript type of its value as written (In) and after defaulting (Out). */
export type Node<In = unknown, Out = In, HasDefault extends boolean = boolean> = JSONSchemaProps & {
  readonly [meta]?: Meta<In, Out, HasDefault>;
};

type MetaOf<N> = N extends { readonly [meta]?: infer M } ? NonNullable<M> : never;
/** The type of a value as a user writes it. */
export type InputOf<N> = MetaOf<N> extends Meta<infer I, unknown, boolean> ? I : never;
/** The type of a value after the API server (or validateJob) applied the schema defaults. */
export type OutputOf<N> = MetaOf<N> extends Meta<unknown, infer O, boolean> ? O : never;
type HasDefault<N> = MetaOf<N> extends Meta<unknown, unknown, infer D> ? D : false;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type Props = Record<string, Node>;
type DefaultedKeys<P extends Props> = { [K in keyof P]: HasDefault<P[K]> extends true ? K : never }[keyof P];

export type ObjectIn<P extends Props, R extends keyof P> = Simplify<
  { [K in R]: InputOf<P[K]> } & { [K in Exclude<keyof P, R>]?: InputOf<P[K]> }
>;
export type ObjectOut<P extends Props, R extends keyof P> = Simplify<
  { [K in R | DefaultedKeys<P>]: OutputOf<P[K]> } & {
    [K in Exclude<keyof P, R | DefaultedKeys<P>>]?: OutputOf<P[K]>;
  }
>;

interface Common<T> {
  description: string;
  default?: T;
}

function node<In, Out, D extends boolean>(props: JSONSchemaProps): Node<In, Out, D> {
  // Drop undefined options so the emitted YAML holds only what was set.
  const clean: JSONSchemaProps & Record<string, unknown> = {};
  for (const [k, v] of Object.entries(props)) if (v !== undefined) clean[k] = v;
  if (props[patternHint] !== undefined) clean[patternHint] = props[patternHint];
  return clean as Node<In, Out, D>;
}

type D<O> = O extends { default: unknown } ? true : false;
type Rules<T> = readonly ValidationRule<T>[];

export interface StringOptions extends Common<string> {
  pattern?: string;
  /** What `pattern` means, in words, for error messages: "must be ...". */
  patternHint?: PatternHint;
  minLength?: number;
  maxLength: number;
  format?: string;
  rules?: Rules<string>;
}
/** A free string. `maxLength` is required: it bounds the cost of CEL rules that read the string. */
export function string<const O extends StringOptions>(o: O): Node<string, string, D<O>> {
  return node({ ...base(o), type: 'string', format: o.format, ...text(o) });
}

export interface EnumOptions<E extends string> extends Common<E> {
  rules?: Rules<E>;
}
/** A string that is one of `values`; its TypeScript type is the union of them. */
export function enumeration<const E extends string, const O extends EnumOptions<E>>(
  values: readonly E[],
  o: O,
): Node<E, E, D<O>> {
  return node({ ...base(o), type: 'string', enum: values });
}

export interface NumberOptions extends Common<number> {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  enum?: readonly number[];
  format?: 'int32' | 'int64' | 'double';
  rules?: Rules<number>;
}
/** An integer. Kubernetes API conventions: keep int64 fields below 2^53 so JavaScript reads them exactly. */
export function integer<const O extends NumberOptions>(o: O): Node<number, number, D<O>> {
  return node({ ...base(o), type: 'integer', format: o.format ?? 'int32', enum: o.enum, ...bounds(o) });
}
export function number<const O extends NumberOptions>(o: O): Node<number, number, D<O>> {
  return node({ ...base(o), type: 'number', format: o.format ?? 'double', ...bounds(o) });
}
export function boolean<const O extends Common<boolean>>(o: O): Node<boolean, boolean, D<O>> {
  return node({ ...base(o), type: 'boolean' });
}

export interface IntOrStringOptions extends Common<number | string> {
  pattern?: string;
  patternHint?: PatternHint;
  maxLength?: number;
  rules?: Rules<number | string>;
}
/** `x-kubernetes-int-or-string`: the only union a structural schema allows. */
export function intOrString<const O extends IntOrStringOptions>(
  o: O,
): Node<number | string, number | string, D<O>> {
  return node({
    ...base(o),
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    ...text(o),
  });
}

export interface ArrayOptions<T> extends Common<readonly T[]> {
  minItems?: number;
  maxItems: number;
  listType: 'atomic' | 'set' | 'map';
  listMapKeys?: readonly string[];
  rules?: Rules<T[]>;
}
/** `maxItems` is required: the API server needs it to bound the cost of CEL rules over the list. */
export function array<N extends Node, const O extends ArrayOptions<OutputOf<N>>>(
  items: N,
  o: O,
): Node<InputOf<N>[], OutputOf<N>[], D<O>> {
  return node({
    ...base(o),
    type: 'array',
    items,
    minItems: o.minItems,
    maxItems: o.maxItems,
    'x-kubernetes-list-type': o.listType,
    'x-kubernetes-list-map-keys': o.listMapKeys,
  });
}

export interface MapOptions<T> extends Common<Record<string, T>> {
  maxProperties: number;
  rules?: Rules<Record<string, T>>;
}
/** An object with free keys (`additionalProperties`), e.g. a node selector. */
export function map<N extends Node, const O extends MapOptions<OutputOf<N>>>(
  values: N,
  o: O,
): Node<Record<string, InputOf<N>>, Record<string, OutputOf<N>>, D<O>> {
  return node({ ...base(o), type: 'object', additionalProperties: values, maxProperties: o.maxProperties });
}

export interface ObjectOptions<P extends Props, R extends keyof P & string> {
  description: string;
  properties: P;
  required?: readonly R[];
  // NoInfer: the rules' parameter type must not decide which fields are required.
  rules?: Rules<ObjectOut<NoInfer<P>, NoInfer<R>>>;
}
/** An object with a fixed set of fields; the API server and validateJob refuse any other field. */
export function object<const P extends Props, const R extends keyof P & string = never>(
  o: ObjectOptions<P, R>,
): Node<ObjectIn<P, R>, ObjectOut<P, R>, false> {
  return node({
    description: o.description,
    type: 'object',
    properties: o.properties,
    required: o.required?.length ? [...o.required].sort() : undefined,
    'x-kubernetes-validations': o.rules?.length ? o.rules : undefined,
  });
}

/**
 * Marks an object node as defaulted, so its field is non-optional after defaulting. The default is
 * the object with its fields' defaults filled in (`{}` becomes `{tileSize: 'auto', ...}`): the API
 * server checks a default against the CEL rules without applying nested defaults first, so a bare
 * `{}` would fail every rule that reads a defaulted field.
 */
export function defaulted<In, Out>(n: Node<In, Out>): Node<In, Out, true> {
  const value: Record<string, unknown> = {};
  // Children were built first, so a child object's own default is already complete.
  for (const [k, child] of Object.entries(n.properties ?? {})) {
    if (child.default !== undefined) value[k] = structuredClone(child.default);
  }
  return { ...n, default: value } as Node<In, Out, true>;
}

/**
 * Narrows the TypeScript type of a node without changing the schema, e.g. an int-or-string that
 * may only be 'auto': `narrow<'auto' | number>()(intOrString(...))`. Curried so the node's other
 * type parameters are still inferred.
 */
export function narrow<T>() {
  return <D extends boolean>(n: Node<unknown, unknown, D>): Node<T, T, D> => n as Node<T, T, D>;
}

function base(o: { description: string; default?: unknown; rules?: readonly ValidationRule<never>[] }) {
  return {
    description: o.description,
    default: o.default,
    'x-kubernetes-validations': o.rules?.length ? o.rules : undefined,
  } satisfies JSONSchemaProps;
}
function bounds(o: NumberOptions) {
  return {
    minimum: o.minimum,
    maximum: o.maximum,
    exclusiveMinimum: o.exclusiveMinimum,
    exclusiveMaximum: o.exclusiveMaximum,
  } satisfies JSONSchemaProps;
}
function text(o: { pattern?: string; patternHint?: PatternHint; minLength?: number; maxLength?: number }) {
  return {
    pattern: o.pattern,
    minLength: o.minLength,
    maxLength: o.maxLength,
    [patternHint]: o.patternHint,
  } satisfies JSONSchemaProps;
}
