// Measured memory of training steps on the native 'tensorflow' backend, at two levels:
// - tfjs's: tf.profile's peakBytes (every handle) and the peak of the engine's data ids, as on
//   wasm and cpu (measure.ts);
// - TensorFlow's: the buffers its allocator hands out, from TensorFlow's own allocation log
//   (TF_CPP_VMODULE=log_memory=2: a line per tensor allocated and freed) plus the tensors that
//   tfjs-node copies in from JavaScript. This is the device memory that the planner's buffers
//   stand for: TensorFlow backs a Reshape or a same-type Cast with its input's buffer although
//   tfjs gives it a data id of its own, and a tensor made from JavaScript values (the image that
//   a tile source reads on the host) takes no TensorFlow memory until an op uses it.
// The steps run in one child process (tensorflow-child.ts), because TensorFlow reads the log
// setting when it loads, and because a crash inside TensorFlow then fails a measurement instead
// of the caller.

import { spawn } from 'node:child_process';
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { TensorflowStepRequest, TensorflowStepResult } from './tensorflow-child.ts';

export interface DeviceMemory {
  /**
   * Peak of TensorFlow's live buffers sampled between kernels (when each op has returned and
   * after each free), above the step's start: the tensors, as the planner's buffers count them.
   */
  readonly tensorPeakBytes: number;
  /** Peak at any allocation, so also the scratch a kernel allocates and frees inside itself. */
  readonly peakBytes: number;
  /** Bytes TensorFlow still held for the step when it ended (0 when everything was freed). */
  readonly leftoverBytes: number;
}

export type TensorflowMeasurement =
  | {
      readonly ok: true;
      /** tf.profile's peakBytes (tfjs handles). */
      readonly peakBytes: number;
      /** Peak of distinct tfjs data ids. */
      readonly bufferPeakBytes: number;
      readonly device: DeviceMemory;
    }
  | { readonly ok: false; readonly error: string };

const MARK = '__TSM__ ';
const LOG = /__LOG_MEMORY__ (MemoryLog(?:Tensor|Raw)(?:Allocation|Deallocation)) \{(.*)\}\s*$/;
const field = (body: string, name: string): string | undefined =>
  new RegExp(`\\b${name}:\\s*"?([^"\\s}]+)`).exec(body)?.[1];

/**
 * Reads the child's stderr a line at a time: TensorFlow's allocation log and the child's marks.
 * Every buffer is tracked from the start of the process, so a free of a buffer never seen means
 * the log lost lines (counted in `unmatchedFrees`; the measurement is then not trustworthy).
 */
export class AllocationLog {
  readonly #live = new Map<string, number>();
  /** Copies that TF_NewTensor made of tfjs-node's buffers: counted by the child's `u` lines instead. */
  readonly #copies = new Set<string>();
  #bytes = 0;
  #window: { index: number; base: number; tensorPeak: number; peak: number } | undefined;
  readonly results = new Map<number, DeviceMemory>();
  unmatchedFrees = 0;
  /** The step whose measurement started last (to name the step a crash interrupted). */
  lastStarted: number | undefined;

