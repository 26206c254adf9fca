// One measurement of `tilestream bench gpu` in its own process (see bench/gpu.ts): prints one JSON
// line. A fresh process per step means the device memory TensorFlow's allocator holds afterwards
// (allow-growth: its high-water mark) is that step's peak and nothing else's.
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/select.ts';
import { linearLoss } from '../streaming/compare.ts';
import { tensorSource } from '../streaming/executor.ts';
import { tileGrid } from '../streaming/geometry.ts';
import { conventionalStep, initParams, streamedStep } from '../streaming/network.ts';
import { isOutOfMemory } from '../train/exit-codes.ts';
import { benchEquivalence } from './equivalence.ts';
import { benchNetwork, type ChildRequest, type ChildResult, parseComputeApps, QUERY_APPS } from './gpu.ts';

function deviceMiB(): number | undefined {
  const r = spawnSync('nvidia-smi', QUERY_APPS, { encoding: 'utf8' });
  return r.status === 0 ? parseComputeApps(r.stdout).get(process.pid) : undefined;
}

const print = (r: ChildResult): void => {
  process.stdout.write(`${JSON.stringify(r)}\n`);
};

const req = JSON.parse(process.argv[2] ?? '{}') as ChildRequest;
try {
  const info = await initBackend('tensorflow');
  const base = {
    ok: true as const,
    gpu: info.tensorflow?.gpu === true,
    tensorflowVersion: info.tensorflow?.tensorflowVersion ?? 'unknown',
    reason: info.reason,
  };
  if (req.task === 'devices') {
    print(base);
  } else if (req.task === 'equivalence') {
    const r = await benchEquivalence({
      backend: 'tensorflow',
      seed: 1,
      cases: req.cases,
      maxPixels: 200 * 200,
      fixed: true,
    });
    print({ ...base, pass: r.pass, worst: r.worst, tolerances: r.tolerances, randomCases: r.randomCases });
  } else {
    const net = benchNetwork(req.small);
    const params = initParams(net, 1);
    const x = tf.randomNormal(
      [1, req.image, req.image, net.body.inputChannels],
      0,
      1,
      'float32',
      2,
    ) as tf.Tensor4D;
    const loss = linearLoss(net.outputs, 1);
    const grid = tileGrid(net.body, [req.image, req.image], [req.tile, req.tile]);
    const times: number[] = [];
    for (let i = 0; i <= req.repeats; i++) {
      const t0 = performance.now();
      const r =
        req.mode === 'streamed'
          ? await streamedStep(net, params, tensorSource(x), grid, loss)
          : conventionalStep(net, params, x, loss);
      for (const g of r.grads.values()) {
        g.dataSync(); // wait for the device
        g.dispose();
      }
      if (i > 0) times.push((performance.now() - t0) / 1000); // the first run warms up cuDNN
    }
    times.sort((a, b) => a - b);
    print({
      ...base,
      seconds: times[times.length >> 1] as number,
      deviceMiB: deviceMiB(),
      tiles: grid.tiles.length,
    });
  }
} catch (e) {
  const err = e as Error;
  print({ ok: false, outOfMemory: isOutOfMemory(err), error: err.message.slice(0, 1000) });
}
