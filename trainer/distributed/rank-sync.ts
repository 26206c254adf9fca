// What the ranks of a data-parallel job exchange through the collective, packed into few buffers:
// one all-reduce per optimizer step (every parameter gradient, concatenated, plus a short tail of
// counts), broadcasts of the starting state, and the validation predictions gathered by a sum
// (each rank fills only its own positions). Packing is pure and tested on its own.

import type { Collective } from './collective.ts';

/** A parameter's name and element count, in the order every rank uses (the network's parameter order). */
export interface Slot {
  readonly name: string;
  readonly size: number;
}

/**
 * One buffer: every slot's values (zeros where this rank has none), then one presence flag per slot
 * (1 when this rank has values for it), then `tail`. The presence flags keep the single-rank rule
 * that a parameter without a gradient is not updated at all.
 */
export function packSum(
  slots: readonly Slot[],
  values: ReadonlyMap<string, Float32Array>,
  tail: readonly number[],
): Float32Array {
  const total = slots.reduce((n, s) => n + s.size, 0);
  const out = new Float32Array(total + slots.length + tail.length);
  let offset = 0;
  slots.forEach((s, i) => {
    const v = values.get(s.name);
    if (v) {
      if (v.length !== s.size) throw new Error(`'${s.name}' has ${v.length} values, expected ${s.size}`);
      out.set(v, offset);
      out[total + i] = 1;
    }
    offset += s.size;
  });
  out.set(tail, total + slots.length);
  return out;
}

/** Inverse of packSum on the summed buffer: the slots some rank had values for, and the summed tail. */
export function unpackSum(
  slots: readonly Slot[],
  summed: Float32Array,
  tailLength: number,
): { values: Map<string, Float32Array>; tail: number[] } {
  const total = slots.reduce((n, s) => n + s.size, 0);
  if (summed.length !== total + slots.length + tailLength)
    throw new Error(
      `summed buffer of ${summed.length} values, expected ${total + slots.length + tailLength}`,
    );
  const values = new Map<string, Float32Array>();
  let offset = 0;
  slots.forEach((s, i) => {
    if ((summed[total + i] as number) > 0) values.set(s.name, summed.subarray(offset, offset + s.size));
    offset += s.size;
  });
  return { values, tail: Array.from(summed.subarray(total + slots.length)) };
}

/** UTF-8 bytes as floats (every byte value is exact in float32), so JSON can ride a broadcast. */
export function bytesToFloats(bytes: Uint8Array): Float32Array {
  return Float32Array.from(bytes);
}

export function floatsToBytes(floats: Float32Array): Uint8Array {
  return Uint8Array.from(floats);
}

/** Rank 0's JSON value on every rank: its length first, then its bytes (other ranks pass undefined). */
export async function broadcastJson<T>(collective: Collective, value: T | undefined): Promise<T> {
  const bytes = collective.rank === 0 ? new TextEncoder().encode(JSON.stringify(value)) : undefined;
  const [length] = await collective.broadcast([Float32Array.of(bytes?.length ?? 0)]);
  const n = (length as Float32Array)[0] as number;
  const [payload] = await collective.broadcast([bytes ? bytesToFloats(bytes) : new Float32Array(n)]);
  return JSON.parse(new TextDecoder().decode(floatsToBytes(payload as Float32Array))) as T;
}

/** Rank 0's slot values on every rank, in one buffer (other ranks pass undefined values). */
export async function broadcastSlots(
  collective: Collective,
  slots: readonly Slot[],
  values: ReadonlyMap<string, Float32Array> | undefined,
): Promise<Map<string, Float32Array>> {
  const total = slots.reduce((n, s) => n + s.size, 0);
  const buffer = new Float32Array(total);
  if (collective.rank === 0 && values) {
    let offset = 0;
    for (const s of slots) {
      buffer.set(values.get(s.name) as Float32Array, offset);
      offset += s.size;
    }
  }
  const [got] = await collective.broadcast([buffer]);
  const out = new Map<string, Float32Array>();
  let offset = 0;
  for (const s of slots) {
    out.set(s.name, (got as Float32Array).slice(offset, offset + s.size));
    offset += s.size;
  }
  return out;
}

/** Time spent inside the collective's all-reduce: what `bench scaling` reports as its share of a step. */
export interface AllReduceTiming {
  calls: number;
  seconds: number;
  values: number;
}

export function newAllReduceTiming(): AllReduceTiming {
  return { calls: 0, seconds: 0, values: 0 };
}

/** allReduceSum, timed into `timing`. */
export async function timedAllReduce(
  collective: Collective,
  buffers: readonly Float32Array[],
  timing: AllReduceTiming,
): Promise<Float32Array[]> {
  const t0 = performance.now();
  const out = await collective.allReduceSum(buffers);
  timing.seconds += (performance.now() - t0) / 1000;
  timing.calls++;
  for (const b of buffers) timing.values += b.length;
  return out;
}
