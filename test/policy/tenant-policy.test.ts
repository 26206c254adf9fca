// The tenant policy's two evaluators agree: each rule's CEL (what the API server's
// ValidatingAdmissionPolicy runs, evaluated here by an independent CEL implementation) and its
// TypeScript twin (what the operator re-checks) give the same verdict and the same message on every
// case, and the verdicts are the ones the cases expect. The chart's generated copy is current.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Environment } from '@marcbachmann/cel-js';
import { CHART_POLICY_FILE, renderPolicyYaml } from '../../crds/generate.ts';
import type { StreamingTrainingJobSpec } from '../../crds/index.ts';
import {
  buildValidatingAdmissionPolicy,
  hostPathAllowed,
  POLICY_RULES,
  POLICY_VARIABLES,
  policyFromConfigMap,
  policyViolations,
} from '../../crds/v1alpha1/tenant-policy.ts';
import { POLICY_CASES } from './cases.ts';

const env = new Environment()
  .registerVariable('object', 'dyn')
  .registerVariable('params', 'dyn')
  .registerVariable('variables', 'dyn');

const PARAM_META = { namespace: 'tilestream-system', name: 'ts-tilestream-tenant-policy' };

/** What the ValidatingAdmissionPolicy says: the messages of the validations that fail. */
function celViolations(object: unknown, data: Record<string, string>): string[] {
  const params = { metadata: PARAM_META, ...(Object.keys(data).length > 0 && { data }) };
  const variables: Record<string, unknown> = {};
  for (const v of POLICY_VARIABLES) variables[v.name] = env.evaluate(v.expression, { params });
  const out: string[] = [];
  for (const r of POLICY_RULES) {
    const ok = env.evaluate(r.expression, { object, params, variables });
    assert.equal(typeof ok, 'boolean', r.expression);
    if (!ok) out.push(env.evaluate(r.messageExpression, { object, params, variables }) as string);
  }
  return out;
}

describe('tenant policy', () => {
  for (const c of POLICY_CASES) {
    it(c.name, () => {
      const policy = policyFromConfigMap({ metadata: PARAM_META, data: c.policy });
      const ts = policyViolations(c.job.spec as StreamingTrainingJobSpec, policy);
      const cel = celViolations(c.job, c.policy);
      assert.deepEqual(cel, ts, 'CEL and TypeScript disagree');
      assert.deepEqual(
        ts.map((m) => m.slice(0, m.indexOf(' '))),
        c.refusedAt,
        `refused at: ${ts.join('\n')}`,
      );
      for (const m of ts)
        assert.match(
          m,
          /the tenant policy \(ConfigMap tilestream-system\/ts-tilestream-tenant-policy, \w+\) allows /,
        );
    });
  }

  it('names what the policy allows in the message', () => {
    const c = POLICY_CASES.find((x) => x.name === 'another image')!;
    const [m] = policyViolations(
      c.job.spec as StreamingTrainingJobSpec,
      policyFromConfigMap({ metadata: PARAM_META, data: c.policy }),
    );
    assert.equal(
      m,
      'spec.image: docker.io/library/busybox:1 is not an allowed trainer image; the tenant policy ' +
        '(ConfigMap tilestream-system/ts-tilestream-tenant-policy, allowedImages) allows ' +
        'ghcr.io/tilestream/tilestream-trainer:*, ghcr.io/tilestream/tilestream-trainer@*, ' +
        'ghcr.io/tilestream/tilestream-trainer-cpu:*, ghcr.io/tilestream/tilestream-trainer-cpu@*',
    );
  });

  it('hostPath prefixes: a prefix of "/" allows every clean path, never a "." or ".." segment', () => {
    assert.equal(hostPathAllowed('/anything/here', ['/']), true);
    assert.equal(hostPathAllowed('/a/./b', ['/']), false);
    assert.equal(hostPathAllowed('/a/..', ['/a']), false);
    assert.equal(hostPathAllowed('/data', []), false);
  });

  it('checks creates and spec changes only, fails closed', () => {
    const vap = buildValidatingAdmissionPolicy();
    assert.equal(vap.spec.failurePolicy, 'Fail');
    assert.equal(vap.spec.validations.length, POLICY_RULES.length);
    assert.match(vap.spec.matchConditions[0]!.expression, /object\.spec != oldObject\.spec/);
  });

  it("the chart's files/tenant-policy.yaml is generated from the rules (npm run generate:crd)", () => {
    assert.equal(readFileSync(CHART_POLICY_FILE, 'utf8'), renderPolicyYaml());
  });
});
