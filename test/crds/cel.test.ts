// Each CEL rule and its JavaScript twin must agree. The CEL text is evaluated by an independent CEL
// implementation (@marcbachmann/cel-js) on every fixture, with values typed as the API server types
// them (integers as CEL int, numbers as double), and compared with what validateJob's twin says.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Environment } from '@marcbachmann/cel-js';
import fc from 'fast-check';
import type { JSONSchemaProps, ValidationRule } from '../../crds/schema-builder.ts';
import { applyDefaults, hasBlockingProblems } from '../../crds/structural-validator.ts';
import { specSchema } from '../../crds/v1alpha1/schema.ts';
import {
  edit,
  INVALID_MANIFESTS,
  type Manifest,
  VALID_MANIFESTS,
  validManifest,
} from './invalid-manifests.ts';
import { schemaNodes, valueNodes } from './schema-walk.ts';

const env = new Environment().registerVariable('self', 'dyn').registerVariable('oldSelf', 'dyn');

/** The value as CEL sees it under the structural schema: integer-typed numbers become CEL ints. */
function toCel(node: JSONSchemaProps, v: unknown): unknown {
  if (typeof v === 'number') {
    const isInt = node.type === 'integer' || (node['x-kubernetes-int-or-string'] && Number.isInteger(v));
    return isInt && Number.isInteger(v) ? BigInt(v) : v;
  }
  if (Array.isArray(v)) return v.map((x) => (node.items ? toCel(node.items, x) : x));
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => {
        const child = node.properties?.[k] ?? node.additionalProperties;
        return [k, child ? toCel(child, x) : x];
      }),
    );
  }
  return v;
}

function evaluate(
  rule: ValidationRule,
  node: JSONSchemaProps,
  self: unknown,
  oldSelf: unknown = self,
): boolean {
  const out = env.evaluate(rule.rule, { self: toCel(node, self), oldSelf: toCel(node, oldSelf) });
  assert.equal(typeof out, 'boolean', `${rule.rule} gave ${String(out)}`);
  return out as boolean;
}

function defaultedSpec(m: Manifest): unknown {
  return applyDefaults(specSchema, m.spec);
}

const checked = [...schemaNodes(specSchema, 'spec')].flatMap(({ path, node }) =>
  (node['x-kubernetes-validations'] ?? []).filter((r) => r.check).map((rule) => ({ path, rule })),
);
const transitions = [...schemaNodes(specSchema, 'spec')].flatMap(({ path, node }) =>
  (node['x-kubernetes-validations'] ?? []).filter((r) => !r.check).map((rule) => ({ path, node, rule })),
);

describe('CEL rules agree with their JavaScript twins', () => {
  const outcomes = new Map<ValidationRule, Set<boolean>>();
  const cases = [...VALID_MANIFESTS, ...INVALID_MANIFESTS].filter((c) => typeof c.manifest.spec === 'object');

  it('on every fixture, wherever the API server would run the rule', () => {
    let evaluations = 0;
    for (const c of cases) {
      for (const { path, node, value } of valueNodes(specSchema, defaultedSpec(c.manifest), 'spec')) {
        if (hasBlockingProblems(node, value)) continue;
        for (const rule of node['x-kubernetes-validations'] ?? []) {
          if (!rule.check) continue;
          const js = (rule.check as (s: unknown) => boolean)(value);
          const cel = evaluate(rule, node, value);
          assert.equal(
            cel,
            js,
            `${c.name}: at ${path}, CEL \`${rule.rule}\` says ${cel}, JavaScript says ${js}`,
          );
          outcomes.set(rule, (outcomes.get(rule) ?? new Set()).add(js));
          evaluations++;
        }
      }
    }
    assert.ok(evaluations > 200, `only ${evaluations} evaluations`);
  });

  it('with every rule seen both passing and failing by some fixture', () => {
    for (const { path, rule } of checked) {
      const seen = outcomes.get(rule) ?? new Set();
      assert.ok(seen.has(false), `no fixture breaks the rule at ${path}: ${rule.rule}`);
      assert.ok(seen.has(true), `no fixture satisfies the rule at ${path}: ${rule.rule}`);
    }
  });

  it('on random tile sizes (int-or-string) and minimum tiles', () => {
    const node = specSchema.properties!.streaming!;
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: -10, max: 70000 }), fc.constantFrom('auto', 'Auto', '', '512')),
        fc.integer({ min: 64, max: 65536 }),
        (tileSize, minTileSize) => {
          const value = applyDefaults(node, { tileSize, minTileSize });
          for (const { node: n, value: v } of valueNodes(node, value)) {
            for (const rule of n['x-kubernetes-validations'] ?? []) {
              assert.equal(evaluate(rule, n, v), (rule.check as (s: unknown) => boolean)(v), rule.rule);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('on random quantities, integer or negative', () => {
    const node = specSchema.properties!.resources!.properties!.memory!;
    const [rule] = node['x-kubernetes-validations'] ?? [];
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: -1e9, max: 1e12 }), fc.constantFrom('16Gi', '1.5G', '0')),
        (q) => {
          assert.equal(evaluate(rule!, node, q), (rule!.check as (s: unknown) => boolean)(q));
        },
      ),
    );
  });
});

