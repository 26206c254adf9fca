import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { ContainerRecord } from './pod-runtime.ts';
import {
  expandVars,
  fallbackMessageFromLog,
  podConditions,
  podFieldValue,
  podPhase,
  quantityValue,
  resourceFieldValue,
  truncateMessage,
} from './pod-runtime.ts';

const vars = new Map([
  ['A', 'x'],
  ['PATH_ROOT', '/tmp/r'],
]);

describe('expandVars (kubelet $(VAR) rules)', () => {
  it('replaces defined names, keeps undefined ones, unescapes $$', () => {
    assert.equal(expandVars('$(A)-$(B)', vars), 'x-$(B)');
    assert.equal(expandVars('$$(A)', vars), '$(A)');
    assert.equal(expandVars('cost $5 $(PATH_ROOT)/f', vars), 'cost $5 /tmp/r/f');
    assert.equal(expandVars('$(unterminated', vars), '$(unterminated');
  });
  it('leaves strings without $ unchanged', () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => !s.includes('$')),
        (s) => expandVars(s, vars) === s,
      ),
    );
  });
});

const rec = (state: ContainerRecord['state'], restartCount = 0): ContainerRecord => ({
  name: 'c',
  image: 'i',
  state,
  restartCount,
});
const t = '2026-01-01T00:00:00Z';
const term = (exitCode: number) =>
  rec({
    kind: 'terminated',
    exitCode,
    reason: exitCode ? 'Error' : 'Completed',
    startedAt: t,
    finishedAt: t,
  });
const never = () => false;

describe('podPhase', () => {
  it('follows kubelet: Pending, Running, Succeeded only if all exit 0, else Failed', () => {
    assert.equal(
      podPhase(false, false, [rec({ kind: 'waiting', reason: 'PodInitializing' })], never),
      'Pending',
    );
    assert.equal(podPhase(true, false, [rec({ kind: 'running', startedAt: t }), term(0)], never), 'Running');
    assert.equal(podPhase(true, false, [term(0), term(0)], never), 'Succeeded');
    assert.equal(podPhase(true, false, [term(0), term(3)], never), 'Failed');
    assert.equal(
      podPhase(true, true, [rec({ kind: 'waiting', reason: 'PodInitializing' })], never),
      'Failed',
    );
  });
  it('stays Running when a failed container is going to be restarted', () => {
    assert.equal(
      podPhase(true, false, [term(1)], () => true),
      'Running',
    );
  });
});

describe('podConditions', () => {
  it('keeps the transition time while a status does not change', () => {
    const mem = { last: new Map<string, [string, string]>() };
    const a = podConditions(mem, 't1', { Ready: { status: false } });
    const b = podConditions(mem, 't2', { Ready: { status: false } });
    const c = podConditions(mem, 't3', { Ready: { status: true } });
    assert.equal(a[0]?.lastTransitionTime, 't1');
    assert.equal(b[0]?.lastTransitionTime, 't1');
    assert.equal(c[0]?.lastTransitionTime, 't3');
    assert.equal(c[0]?.status, 'True');
  });
});

describe('downward API and resources', () => {
  const pod = {
    metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { app: 'a' } },
    spec: { nodeName: 'n', containers: [] },
  };
  it('reads the supported fields and refuses unknown ones', () => {
    assert.equal(podFieldValue(pod, 'metadata.namespace', '1.2.3.4', 'h'), 'ns');
    assert.equal(podFieldValue(pod, "metadata.labels['app']", '1.2.3.4', 'h'), 'a');
    assert.equal(podFieldValue(pod, 'status.podIP', '1.2.3.4', 'h'), '1.2.3.4');
    assert.throws(() => podFieldValue(pod, 'spec.nope', '', ''), /not supported/);
  });
  it('parses quantities and divides by the divisor, rounding up', () => {
    assert.equal(quantityValue('1Gi'), 2 ** 30);
    assert.equal(quantityValue('500m'), 0.5);
    assert.throws(() => quantityValue('1Xi'), /unknown quantity suffix/);
    const c = { name: 'c', resources: { limits: { memory: '1536Mi', 'nvidia.com/gpu': '1' } } };
    assert.equal(resourceFieldValue(c, 'limits.memory', '1Gi'), '2');
    assert.equal(resourceFieldValue(c, 'requests.nvidia.com/gpu'), '1');
    assert.equal(resourceFieldValue(c, 'limits.cpu'), '0');
  });
});

describe('termination messages', () => {
  it('falls back to the last 80 lines, at most 2048 bytes', () => {
    const log = Array.from({ length: 100 }, (_, i) => `line ${i}`).join('\n');
    const msg = fallbackMessageFromLog(`${log}\n`);
    assert.equal(msg.split('\n').length, 80);
    assert.ok(msg.endsWith('line 99'));
    assert.ok(Buffer.byteLength(fallbackMessageFromLog('x'.repeat(5000))) <= 2048);
  });
  it('caps a message at 4096 bytes', () => {
    assert.equal(Buffer.byteLength(truncateMessage('y'.repeat(10_000))), 4096);
    assert.equal(truncateMessage('short'), 'short');
  });
});
