// A planner thread of the PlannerPool (planner-pool.ts): sizes one tile per message with sizeTile and
// answers with the sizing or the error, whose name says whether it was the spec (SizingError) or a fault.

import { parentPort } from 'node:worker_threads';
import type { PlannerReply, PlannerTask } from './planner-pool.ts';
import { sizeTile } from './tile-sizing.ts';

if (!parentPort) throw new Error('planner-worker.ts runs as a worker thread of a PlannerPool');
const port = parentPort;

port.on('message', ({ id, req }: PlannerTask) => {
  let reply: PlannerReply;
  try {
    reply = { id, ok: true, sizing: sizeTile(req) };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    reply = { id, ok: false, error: { name: err.name, message: err.message, stack: err.stack ?? '' } };
  }
  port.postMessage(reply);
});
