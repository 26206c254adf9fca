// Measures training steps on the native 'tensorflow' backend in a process of its own, started by
// tensorflow-memory.ts with TensorFlow's allocation log switched on (TF_CPP_VMODULE=log_memory=2,
// read when TensorFlow loads). For each step it prints, on stdout, tf.profile's peak and the peak
// of the engine's data ids (measure.ts); on stderr, between `__TSM__ start i` and `__TSM__ end i`,
// TensorFlow's own log of every buffer it allocates and frees, and three kinds of lines of its own:
//   __TSM__ k          an op of the backend returned, or a tensor was freed: a kernel boundary;
//   __TSM__ u <bytes>  tensors made from JavaScript values were copied into TensorFlow (tfjs-node
//                      does that lazily, at their first use; TensorFlow does not always log it);
//   __TSM__ f <bytes>  such a copied tensor was freed.
// Usage: node tensorflow-child.ts < '<TensorflowStepRequest JSON>'.

import { text } from 'node:stream/consumers';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/select.ts';
import type { Network } from '../streaming/network.ts';
import { measureStep } from './measure.ts';

export interface TensorflowStepRequest {
  readonly steps: readonly {
    readonly net: Network;
    readonly image: readonly [number, number];
    readonly tile?: readonly [number, number];
    readonly inputGrad?: boolean;
  }[];
}

/** One line of stdout per step. */
export type TensorflowStepResult =
  | {
      readonly index: number;
      readonly ok: true;
      readonly peakBytes: number;
      readonly bufferPeakBytes: number;
    }
  | { readonly index: number; readonly ok: false; readonly error: string };

/** The part of tfjs-node's NodeJSKernelBackend the hooks wrap. */
interface NodeBackend {
  tensorMap: {
    get(dataId: object): { values: ArrayBufferView | null } | undefined;
    has(dataId: object): boolean;
  };
  executeSingleOutput(...args: unknown[]): unknown;
  executeMultipleOutputs(...args: unknown[]): unknown;
  getInputTensorIds(tensors: readonly { dataId: object }[]): unknown;
  disposeData(dataId: object, force?: boolean): boolean;
}

const say = (line: string): void => {
  // Synchronous on pipes and files, so it lands between TensorFlow's own lines in order.
  process.stderr.write(`__TSM__ ${line}\n`);
};

function installHooks(backend: NodeBackend): void {
  const copied = new Map<object, number>();
  for (const name of ['executeSingleOutput', 'executeMultipleOutputs'] as const) {
    const run = backend[name].bind(backend);
    backend[name] = (...args: unknown[]) => {
      const out = run(...args);
      say('k');
      return out;
    };
  }
  const inputIds = backend.getInputTensorIds.bind(backend);
  backend.getInputTensorIds = (tensors) => {
    let bytes = 0;
    for (const t of tensors) {
      const values = backend.tensorMap.get(t.dataId)?.values;
      if (values != null && !copied.has(t.dataId)) {
        copied.set(t.dataId, values.byteLength);
        bytes += values.byteLength;
      }
    }
    if (bytes > 0) say(`u ${bytes}`);
    return inputIds(tensors);
  };
  const disposeData = backend.disposeData.bind(backend);
  backend.disposeData = (dataId, force) => {
    const released = disposeData(dataId, force);
    const bytes = copied.get(dataId);
    if (bytes !== undefined && !backend.tensorMap.has(dataId)) {
      copied.delete(dataId);
      say(`f ${bytes}`);
    } else say('k');
    return released;
  };
}

async function main(): Promise<void> {
  const req = JSON.parse(await text(process.stdin)) as TensorflowStepRequest;
  await initBackend('tensorflow');
  installHooks(tf.backend() as unknown as NodeBackend);
  for (const [index, s] of req.steps.entries()) {
    say(`start ${index}`);
    let result: TensorflowStepResult;
    try {
      const m = await measureStep({
        net: s.net,
        image: s.image,
        ...(s.tile && { tile: s.tile }),
        ...(s.inputGrad && { inputGrad: true }),
      });
      result = { index, ok: true, peakBytes: m.peakBytes, bufferPeakBytes: m.bufferPeakBytes };
    } catch (e) {
      result = { index, ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    say(`end ${index}`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

await main();
