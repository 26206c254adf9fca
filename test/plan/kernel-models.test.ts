// Every kernel the project registers (trainer/backend/kernels/registry.ts, on every backend) has
// a planner model (trainer/plan/sim-backends.ts), and a composed kernel is modelled by running the
// very source the engine runs (trainer/kernels/composed.ts), so the planner cannot miss a path.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROJECT_KERNELS } from '../../trainer/backend/kernels/registry.ts';
import { COMPOSED_KERNELS } from '../../trainer/kernels/composed.ts';
import { BACKEND_NAMES, BACKENDS, PROJECT_KERNEL_MODELS } from '../../trainer/plan/sim-backends.ts';

describe('planner models of the project kernels', () => {
  for (const k of PROJECT_KERNELS) {
    it(`${k.backendName} ${k.kernelName} has a planner model`, () => {
      const model = PROJECT_KERNEL_MODELS[k.backendName][k.kernelName];
      assert.ok(
        model !== undefined,
        `the project registers ${k.kernelName} on ${k.backendName} but the planner has no model of it; ` +
          'compose it in trainer/kernels/composed.ts, or declare it in PROJECT_KERNEL_MODELS (trainer/plan/sim-backends.ts)',
      );
      if (k.composed !== undefined) {
        assert.equal(
          model.kind,
          'composed',
          `${k.kernelName} on ${k.backendName} is composed, the planner models it as ${model.kind}`,
        );
        assert.ok(
          model.kind === 'composed' && model.kernel === k.composed,
          'the planner runs another source than the engine',
        );
        assert.ok(
          BACKENDS[k.backendName].composites[k.kernelName] !== undefined,
          'the simulated backend does not run it',
        );
      } else {
        assert.notEqual(
          model.kind,
          'composed',
          `${k.kernelName} on ${k.backendName} is a loop, the planner composes it`,
        );
      }
      if (model.kind === 'alias') assert.ok(BACKENDS[k.backendName].aliasing.has(k.kernelName));
    });
  }

  it('models no kernel that the project does not register', () => {
    const registered = new Set(PROJECT_KERNELS.map((k) => `${k.backendName}/${k.kernelName}`));
    const stale = BACKEND_NAMES.flatMap((b) =>
      Object.keys(PROJECT_KERNEL_MODELS[b]).map((n) => `${b}/${n}`),
    ).filter((key) => !registered.has(key));
    assert.deepEqual(stale, []);
  });

  it('registers every composed kernel', () => {
    const registered = new Set(
      PROJECT_KERNELS.filter((k) => k.composed).map((k) => `${k.backendName}/${k.kernelName}`),
    );
    const composed = Object.entries(COMPOSED_KERNELS).flatMap(([b, ks]) =>
      Object.keys(ks).map((n) => `${b}/${n}`),
    );
    assert.deepEqual(
      composed.filter((key) => !registered.has(key)),
      [],
    );
  });
});
