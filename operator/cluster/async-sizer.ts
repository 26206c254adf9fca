// The operator's tile sizer: a bounded memo of sizings shared by every reconcile, filled by the
// planner threads of a PlannerPool, so that the event loop only ever looks sizings up.
//
// Guarantees: a key (sizingKey: the spec's planning inputs, budget, backend and cap) is planned at
// most once while it stays in the memo, however many jobs ask for it at the same time (they share the
// plan in flight); a SizingError (the spec cannot be planned) is memoised like a sizing; any other
// failure is not memoised, so the next reconcile tries again, and it reaches each caller as a
// SizingFailure naming that caller's job.

import { formatBytes } from '../../trainer/plan/planner.ts';
import { type Sizing, SizingError, type SizingRequest, sizingKey } from './tile-sizing.ts';

export interface AsyncSizer {
  /** The memoised sizing of `req` (a SizingError for a spec that cannot be planned), or undefined; never plans. */
  peek(req: SizingRequest): Sizing | SizingError | undefined;
  /**
   * Sizes `req` off the event loop, once per key; `job` (namespace/name) names the caller in a
   * SizingFailure. Rejects with the SizingError when the spec cannot be planned.
   */
  size(req: SizingRequest, job: string): Promise<Sizing>;
  /** Ends the planner threads (operator shutdown). */
  close(): Promise<void>;
}

/** Where the plans are made: a PlannerPool, or in tests anything with the same two methods. */
export interface Planner {
  run(req: SizingRequest): Promise<Sizing>;
  close(): Promise<void>;
}

/** Planning failed for a reason other than the spec (a fault of the planner or its thread). */
export class SizingFailure extends Error {
  override name = 'SizingFailure';
  readonly job: string;
  constructor(job: string, req: SizingRequest, cause: unknown) {
    super(
      `sizing the tile of ${job} (${describeRequest(req)}) failed: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
    this.job = job;
  }
}

/** `resnet34 16384×16384 px on 40.0 GiB (tensorflow, tile ≤ 2048 px)` */
export function describeRequest(req: SizingRequest): string {
  const { model, data } = req.spec;
  const cap = req.maxTile !== undefined ? `, tile ≤ ${req.maxTile} px` : '';
  return `${model.architecture} ${data.imageSize.height}×${data.imageSize.width} px on ${formatBytes(req.budgetBytes)} (${req.backend}${cap})`;
}

export function asyncSizer(planner: Planner, o: { capacity?: number } = {}): AsyncSizer {
  const capacity = o.capacity ?? 256;
  const memo = new Map<string, Sizing | SizingError>();
  const inFlight = new Map<string, Promise<Sizing | SizingError>>();
  /** The memoised value, moved to the back of the Map (most recently used: the Map's order is an LRU). */
  const touch = (key: string) => {
    const hit = memo.get(key);
    if (hit !== undefined) {
      memo.delete(key);
      memo.set(key, hit);
    }
    return hit;
  };
  const remember = (key: string, v: Sizing | SizingError) => {
    if (!memo.has(key) && memo.size >= capacity) memo.delete(memo.keys().next().value as string);
    memo.set(key, v);
  };
  const plan = (key: string, req: SizingRequest): Promise<Sizing | SizingError> => {
    let flight = inFlight.get(key);
    if (flight === undefined) {
      flight = planner
        .run(req)
        .catch((e: unknown) => {
          if (e instanceof SizingError) return e;
          throw e;
        })
        .then((v) => {
          remember(key, v);
          return v;
        })
        .finally(() => inFlight.delete(key));
      inFlight.set(key, flight);
    }
    return flight;
  };
  return {
    peek: (req) => touch(sizingKey(req)),
    async size(req, job) {
      const key = sizingKey(req);
      let v = touch(key);
      if (v === undefined) {
        try {
          v = await plan(key, req);
        } catch (e) {
          throw new SizingFailure(job, req, e);
        }
      }
      if (v instanceof SizingError) throw v;
      return v;
    },
    close: () => planner.close(),
  };
}
