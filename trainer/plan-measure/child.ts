// One measured training step in a process of its own, so that the wasm heap's high-water mark
// belongs to this step alone and an aborted wasm module takes only this process down.
// Usage: node child.ts '<StepRequest JSON>'; prints one line of JSON (a ChildResult).

import { initBackend, wasmHeapBytes } from '../backend/select.ts';
import { type Architecture, builtinNetwork } from '../streaming/bodies.ts';
import type { Network } from '../streaming/network.ts';
import { measureStep } from './measure.ts';

export interface StepRequest {
  readonly backend: 'wasm' | 'cpu';
  readonly arch: Architecture;
  readonly width?: number;
  readonly image: readonly [number, number];
  readonly tile?: readonly [number, number];
}

export type ChildResult =
  | {
      readonly ok: true;
      readonly peakBytes: number;
      readonly bufferPeakBytes: number;
      readonly wasmHeapBytes?: number;
      readonly wasmHeapStartBytes?: number;
      readonly seconds: number;
    }
  | { readonly ok: false; readonly error: string };

async function main(): Promise<void> {
  const req = JSON.parse(process.argv[2] ?? '{}') as StepRequest;
  try {
    await initBackend(req.backend);
    const net: Network = {
      ...builtinNetwork(req.arch, req.width !== undefined ? { width: req.width } : {}),
      pooling: 'max',
      outputs: 2,
    };
    const heapStart = wasmHeapBytes();
    const m = await measureStep({ net, image: req.image, ...(req.tile && { tile: req.tile }) });
    const result: ChildResult = {
      ok: true,
      ...m,
      ...(heapStart !== undefined && { wasmHeapStartBytes: heapStart }),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (e) {
    const result: ChildResult = { ok: false, error: e instanceof Error ? e.message : String(e) };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exitCode = 1;
  }
}

await main();
