// The collective engine: TensorFlow's own collective ops (CollectiveReduceV2, CollectiveBcastSendV2/
// RecvV2) on an eager context of its own with collectives enabled (TFE_EnableCollectiveOps: a gRPC
// server per rank, ring all-reduce between them on CPU, NCCL between GPUs). TFE_Execute blocks until
// every rank has joined, so it runs on koffi's worker threads and the event loop stays free.
import { inspect } from 'node:util';
import koffi from 'koffi';
import { type Collective, PeersUnavailableError } from './collective.ts';
import { encodeServerDef, taskName } from './server-def.ts';
import {
  type Ptr,
  Status,
  TF_FLOAT,
  TF_INT32,
  TF_UNAVAILABLE,
  type TfApi,
  tensorflowApi,
} from './tf-eager.ts';

export interface TensorflowCollectiveOptions {
  readonly rank: number;
  /** `address:port` per rank, addresses already resolved (TensorFlow's gRPC resolves names itself, once). */
  readonly peers: readonly string[];
  /** How long a collective may wait for its peers (the first one includes every rank starting up). */
  readonly timeoutMs: number;
  /** How often the peers' health is checked while a collective runs (default 2 s). */
  readonly healthIntervalMs?: number;
  /**
   * How long a peer may take to answer a health check before it counts as lost (default 10 s). A
   * killed peer refuses the connection at once; this bounds a hung one (a stopped process, a lost
   * node), with room for a machine so loaded that an answer takes seconds.
   */
  readonly healthTimeoutMs?: number;
  /**
   * Chunks of the ring all-reduce that travel at once (TensorFlow's max_subdivs_per_device); 0 leaves
   * TensorFlow's choice. Default 8: 1.3–2× as fast as TensorFlow's choice between 2 CPU ranks here,
   * 1.1–1.25× between 4 (`tilestream bench allreduce --subdivs 0,8`). NCCL ignores it.
   */
  readonly ringSubdivisions?: number;
  readonly log?: (line: string) => void;
}

export const DEFAULT_RING_SUBDIVISIONS = 8;

/** The group of all ranks; one group per context, so any fixed key does. */
const GROUP_KEY = 1;

let exitGuarded = false;

/**
 * Once a context has collectives enabled, the process crashes with SIGSEGV at exit (measured with
 * TensorFlow 2.21, with or without TFE_DeleteContext: its gRPC server "does not support clean
 * shutdown", and one of its threads runs on after the libraries' static destructors). That would
 * turn every exit code — 0 after training, 6 after a lost peer — into 139. So the process ends with
 * _exit(2) after Node's other exit listeners have run: stdout and stderr are written synchronously
 * on Linux, and nothing else of TensorFlow's needs tearing down.
 */
function guardProcessExit(): void {
  if (exitGuarded) return;
  exitGuarded = true;
  const libc = koffi.load('libc.so.6');
  const underscoreExit = libc.func('void _exit(int status)') as unknown as (code: number) => void;
  // Writes to a pipe still queued at exit would be lost by _exit (a 2 MB line was cut at 64 KiB):
  // blocking stdout and stderr leaves nothing queued.
  for (const stream of [process.stdout, process.stderr]) {
    (stream as unknown as { _handle?: { setBlocking?: (on: boolean) => void } })._handle?.setBlocking?.(true);
  }
  // Node prints an uncaught error after the exit listeners, which _exit would skip: print it here.
  let uncaught: { error: unknown } | undefined;
  process.on('uncaughtExceptionMonitor', (error) => {
    uncaught = { error };
  });
  const listener = (code: number): void => {
    // Listeners added after this one would be skipped by _exit: run them first.
    const all = process.listeners('exit');
    for (const later of all.slice(all.indexOf(listener) + 1)) later.call(process, code);
    if (uncaught !== undefined) process.stderr.write(`${inspect(uncaught.error)}\n`);
    underscoreExit(typeof code === 'number' ? code : 0);
  };
  process.on('exit', listener);
}

/** Promise form of a koffi async call. */
function callAsync(fn: { async: (...args: unknown[]) => void }, ...args: unknown[]): Promise<unknown> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, result: unknown) => (err ? reject(err) : resolve(result)));
  });
}

