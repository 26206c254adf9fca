// Walks a schema (and optionally a value beside it) node by node, for the CRD tests.

import type { JSONSchemaProps } from '../../crds/schema-builder.ts';

export interface Visit {
  path: string;
  node: JSONSchemaProps;
}

/** Every node of `schema` with its path: properties by name, `[]` for list items, `{}` for map values. */
export function* schemaNodes(schema: JSONSchemaProps, path = ''): Generator<Visit> {
  yield { path, node: schema };
  for (const [k, child] of Object.entries(schema.properties ?? {}))
    yield* schemaNodes(child, path ? `${path}.${k}` : k);
  if (schema.items) yield* schemaNodes(schema.items, `${path}[]`);
  if (schema.additionalProperties) yield* schemaNodes(schema.additionalProperties, `${path}{}`);
}

export interface ValueVisit extends Visit {
  value: unknown;
}

/** Every (node, value) pair where `value` has a part at that node. */
export function* valueNodes(schema: JSONSchemaProps, value: unknown, path = ''): Generator<ValueVisit> {
  if (value === undefined || value === null) return;
  yield { path, node: schema, value };
  if (Array.isArray(value)) {
    if (schema.items)
      for (const [i, item] of value.entries()) yield* valueNodes(schema.items, item, `${path}[${i}]`);
    return;
  }
  if (typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    const child = schema.properties?.[k] ?? schema.additionalProperties;
    if (child) yield* valueNodes(child, v, path ? `${path}.${k}` : k);
  }
}

/** The node a relative JSONPath such as `.model.head.classes` names under `node`, if any. */
export function resolveFieldPath(node: JSONSchemaProps, fieldPath: string): JSONSchemaProps | undefined {
  let cur: JSONSchemaProps | undefined = node;
  // A filter on a list (`conditions[?(@.type=='Running')]`) selects items: descend into `items`.
  const parts = fieldPath
    .replace(/\[\?\(.*?\)\]/g, '[]')
    .replace(/^\./, '')
    .split('.');
  for (const part of parts) {
    const list = part.endsWith('[]');
    cur = cur?.properties?.[list ? part.slice(0, -2) : part];
    if (list) cur = cur?.items;
  }
  return cur;
}