describe('transition rules', () => {
  it('hold when nothing changed, for every valid fixture', () => {
    for (const c of VALID_MANIFESTS) {
      const spec = defaultedSpec(c.manifest);
      for (const { path, node, value } of valueNodes(specSchema, spec, 'spec')) {
        for (const rule of node['x-kubernetes-validations'] ?? []) {
          if (!rule.rule.includes('oldSelf')) continue;
          assert.equal(
            evaluate(rule, node, value, structuredClone(value)),
            true,
            `${c.name}: ${path}: ${rule.rule}`,
          );
        }
      }
    }
  });

  const changes: [string, Record<string, unknown>, string][] = [
    [
      'the model architecture',
      { 'spec.model.architecture': 'midl2018', 'spec.model.width': undefined },
      'spec.model',
    ],
    ['the head', { 'spec.model.head.classes': 3 }, 'spec.model'],
    ['the training manifest', { 'spec.data.train': 'other.csv' }, 'spec.data'],
    ['the learning rate', { 'spec.training.optimizer.learningRate': 0.1 }, 'spec.training'],
    ['the checkpoint folder', { 'spec.checkpoint.path': '/elsewhere' }, 'spec.checkpoint'],
    ['the queue name', { 'spec.runPolicy.queueName': 'other-queue' }, 'spec.runPolicy.queueName'],
    ['whether there is a queue', { 'spec.runPolicy.queueName': undefined }, 'spec.runPolicy'],
    ['whether there is a checkpoint', { 'spec.checkpoint': undefined }, 'spec'],
    ['whether there is a priority class', { 'spec.runPolicy.priorityClassName': 'high' }, 'spec.runPolicy'],
    ['whether another controller runs it', { 'spec.runPolicy.managedBy': 'example.org/x' }, 'spec.runPolicy'],
    ['whether the pod is customised', { 'spec.pod': { env: [{ name: 'A', value: '1' }] } }, 'spec'],
  ];
  for (const [what, edits, at] of changes) {
    it(`refuse a change of ${what} (rule at ${at})`, () => {
      const before = defaultedSpec(validManifest());
      const after = defaultedSpec(edit(validManifest(), edits));
      const olds = new Map([...valueNodes(specSchema, before, 'spec')].map((v) => [v.path, v.value]));
      const refused = [...valueNodes(specSchema, after, 'spec')].filter(({ path, node, value }) =>
        (node['x-kubernetes-validations'] ?? []).some(
          (r) => r.rule.includes('oldSelf') && olds.has(path) && !evaluate(r, node, value, olds.get(path)),
        ),
      );
      assert.deepEqual(
        refused.map((r) => r.path),
        [at],
      );
    });
  }

  it('leave the mutable parts mutable: tile size, resources, suspend', () => {
    const before = defaultedSpec(validManifest());
    const after = defaultedSpec(
      edit(validManifest(), {
        'spec.streaming.tileSize': 512,
        'spec.resources.memory': '32Gi',
        'spec.runPolicy.suspend': true,
      }),
    );
    const olds = new Map([...valueNodes(specSchema, before, 'spec')].map((v) => [v.path, v.value]));
    for (const { path, node, value } of valueNodes(specSchema, after, 'spec')) {
      for (const r of node['x-kubernetes-validations'] ?? []) {
        if (r.rule.includes('oldSelf') && olds.has(path))
          assert.equal(evaluate(r, node, value, olds.get(path)), true, path);
      }
    }
  });

  it('exist for each immutable part (so the list above is complete)', () => {
    assert.deepEqual(
      transitions.map((t) => t.path),
      [
        'spec',
        'spec',
        'spec.model',
        'spec.data',
        'spec.training',
        'spec.checkpoint',
        'spec.runPolicy',
        'spec.runPolicy',
        'spec.runPolicy',
        'spec.runPolicy.queueName',
        'spec.runPolicy.priorityClassName',
        'spec.runPolicy.managedBy',
        'spec.pod',
      ],
    );
  });
});