export class TensorflowCollective implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  readonly device: string;
  readonly communicationHint: 'auto' | 'nccl';
  private readonly api: TfApi;
  private ctx: Ptr | null;
  private instanceKey = 0;
  /** Collectives run one at a time, in call order, so every rank numbers them the same. */
  private queue: Promise<unknown> = Promise.resolve();
  private failure: PeersUnavailableError | undefined;
  /**
   * The input tensor of the last size, kept and refilled: the trainer sums the same gradient sizes
   * every step, and a fresh 85 MB tensor per call costs its allocation and page faults each time.
   */
  private staging: { total: number; handle: Ptr; view: Float32Array } | undefined;
  /** Where the last collective's time went: copying in, TensorFlow's op, copying out (ms). */
  lastTimings: { packMs: number; executeMs: number; unpackMs: number } | undefined;
  private readonly timeoutMs: number;
  private readonly healthIntervalMs: number;
  private readonly healthTimeoutMs: number;
  private readonly ringSubdivisions: number;
  private readonly log: (line: string) => void;

  private constructor(api: TfApi, ctx: Ptr, device: string, options: TensorflowCollectiveOptions) {
    this.api = api;
    this.ctx = ctx;
    this.rank = options.rank;
    this.worldSize = options.peers.length;
    this.device = device;
    this.communicationHint = device.includes('GPU') ? 'nccl' : 'auto';
    this.timeoutMs = options.timeoutMs;
    this.healthIntervalMs = options.healthIntervalMs ?? 2000;
    this.healthTimeoutMs = options.healthTimeoutMs ?? 10_000;
    this.ringSubdivisions = options.ringSubdivisions ?? DEFAULT_RING_SUBDIVISIONS;
    this.log = options.log ?? (() => {});
  }

  /** Creates the context and starts this rank's gRPC server; peers are met at the first collective. */
  static start(options: TensorflowCollectiveOptions): TensorflowCollective {
    const api = tensorflowApi();
    const { rank, peers } = options;
    const port = Number(peers[rank]?.split(':').at(-1));
    if (!Number.isInteger(port) || port <= 0) {
      throw new Error(`peer ${rank} '${peers[rank]}' has no port: TILESTREAM_PEERS lists host:port per rank`);
    }
    const status = new Status(api);
    const opts = api.NewContextOptions();
    try {
      const ctx = api.NewContext(opts, status.ptr);
      status.check('TFE_NewContext');
      const serverDef = encodeServerDef({ tasks: peers, taskIndex: rank, port });
      guardProcessExit();
      api.EnableCollectiveOps(ctx, serverDef, serverDef.length, status.ptr);
      status.check(
        `TFE_EnableCollectiveOps (rank ${rank} starting its server on port ${port}; is another process listening there?)`,
      );
      const device = pickDevice(api, ctx, rank, status);
      const engine = new TensorflowCollective(api, ctx, device, options);
      engine.log(
        `collective: rank ${rank} of ${peers.length}, TensorFlow ${api.build.spec.variant} build, ` +
          `device ${device}, listening on port ${port}`,
      );
      return engine;
    } finally {
      api.DeleteContextOptions(opts);
      status.delete();
    }
  }

  allReduceSum(buffers: readonly Float32Array[]): Promise<Float32Array[]> {
    return this.enqueue(() => this.run('reduce', buffers));
  }

  broadcast(buffers: readonly Float32Array[]): Promise<Float32Array[]> {
    return this.enqueue(() => this.run('broadcast', buffers));
  }

  async close(): Promise<void> {
    await this.queue.catch(() => {});
    if (this.ctx === null) return;
    const ctx = this.ctx;
    this.dropStaging();
    this.ctx = null;
    // Deleting a context with collectives enabled tears down its gRPC server; TensorFlow can block
    // there briefly, so it runs off the main thread too.
    await callAsync(this.api.DeleteContext, ctx);
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const next = this.queue.then(task, task);
    this.queue = next.catch(() => {});
    return next;
  }

  private async run(kind: 'reduce' | 'broadcast', buffers: readonly Float32Array[]): Promise<Float32Array[]> {
    if (this.ctx === null) throw new Error('the collective is closed');
    if (this.failure !== undefined) throw this.failure;
    const total = buffers.reduce((n, b) => n + b.length, 0);
    if (total === 0) return buffers.map(() => new Float32Array(0));
    const instanceKey = ++this.instanceKey;
    const api = this.api;
    const status = new Status(api);
    const handles: Ptr[] = [];
    let op: Ptr | null = null;
    let output: Ptr | null = null;
    const stopHealth = this.watchPeers();
    try {
      const scalar = (v: number): Ptr => {
        const h = this.int32Handle(v, status);
        handles.push(h);
        return h;
      };
      const sendsData = kind === 'reduce' || this.rank === 0;
      const name =
        kind === 'reduce'
          ? 'CollectiveReduceV2'
          : sendsData
            ? 'CollectiveBcastSendV2'
            : 'CollectiveBcastRecvV2';
      op = api.NewOp(this.ctx, name, status.ptr);
      status.check(`TFE_NewOp ${name}`);
      api.OpSetDevice(op, this.device, status.ptr);
      status.check(`TFE_OpSetDevice ${this.device}`);
      const t0 = performance.now();
      if (sendsData) {
        const data = this.floatHandle(buffers, total, status);
        api.OpAddInput(op, data, status.ptr);
        status.check('TFE_OpAddInput');
      }
      for (const v of [this.worldSize, GROUP_KEY, instanceKey]) {
        api.OpAddInput(op, scalar(v), status.ptr);
        status.check('TFE_OpAddInput');
      }
      if (!sendsData) {
        const shape = this.int32VectorHandle([total], status);
        handles.push(shape);
        api.OpAddInput(op, shape, status.ptr);
        status.check('TFE_OpAddInput shape');
        api.OpSetAttrType(op, 'Tshape', TF_INT32);
      }
      api.OpSetAttrType(op, 'T', TF_FLOAT);
      if (kind === 'reduce') {
        setString(api, op, 'merge_op', 'Add');
        setString(api, op, 'final_op', 'Id');
        if (this.ringSubdivisions > 0) api.OpSetAttrInt(op, 'max_subdivs_per_device', this.ringSubdivisions);
      }
      setString(api, op, 'communication_hint', this.communicationHint);
      // TensorFlow's own bound on a collective (waiting for peers included): the peer timeout.
      api.OpSetAttrFloat(op, 'timeout_seconds', this.timeoutMs / 1000);
      const retvals: Ptr[] = [null];
      const count = [1];
      const t1 = performance.now();
      await callAsync(api.Execute, op, retvals, count, status.ptr);
      if (status.code !== 0) throw this.failed(`${name} (instance ${instanceKey})`, status);
      output = retvals[0] ?? null;
      const t2 = performance.now();
      const result = this.readFloats(output, buffers, status);
      this.lastTimings = { packMs: t1 - t0, executeMs: t2 - t1, unpackMs: performance.now() - t2 };
      return result;
    } finally {
      stopHealth();
      if (output !== null) api.DeleteTensorHandle(output);
      if (op !== null) api.DeleteOp(op);
      for (const h of handles) api.DeleteTensorHandle(h);
      status.delete();
    }
  }

  /** A collective that failed: a lost or absent peer (or anything else) ends the collective for good. */
  private failed(what: string, status: Status): Error {
    const error =
      this.failure ??
      new PeersUnavailableError(
        `${what} failed on rank ${this.rank} of ${this.worldSize}: ${status.message} ` +
          '(a peer is gone or did not arrive within the peer timeout)',
      );
    this.failure = error;
    return error;
  }

  /**
   * While a collective runs, asks every peer whether it is alive; a peer that does not answer aborts
   * the collectives of this context (TFE_AbortCollectiveOps), so the waiting TFE_Execute returns
   * instead of waiting for the op's whole timeout.
   */
  private watchPeers(): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const check = async (): Promise<void> => {
      for (let r = 0; r < this.worldSize && !stopped; r++) {
        if (r === this.rank || this.ctx === null) continue;
        const status = new Status(this.api);
        try {
          await callAsync(
            this.api.CollectiveOpsCheckPeerHealth,
            this.ctx,
            taskName(r),
            this.healthTimeoutMs,
            status.ptr,
          );
          if (status.code !== 0 && !stopped && this.ctx !== null) {
            this.failure ??= new PeersUnavailableError(
              `rank ${r} (${taskName(r)}) stopped answering during a collective on rank ${this.rank}: ${status.message}`,
            );
            this.log(`collective: ${this.failure.message}; aborting this rank's collectives`);
            this.abort(this.failure.message);
            stopped = true;
          }
        } finally {
          status.delete();
        }
      }
      if (!stopped) timer = setTimeout(() => void check(), this.healthIntervalMs);
    };
    timer = setTimeout(() => void check(), this.healthIntervalMs);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /**
   * Ends every pending and future collective of this context with UNAVAILABLE. The status must be
   * an error: TensorFlow 2.21 aborts the process (a CHECK) when handed an OK status here.
   */
  private abort(message: string): void {
    if (this.ctx === null) return;
    const status = new Status(this.api);
    this.api.SetStatus(status.ptr, TF_UNAVAILABLE, message);
    this.api.AbortCollectiveOps(this.ctx, status.ptr);
    status.delete();
  }

  /**
   * Waits until every peer's server answers (TFE_CollectiveOpsCheckPeerHealth), asking again until
   * `timeoutMs` passes; rejects naming the peers that never answered.
   */
  async waitForPeers(timeoutMs: number = this.timeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const waiting = new Map<number, string>();
    for (let r = 0; r < this.worldSize; r++) if (r !== this.rank) waiting.set(r, 'not asked yet');
    for (;;) {
      for (const r of [...waiting.keys()]) {
        if (this.ctx === null) throw new Error('the collective is closed');
        const status = new Status(this.api);
        try {
          const wait = Math.max(100, Math.min(5000, deadline - Date.now()));
          await callAsync(this.api.CollectiveOpsCheckPeerHealth, this.ctx, taskName(r), wait, status.ptr);
          if (status.code === 0) waiting.delete(r);
          else waiting.set(r, status.message.split('\n')[0] ?? '');
        } finally {
          status.delete();
        }
      }
      if (waiting.size === 0) return;
      if (Date.now() >= deadline) {
        const which = [...waiting].map(([r, why]) => `rank ${r} (${why})`).join('; ');
        throw new PeersUnavailableError(
          `rank ${this.rank} waited ${Math.round(timeoutMs / 1000)} s for its peers; these never answered: ${which}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(500, Math.max(0, deadline - Date.now()))));
    }
  }

  private int32Handle(value: number, status: Status): Ptr {
    const t = this.api.AllocateTensor(TF_INT32, null, 0, 4);
    new Int32Array(koffi.view(this.api.TensorData(t) as never, 4))[0] = value;
    return this.handleOf(t, status);
  }

  private int32VectorHandle(values: readonly number[], status: Status): Ptr {
    const t = this.api.AllocateTensor(TF_INT32, [values.length], 1, 4 * values.length);
    new Int32Array(koffi.view(this.api.TensorData(t) as never, 4 * values.length)).set(values);
    return this.handleOf(t, status);
  }

  /** One tensor holding all buffers end to end: one collective per call, whatever the count. */
  private floatHandle(buffers: readonly Float32Array[], total: number, status: Status): Ptr {
    if (this.staging?.total !== total) {
      this.dropStaging();
      const t = this.api.AllocateTensor(TF_FLOAT, [total], 1, 4 * total);
      const view = new Float32Array(koffi.view(this.api.TensorData(t) as never, 4 * total));
      this.staging = { total, handle: this.handleOf(t, status), view };
    }
    const dst = this.staging.view;
    let at = 0;
    for (const b of buffers) {
      dst.set(b, at);
      at += b.length;
    }
    return this.staging.handle;
  }

  private dropStaging(): void {
    if (this.staging !== undefined) this.api.DeleteTensorHandle(this.staging.handle);
    this.staging = undefined;
  }

  private handleOf(tensor: Ptr, status: Status): Ptr {
    const h = this.api.NewTensorHandle(tensor, status.ptr);
    // The handle holds its own reference to the tensor's buffer.
    this.api.DeleteTensor(tensor);
    status.check('TFE_NewTensorHandle');
    return h;
  }

  private readFloats(handle: Ptr, like: readonly Float32Array[], status: Status): Float32Array[] {
    const t = this.api.TensorHandleResolve(handle, status.ptr);
    status.check('TFE_TensorHandleResolve');
    try {
      const total = like.reduce((n, b) => n + b.length, 0);
      const src = new Float32Array(koffi.view(this.api.TensorData(t) as never, 4 * total));
      let at = 0;
      return like.map((b) => {
        const out = src.slice(at, at + b.length);
        at += b.length;
        return out;
      });
    } finally {
      this.api.DeleteTensor(t);
    }
  }
}

function setString(api: TfApi, op: Ptr, name: string, value: string): void {
  api.OpSetAttrString(op, name, value, Buffer.byteLength(value));
}

/** The GPU of this task when the build sees one (NCCL between GPUs), else its CPU. */
function pickDevice(api: TfApi, ctx: Ptr, rank: number, status: Status): string {
  const list = api.ContextListDevices(ctx, status.ptr);
  status.check('TFE_ContextListDevices');
  const devices: { name: string; type: string }[] = [];
  try {
    const n = api.DeviceListCount(list) as number;
    for (let i = 0; i < n; i++) {
      devices.push({
        name: api.DeviceListName(list, i, status.ptr) as string,
        type: api.DeviceListType(list, i, status.ptr) as string,
      });
    }
  } finally {
    api.DeleteDeviceList(list);
  }
  const mine = devices.filter((d) => d.name.startsWith(`${taskName(rank)}/`));
  const gpu = mine.find((d) => d.type === 'GPU');
  const cpu = mine.find((d) => d.type === 'CPU');
  const chosen = gpu ?? cpu;
  if (chosen === undefined) {
    throw new Error(
      `TensorFlow lists no CPU device for task ${taskName(rank)} (devices: ${devices.map((d) => d.name).join(', ')})`,
    );
  }
  return chosen.name;
}
