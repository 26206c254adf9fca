// Attention maps of the attention-MIL head: the picture of the weights, and `tilestream train` with
// head.pooling: attention writing one PNG per validation image beside its saliency map.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { stringify } from 'yaml';
import { attentionHeatmap, percentileRanks } from '../../trainer/train/attention-map.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'attention-map-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('attention heatmap', () => {
  it('percentile ranks in [0, 1], ties sharing their mean rank', () => {
    assert.deepEqual([...percentileRanks([0.3, 0.1, 0.3, 0.2, 0.1])], [0.875, 0.125, 0.875, 0.5, 0.125]);
    assert.deepEqual([...percentileRanks([0.5])], [1]);
    // A nearly uniform softmax still shows where the head looks most.
    assert.deepEqual([...percentileRanks([0.2501, 0.2499, 0.25, 0.25])], [1, 0, 0.5, 0.5]);
  });

  it('a 2×2 map at 4×5 pixels: each position covers its share of the picture', () => {
    const map = { height: 2, width: 2, weights: Float32Array.from([0.1, 0.2, 0.3, 0.4]) };
    const got = [...attentionHeatmap(map, 4, 5)].map((v) => Math.round(v * 100) / 100);
    // Columns 0–2 of the picture fall in position column 0 (x·2/5 < 1), columns 3–4 in column 1.
    const [a, b, c, d] = [0, 0.33, 0.67, 1];
    assert.deepEqual(got, [a, a, a, b, b, a, a, a, b, b, c, c, c, d, d, c, c, c, d, d]);
  });
});

describe('tilestream train with head.pooling: attention', () => {
  it('trains and writes <n>-<image>.attention.png beside each saliency map', async () => {
    const checkpoints = join(work, 'ckpt');
    const file = join(work, 'attention.yaml');
    writeFileSync(
      file,
      stringify({
        apiVersion: 'tilestream.io/v1alpha1',
        kind: 'StreamingTrainingJob',
        metadata: { name: 'attention' },
        spec: {
          model: {
            architecture: 'smallcnn',
            width: 4,
            head: { pooling: 'attention', classes: 1, attention: { hiddenSize: 8 } },
          },
          data: {
            root: join(work, 'data'),
            train: 'train.csv',
            validation: 'val.csv',
            imageSize: { height: 192, width: 192 },
            channels: 1,
            normalization: { mean: [0.5], std: [0.05] },
            synthetic: { count: 4, validationCount: 2, seed: 3, format: 'png' },
          },
          training: {
            epochs: 1,
            batchSize: 2,
            loss: 'binary-cross-entropy',
            optimizer: { type: 'adam', learningRate: 0.003 },
            seed: 7,
            backend: 'wasm',
          },
          streaming: { tileSize: 96, saliency: true },
          checkpoint: { path: checkpoints, everySteps: 1, keep: 1 },
        },
      }),
    );
    const child = spawn(process.execPath, [BIN, 'train', file, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    const dir = join(checkpoints, 'saliency');
    const files = readdirSync(dir).sort();
    const attention = files.filter((f) => f.endsWith('.attention.png'));
    assert.equal(attention.length, 2, files.join(', '));
    for (const a of attention)
      assert.ok(files.includes(a.replace('.attention.png', '.png')), `saliency map of ${a}`);
    const meta = await sharp(join(dir, attention[0] as string)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 192, 192, 3]);
    assert.match(stderr, /wrote 2 attention maps to /);
  });
});
