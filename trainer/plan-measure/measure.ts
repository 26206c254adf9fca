// Measured peak memory of real training steps, to calibrate trainer/plan against. Three numbers
// per run, all relative to the engine's state before the run's parameters and image were made:
// - peakBytes: tf.profile's peakBytes (tfjs's numBytes after each kernel), what the model predicts;
// - bufferPeakBytes: the peak of distinct buffers, counted by watching the engine create and free
//   data ids (a reshape or a cpu clone shares its input's buffer);
// - wasmHeapBytes: the wasm heap's size after the run (it only grows; meaningful in a fresh process).

import * as tf from '@tensorflow/tfjs-core';
import { wasmHeapBytes } from '../backend/select.ts';
import { linearLoss } from '../streaming/compare.ts';
import { tensorSource } from '../streaming/executor.ts';
import { tileGrid } from '../streaming/geometry.ts';
import { conventionalStep, initParams, type Network, streamedStep } from '../streaming/network.ts';

export interface Measurement {
  readonly peakBytes: number;
  readonly bufferPeakBytes: number;
  /** Size of the wasm heap after the run, or undefined on other backends. */
  readonly wasmHeapBytes?: number;
  readonly seconds: number;
}

// The engine's bookkeeping, used only here to count distinct buffers (tfjs-core engine.ts).
interface EngineInternals {
  state: {
    tensorInfo: {
      has(id: object): boolean;
      get(id: object): { bytes: number; backend: unknown } | undefined;
    };
  };
  trackTensor(a: tf.Tensor, backend: unknown): void;
  removeDataId(dataId: object, backend: unknown): void;
}

/** Counts distinct live buffers while `run` runs; returns its peak (bytes above the start). */
async function withBufferCount<R>(run: () => Promise<R>): Promise<{ result: R; peak: number }> {
  const engine = tf.engine() as unknown as EngineInternals;
  const track = engine.trackTensor;
  const remove = engine.removeDataId;
  let live = 0;
  let peak = 0;
  engine.trackTensor = function (this: EngineInternals, a: tf.Tensor, backend: unknown) {
    const fresh = !this.state.tensorInfo.has(a.dataId);
    track.call(this, a, backend);
    if (fresh) {
      live += this.state.tensorInfo.get(a.dataId)?.bytes ?? 0;
      if (live > peak) peak = live;
    }
  };
  engine.removeDataId = function (this: EngineInternals, dataId: object, backend: unknown) {
    const info = this.state.tensorInfo.get(dataId);
    if (info !== undefined && info.backend === backend) live -= info.bytes;
    remove.call(this, dataId, backend);
  };
  try {
    return { result: await run(), peak };
  } finally {
    engine.trackTensor = track;
    engine.removeDataId = remove;
  }
}

export type StepKind = 'streamed' | 'conventional';

export interface StepSpec {
  readonly net: Network;
  readonly image: readonly [number, number];
  /** The tile for a streamed step; absent for the conventional one. */
  readonly tile?: readonly [number, number];
  readonly seed?: number;
  readonly inputGrad?: boolean;
}

/**
 * Runs one training step (streamedStep with a float32 image tensor as the tile source, or
 * conventionalStep) inside tf.profile and returns its peaks, parameters and image included.
 */
export async function measureStep(spec: StepSpec): Promise<Measurement> {
  const seed = spec.seed ?? 1;
  const [H, W] = spec.image;
  const base = tf.memory().numBytes;
  const started = performance.now();
  const { result, peak } = await withBufferCount(async () => {
    const params = initParams(spec.net, seed);
    const image = tf.randomUniform(
      [1, H, W, spec.net.body.inputChannels],
      0,
      1,
      'float32',
      seed,
    ) as tf.Tensor4D;
    const lossFn = linearLoss(spec.net.outputs, seed);
    const opts = spec.inputGrad ? { inputGrad: true } : {};
    let profile: Awaited<ReturnType<typeof tf.profile>>;
    try {
      if (spec.tile) {
        const grid = tileGrid(spec.net.body, spec.image, spec.tile);
        profile = await tf.profile(async () => {
          const r = await streamedStep(spec.net, params, tensorSource(image), grid, lossFn, opts);
          for (const g of r.grads.values()) g.dispose();
        });
      } else {
        profile = await tf.profile(() => {
          const r = conventionalStep(spec.net, params, image, lossFn, opts);
          for (const g of r.grads.values()) g.dispose();
        });
      }
    } finally {
      image.dispose();
      for (const p of params.values()) p.dispose();
    }
    // tf.profile returns the engine's one shared profile object: read it before anything else profiles.
    return profile.peakBytes;
  });
  const leaked = tf.memory().numBytes - base;
  if (leaked !== 0) throw new Error(`measureStep: ${leaked} bytes of tensors leaked by the step`);
  const heap = wasmHeapBytes();
  return {
    peakBytes: result - base,
    bufferPeakBytes: peak,
    ...(heap !== undefined && { wasmHeapBytes: heap }),
    seconds: (performance.now() - started) / 1000,
  };
}