  line(text: string): void {
    if (text.startsWith(MARK)) {
      this.#mark(text.slice(MARK.length).trim());
      return;
    }
    const m = LOG.exec(text);
    if (m === null) return;
    const [, kind, body] = m as unknown as [string, string, string];
    const id = field(body, 'allocation_id');
    if (id === undefined) return;
    const key = `${field(body, 'allocator_name') ?? '?'}#${id}`;
    if (kind.endsWith('Deallocation')) {
      if (this.#copies.delete(key)) return;
      const bytes = this.#live.get(key);
      if (bytes === undefined) {
        this.unmatchedFrees++;
        return;
      }
      this.#live.delete(key);
      this.#bytes -= bytes;
      return;
    }
    if (kind === 'MemoryLogRawAllocation' && field(body, 'operation') === 'TF_NewTensor') {
      this.#copies.add(key);
      return;
    }
    const bytes = Number(
      field(body, kind === 'MemoryLogRawAllocation' ? 'num_bytes' : 'requested_bytes') ?? 0,
    );
    this.#live.set(key, bytes);
    this.#bytes += bytes;
    if (this.#window && this.#bytes > this.#window.peak) this.#window.peak = this.#bytes;
  }

  #sample(): void {
    if (this.#window && this.#bytes > this.#window.tensorPeak) this.#window.tensorPeak = this.#bytes;
  }

  #mark(what: string): void {
    const [verb, arg] = what.split(' ') as [string, string | undefined];
    switch (verb) {
      case 'k':
        this.#sample();
        return;
      case 'u':
        this.#bytes += Number(arg);
        if (this.#window && this.#bytes > this.#window.peak) this.#window.peak = this.#bytes;
        this.#sample();
        return;
      case 'f':
        this.#bytes -= Number(arg);
        this.#sample();
        return;
      case 'start':
        this.lastStarted = Number(arg);
        this.#window = { index: Number(arg), base: this.#bytes, tensorPeak: this.#bytes, peak: this.#bytes };
        return;
      case 'end': {
        const w = this.#window;
        if (w === undefined || w.index !== Number(arg)) return;
        this.results.set(w.index, {
          tensorPeakBytes: w.tensorPeak - w.base,
          peakBytes: w.peak - w.base,
          leftoverBytes: this.#bytes - w.base,
        });
        this.#window = undefined;
      }
    }
  }
}

/**
 * Runs the steps on the tensorflow backend in one child process; one measurement per step, in
 * order. A step that crashes the process (TensorFlow aborts on some kernels) fails alone: the
 * steps after it run in a new process.
 */
export async function measureOnTensorflow(
  steps: TensorflowStepRequest['steps'],
): Promise<TensorflowMeasurement[]> {
  const out: TensorflowMeasurement[] = [];
  while (out.length < steps.length) {
    const from = out.length;
    const run = await runChild(steps.slice(from));
    out.push(...run.measurements);
    if (run.crashed !== undefined) out.push({ ok: false, error: run.crashed.error });
  }
  return out;
}

interface ChildRun {
  /** Measurements of the steps before a crash (all of them when there was none). */
  readonly measurements: TensorflowMeasurement[];
  readonly crashed?: { readonly error: string };
}

/**
 * One child process over `steps`. Its stderr goes to a file, not a pipe: Node makes its pipes
 * non-blocking, and TensorFlow's log lines written while the pipe is full are lost (measured:
 * hundreds per run).
 */
async function runChild(steps: TensorflowStepRequest['steps']): Promise<ChildRun> {
  const dir = mkdtempSync(join(tmpdir(), 'tilestream-tf-memory-'));
  try {
    const logPath = join(dir, 'stderr.log');
    const fd = openSync(logPath, 'w');
    let exit: { code: number | null; signal: NodeJS.Signals | null };
    const results = new Map<number, TensorflowStepResult>();
    try {
      const script = fileURLToPath(new URL('./tensorflow-child.ts', import.meta.url));
      const child = spawn(process.execPath, [script], {
        stdio: ['pipe', 'pipe', fd],
        // log_memory's lines are INFO messages at verbosity 2 of that one file.
        // LIBC_FATAL_STDERR_: glibc's last words on a crash go to stderr, not the terminal.
        env: {
          ...process.env,
          TF_CPP_VMODULE: 'log_memory=2',
          TF_CPP_MIN_LOG_LEVEL: '0',
          LIBC_FATAL_STDERR_: '1',
        },
      });
      const { stdin, stdout } = child as unknown as { stdin: Writable; stdout: Readable };
      createInterface({ input: stdout }).on('line', (line) => {
        try {
          const r = JSON.parse(line) as TensorflowStepResult;
          results.set(r.index, r);
        } catch {
          // not a result line
        }
      });
      stdin.end(JSON.stringify({ steps } satisfies TensorflowStepRequest));
      exit = await new Promise((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (code, signal) => resolve({ code, signal }));
      });
    } finally {
      closeSync(fd);
    }
    const log = new AllocationLog();
    const tail: string[] = [];
    for await (const line of createInterface({ input: createReadStream(logPath) })) {
      log.line(line);
      // The last lines that are neither the log nor TensorFlow's INFO/WARNING chatter: why it died.
      if (
        !line.startsWith(MARK) &&
        !/^[IW]\d{4} /.test(line) &&
        !line.startsWith('To enable the following')
      ) {
        tail.push(line);
        if (tail.length > 3) tail.shift();
      }
    }
    const lost =
      log.unmatchedFrees > 0
        ? `TensorFlow's allocation log lost lines (${log.unmatchedFrees} frees of buffers never allocated)`
        : undefined;
    const measurements: TensorflowMeasurement[] = [];
    for (let i = 0; i < steps.length; i++) {
      const r = results.get(i);
      const device = log.results.get(i);
      if (r === undefined || device === undefined) break;
      if (!r.ok) measurements.push({ ok: false, error: r.error });
      else if (lost !== undefined) measurements.push({ ok: false, error: lost });
      else
        measurements.push({ ok: true, peakBytes: r.peakBytes, bufferPeakBytes: r.bufferPeakBytes, device });
    }
    if (measurements.length === steps.length) return { measurements };
    const why = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    return {
      measurements,
      crashed: { error: `the measuring process died (${why}) in this step: ${tail.join(' | ').slice(-400)}` },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
