// `tilestream plan` with the attention-MIL head: the head's memory is counted (it grows with the
// image, not the tile: one instance per position of the feature map), from flags and from a manifest.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Command, CommanderError } from 'commander';
import { ATTENTION_HIDDEN_DEFAULT as CRD_DEFAULT } from '../../crds/v1alpha1/schema.ts';
import { registerPlanCommands } from '../../trainer/plan/cli.ts';
import { ATTENTION_HIDDEN_DEFAULT } from '../../trainer/streaming/network-shape.ts';

interface PlanJson {
  pooling: string;
  attentionHiddenSize?: number;
  tile: number;
  parameters: number;
  streamed: { phases: Record<string, number> };
}

async function plan(...args: string[]): Promise<PlanJson> {
  let out = '';
  let err = '';
  const program = new Command('tilestream').exitOverride().configureOutput({
    writeOut: (s) => {
      out += s;
    },
    writeErr: (s) => {
      err += s;
    },
  });
  registerPlanCommands(program);
  try {
    await program.parseAsync(['plan', ...args, '--json'], { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    assert.fail(`tilestream plan ${args.join(' ')} exited ${e.exitCode}: ${err}`);
  }
  return JSON.parse(out) as PlanJson;
}

const dir = mkdtempSync(join(tmpdir(), 'tilestream-attention-plan-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('tilestream plan with the attention head', () => {
  it('the CRD and the trainer default to the same hidden size (CLAM small: 128)', () => {
    assert.equal(CRD_DEFAULT, ATTENTION_HIDDEN_DEFAULT);
    assert.equal(ATTENTION_HIDDEN_DEFAULT, 128);
  });

  it("counts the head's memory: it grows with the image (×4 for twice the side), not the tile", async () => {
    const common = ['--model', 'smallcnn', '--gpu-memory', '4Gi'];
    const small = await plan(...common, '--image-size', '2048', '--pooling', 'attention');
    const large = await plan(...common, '--image-size', '4096', '--pooling', 'attention');
    const max = await plan(...common, '--image-size', '4096', '--pooling', 'max');
    assert.equal(large.pooling, 'attention');
    assert.equal(large.attentionHiddenSize, 128);
    assert.equal(max.attentionHiddenSize, undefined);
    // V and U [16, 128] with biases [128], and w [128, 1], on the 16 channels of the body.
    assert.equal(large.parameters - max.parameters, 2 * (16 * 128 + 128) + 128);
    const head = (j: PlanJson) => j.streamed.phases.head as number;
    const ratio = head(large) / head(small);
    assert.ok(ratio > 3.8 && ratio < 4.2, `head phase ×${ratio.toFixed(2)} for 4× the positions`);
    // One [positions, 128] tensor is 8× the [positions, 16] feature map: the head outweighs max pooling's.
    assert.ok(head(large) > 4 * head(max), `attention head ${head(large)} vs max pooling ${head(max)} bytes`);
    const wider = await plan(
      ...common,
      '--image-size',
      '4096',
      '--pooling',
      'attention',
      '--attention-hidden-size',
      '256',
    );
    assert.ok(head(wider) > 1.5 * head(large), 'a wider attention needs more memory');
  });

  it('refuses --attention-hidden-size without the attention head, naming the flag to add', async () => {
    let err = '';
    const program = new Command('tilestream').exitOverride().configureOutput({
      writeOut: () => {},
      writeErr: (s) => {
        err += s;
      },
    });
    registerPlanCommands(program);
    await assert.rejects(
      program.parseAsync(
        ['plan', '--model', 'smallcnn', '--image-size', '2048', '--attention-hidden-size', '64'],
        {
          from: 'user',
        },
      ),
      (e: unknown) => e instanceof CommanderError && e.exitCode === 2,
    );
    assert.match(err, /--attention-hidden-size applies only to the attention head: add --pooling attention/);
  });

  it('reads head.pooling and head.attention.hiddenSize from a manifest', async () => {
    const file = join(dir, 'job.yaml');
    writeFileSync(
      file,
      `apiVersion: tilestream.io/v1alpha1
kind: StreamingTrainingJob
metadata:
  name: attention-plan
spec:
  model:
    architecture: smallcnn
    head: { pooling: attention, classes: 2, attention: { hiddenSize: 32 } }
  data:
    root: /data
    train: train.csv
    imageSize: { height: 2048, width: 2048 }
  resources:
    gpus: 1
    minGpuMemory: 2Gi
`,
    );
    const j = await plan(file);
    assert.equal(j.pooling, 'attention');
    assert.equal(j.attentionHiddenSize, 32);
  });
});
