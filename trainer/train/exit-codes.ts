// Exit codes of `tilestream train`, documented in the README. The operator's pod failure policy
// matches outOfMemory to retry with a smaller tile instead of counting a failure, and fails the job
// at once on invalidInput, checkpointVolumeFull and dataNotFound, which no retry can fix.

export const EXIT = {
  ok: 0,
  /** Any other failure; the reason is logged and written to the termination message. */
  failure: 1,
  /**
   * The manifest, a flag or what it points at is invalid (a missing data manifest, a model that cannot
   * stream, an unusable tile); retrying cannot help.
   */
  invalidInput: 2,
  /** The backend ran out of memory (TensorFlow OOM, the wasm heap abort): retry with a smaller tile. */
  outOfMemory: 3,
  /**
   * A checkpoint could not be written because its volume is full (ENOSPC, EDQUOT, EFBIG); the
   * previous checkpoint is kept. Retrying cannot help until space is freed or spec.checkpoint.keep
   * is lowered, so the operator fails the job at once (reason CheckpointVolumeFull).
   */
  checkpointVolumeFull: 4,
  /**
   * The data is not where the job says: no manifest at spec.data.root + spec.data.train (or
   * validation), or no data root at all (an empty or unmounted volume). Not an invalid spec: the
   * same job runs once the data is there, so the operator reports reason DataNotFound and fails the
   * job at once (every retry would find the same nothing).
   */
  dataNotFound: 5,
  /**
   * A rank of a data-parallel job did not meet its peers within TILESTREAM_PEER_TIMEOUT_SECONDS
   * (default 600), or lost one during a collective (a peer process or pod died). Not the job's
   * fault: every rank restarts from the last checkpoint (locally the launcher restarts them; on
   * Kubernetes the operator starts the next attempt), counted against spec.runPolicy.backoffLimit.
   */
  peersUnavailable: 6,
  /** Stopped by SIGTERM/SIGINT after writing a checkpoint (128 + SIGTERM). */
  stopped: 143,
} as const;

const OOM_PATTERNS = [
  /OOM when allocating/i, // TensorFlow (tfjs-node-gpu)
  /ResourceExhausted/i,
  /out of memory/i,
  /^Aborted\(/, // the wasm module aborts when its 4 GB heap is full
  /memory access out of bounds/i,
  /Array buffer allocation failed/i,
  /Invalid typed array length/i, // a view past the end of a full wasm heap
  /Cannot allocate|Failed to allocate/i,
];

/** The wasm heap's 32-bit limit; a heap grown past 90% of it was nearly full. */
const WASM_HEAP_LIMIT = 4 * 1024 ** 3;
const NEARLY_FULL = 0.9;

/**
 * True for the errors backends raise when a tensor does not fit. The wasm backend has no clean
 * out-of-memory error: past its 4 GB heap, allocations wrap around and the module fails with
 * whatever WebAssembly trap comes first ("null function or function signature mismatch", "table
 * index is out of bounds", "Aborted()"), so every WebAssembly trap counts as out of memory. A
 * failed allocation can also return nothing to tfjs, which then throws a TypeError reading it: that
 * counts as out of memory when the wasm heap (`wasmHeapBytes`, which only grows) had nearly
 * reached its limit.
 */
export function isOutOfMemory(err: Error, context: { wasmHeapBytes?: number } = {}): boolean {
  const heapNearlyFull = (context.wasmHeapBytes ?? 0) >= NEARLY_FULL * WASM_HEAP_LIMIT;
  return (
    (heapNearlyFull && err.name === 'TypeError') ||
    err.name === 'RuntimeError' || // WebAssembly.RuntimeError: a trap
    err.name === 'PredictedOutOfMemoryError' ||
    OOM_PATTERNS.some((p) => p.test(err.message)) ||
    (err.name === 'RangeError' && /allocation/i.test(err.message))
  );
}
