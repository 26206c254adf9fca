// Which spec edits an attempt has not seen, named as the custom resource's fields.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attemptSpecOf, changedFields, parseAttemptSpec } from '../../operator/children/attempt-spec.ts';
import { makeStj } from './builders.ts';

describe('changedFields', () => {
  const base = attemptSpecOf(makeStj().obj().spec);
  const cases: [string, (s: ReturnType<typeof attemptSpecOf>) => void, string[]][] = [
    ['nothing changed', () => {}, []],
    ['the tile', (s) => (s.streaming = { ...s.streaming, tileSize: 4096 }), ['spec.streaming.tileSize']],
    [
      'memory and a toleration',
      (s) =>
        (s.resources = { ...s.resources, memory: '24Gi', tolerations: [{ key: 'gpu', operator: 'Exists' }] }),
      ['spec.resources.memory', 'spec.resources.tolerations'],
    ],
    ['the image', (s) => (s.image = 'registry/trainer:2'), ['spec.image']],
    ['the pod env', (s) => (s.pod = { env: [{ name: 'A', value: '1' }] }), ['spec.pod']],
    ['backoffLimit', (s) => (s.backoffLimit = 9), ['spec.runPolicy.backoffLimit']],
  ];
  for (const [name, edit, want] of cases) {
    it(name, () => {
      const now = structuredClone(base);
      edit(now);
      assert.deepEqual(changedFields(base, now), want);
    });
  }
  it('key order is not a change, and the annotation round-trips', () => {
    const reordered = Object.fromEntries(Object.entries(base).reverse()) as typeof base;
    assert.deepEqual(changedFields(base, reordered), []);
    assert.deepEqual(parseAttemptSpec(JSON.stringify(base)), base);
    assert.equal(parseAttemptSpec('{'), undefined);
    assert.equal(parseAttemptSpec(undefined), undefined);
  });
});
