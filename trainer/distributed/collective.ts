// The collective engine behind data-parallel training, as the trainer sees it. Ranks sum their
// streamed gradients with it before every optimizer step. Buffers are plain Float32Arrays so the
// engine does not care which tfjs backend trains (wasm, cpu or the native TensorFlow build).

/** Where the ranks of one job are: rank r listens on peers[r] (`host:port`). */
export interface RankTopology {
  readonly rank: number;
  readonly worldSize: number;
  readonly peers: readonly string[];
}

export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * The element-wise sum over all ranks of each buffer. Every rank calls it with buffers of the same
   * lengths in the same order; resolves new arrays (the inputs are not modified). Rejects with a
   * `PeersUnavailableError` when a peer is gone or the peer timeout passes.
   */
  allReduceSum(buffers: readonly Float32Array[]): Promise<Float32Array[]>;
  /** Rank 0's buffers, on every rank (other ranks pass buffers of the same lengths). */
  broadcast(buffers: readonly Float32Array[]): Promise<Float32Array[]>;
  /** Releases the engine (the server, the context); the collective is unusable afterwards. */
  close(): Promise<void>;
}

/** A peer did not arrive in time or was lost during a collective: the trainer exits with code 6. */
export class PeersUnavailableError extends Error {
  override readonly name = 'PeersUnavailableError';
}
