// Exit codes of `tilestream train`, documented in the README. The operator's pod failure policy
// matches OUT_OF_MEMORY to retry with a smaller tile instead of counting a failure.

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

/**
 * True for the errors backends raise when a tensor does not fit. The wasm backend has no clean
 * out-of-memory error: past its 4 GB heap, allocations wrap around and the module fails with
 * whatever WebAssembly trap comes first ("null function or function signature mismatch", "table
 * index is out of bounds", "Aborted()"), so every WebAssembly trap counts as out of memory.
 */
export function isOutOfMemory(err: Error): boolean {
  return (
    err.name === 'RuntimeError' || // WebAssembly.RuntimeError: a trap
    err.name === 'PredictedOutOfMemoryError' ||
    OOM_PATTERNS.some((p) => p.test(err.message)) ||
    (err.name === 'RangeError' && /allocation/i.test(err.message))
  );
}
