// The plan's inputs (trainer/plan/inputs.ts): the defaults are applied once, for the command and the
// operator alike, so `tilestream plan job.yaml` and the operator size a job the same way.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Command } from 'commander';
import { stringify } from 'yaml';
import { sizeTile } from '../../operator/cluster/tile-sizing.ts';
import { registerPlanCommands } from '../../trainer/plan/cli.ts';
import { completeInputs, PLAN_DEFAULTS } from '../../trainer/plan/inputs.ts';
import { PlanError } from '../../trainer/plan/planner.ts';
import { makeStj } from '../operator/builders.ts';

const dir = mkdtempSync(join(tmpdir(), 'tilestream-inputs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('plan inputs', () => {
  it('completeInputs takes PLAN_DEFAULTS for settings missing or present as undefined, and keeps the rest', () => {
    const i = completeInputs({ model: 'smallcnn', image: [512, 768], channels: undefined, classes: 5 });
    assert.deepEqual(
      { ...i },
      { ...PLAN_DEFAULTS, model: 'smallcnn', image: [512, 768], classes: 5, source: 'command line' },
    );
  });

  it('completeInputs refuses inputs without a network, then without an image size', () => {
    assert.throws(() => completeInputs({ image: [512, 512] }), {
      name: 'PlanError',
      message: /--model <arch>/,
    });
    assert.throws(
      () => completeInputs({ model: 'smallcnn' }),
      (e) => e instanceof PlanError && /--image-size/.test(e.message),
    );
  });

  it('the operator sizes a job with the tile and peak that `tilestream plan <manifest>` prints', async () => {
    const stj = makeStj()
      .model({ architecture: 'smallcnn', width: 8, head: { pooling: 'avg', classes: 2 } })
      .image(4096)
      .resources({ gpus: 1, minGpuMemory: '256Mi' })
      .spec((s) => {
        s.training = { epochs: 1, loss: 'softmax-cross-entropy' };
      })
      .obj();
    const file = join(dir, 'job.yaml');
    writeFileSync(
      file,
      stringify({ apiVersion: stj.apiVersion, kind: stj.kind, metadata: { name: 'a' }, spec: stj.spec }),
    );
    let out = '';
    const program = new Command('tilestream').exitOverride().configureOutput({
      writeOut: (s) => {
        out += s;
      },
    });
    registerPlanCommands(program);
    await program.parseAsync(['plan', file, '--json'], { from: 'user' });
    const printed = JSON.parse(out) as { tile: number; streamed: { requiredBytes: number } };

    const sized = sizeTile({ spec: stj.spec, budgetBytes: 256 * 2 ** 20, backend: 'tensorflow' });
    assert.ok(sized.fits);
    assert.equal(sized.tile, printed.tile);
    assert.equal(sized.prediction?.streamedBytes, printed.streamed.requiredBytes);
  });
});
