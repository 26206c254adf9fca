// A symbolic TensorFlow.js engine: tensors are shapes without data, and every op only records
// what the real engine would allocate, keep and free. It follows tfjs-core 4.22's bookkeeping
// exactly (engine.ts, tape.ts), because the planner predicts what `tf.profile` and the backend
// really hold, and tfjs keeps far more than a hand count suggests:
// - `numBytes` counts every tensor *handle*: a reshape, a clone or a tensor saved for the
//   gradient (`keep(clone(x))`) adds its full size again, even when it shares the buffer.
// - the tape saves what each gradient config names (inputsToSave/outputsToSave) as kept clones,
//   freed only when the whole backward pass is over.
// - backprop keeps the gradient of every intermediate tensor until the end of the backward tidy.
// - `tf.profile` samples `numBytes` only after each kernel, so peaks are taken there too.
// Pure: no TensorFlow import (the operator uses the planner).

/** The terms of the memory breakdown. Every simulated tensor belongs to exactly one. */
export const TERMS = [
  'parameters',
  'optimizerState',
  'parameterGradients',
  'image',
  'tile',
  'activations',
  'savedForBackward',
  'activationGradients',
  'workspace',
  'featureMap',
  'featureMapGradient',
  'head',
  // Memory the backend uses outside tfjs's tensors (estimated by memory.ts; never simulated).
  'backendWorkspace',
] as const;
export type Term = (typeof TERMS)[number];
export type Breakdown = Record<Term, number>;

export function emptyBreakdown(): Breakdown {
  return Object.fromEntries(TERMS.map((t) => [t, 0])) as Breakdown;
}

/** 'uint8' stands for an image held as bytes (tfjs has no uint8 tensors; the trainer keeps it on the host). */
export type SimDtype = 'float32' | 'int32' | 'bool' | 'uint8';

interface SimBuffer {
  readonly bytes: number;
  /** Live handles on this buffer. */
  readonly handles: SimTensor[];
  /** The handle whose term the buffer counts under in the buffer breakdown. */
  owner: SimTensor | undefined;
}

// A buffer owned by one of these terms keeps it when other handles alias it (the tape's clone of
// a parameter is still the parameter); other buffers go to their newest handle (a saved clone
// outlives the activation it copies, so the memory is "saved for backward").
const STICKY: ReadonlySet<Term> = new Set<Term>([
  'parameters',
  'optimizerState',
  'parameterGradients',
  'image',
  'tile',
  'featureMap',
  'featureMapGradient',
]);

export interface SimTensor {
  readonly id: number;
  readonly shape: readonly number[];
  readonly dtype: SimDtype;
  readonly bytes: number;
  readonly buffer: SimBuffer;
  term: Term;
  kept: boolean;
  disposed: boolean;
  /** A variable: never tracked by scopes; its gradient is a parameter gradient. */
  readonly variable: boolean;
}

/** Where new tensors go in the breakdown while a piece of code runs. */
export interface Context {
  /** Outputs of forward ops. */
  readonly value: Term;
  /** Clones the tape keeps for backward. */
  readonly saved: Term;
  /** Gradients of intermediate tensors (kept until the backward pass ends). */
  readonly grad: Term;
  /** Temporaries inside gradient functions and composed kernels. */
  readonly work: Term;
}

export const BODY_CONTEXT: Context = {
  value: 'activations',
  saved: 'savedForBackward',
  grad: 'activationGradients',
  work: 'workspace',
};
export const HEAD_CONTEXT: Context = { value: 'head', saved: 'head', grad: 'head', work: 'head' };

export type Attrs = Readonly<Record<string, unknown>>;
export type Inputs = Readonly<Record<string, SimTensor>>;

export interface OutputSpec {
  readonly shape: readonly number[];
  readonly dtype?: SimDtype;
}

/** A gradient config, as tfjs-core's: what the tape saves and how dx is computed from dy. */
export interface GradConfig {
  readonly inputsToSave?: readonly string[];
  readonly outputsToSave?: readonly boolean[];
  readonly saveAllInputs?: boolean;
  /** Runs eagerly when backprop reaches the node; returns one thunk per input (run in a tidy). */
  readonly gradFunc: (
    sim: SimEngine,
    dy: readonly SimTensor[],
    saved: readonly SimTensor[],
    attrs: Attrs,
  ) => Record<string, () => SimTensor>;
}

/** A kernel that a backend implements with other tfjs ops (visible to the engine). */
export type CompositeKernel = (sim: SimEngine, inputs: Inputs, attrs: Attrs) => SimTensor;

/** What the engine needs to know about a backend's kernels. */
export interface BackendModel {
  readonly name: string;
  /** Kernels whose output shares the input's buffer (a new handle, no copy). */
  readonly aliasing: ReadonlySet<string>;
  /**
   * Kernels whose output is a tensor of its own to the engine (a new data id) while the runtime
   * beneath backs it with the input's memory when the dtype is the same: TensorFlow forwards the
   * buffer of a Reshape and of a Cast to the same type. Buffers count these as shared, unless the
   * engine counts data ids (what test/plan's engine-level measurement sees).
   */
  readonly forwarding?: ReadonlySet<string>;
  /** Kernels composed of tfjs ops on this backend (the project's kernels, trainer/backend/kernels). */
  readonly composites: Readonly<Record<string, CompositeKernel>>;
}

interface TapeNode {
  readonly name: string;
  readonly inputs: Inputs;
  readonly outputs: readonly SimTensor[];
  readonly saved: readonly SimTensor[];
  readonly attrs: Attrs;
  readonly ctx: Context;
}

export interface Peak {
  /** numBytes at the peak: what tf.profile's peakBytes reports. */
  readonly bytes: number;
  readonly byTerm: Breakdown;
  /** The phase label that was active at the peak. */
  readonly phase: string;
}

type Container = SimTensor | readonly Container[] | { readonly [k: string]: Container } | undefined | number;

export class SimEngine {
  readonly backend: BackendModel;
  /** Bytes of one float element: 4, or 2 to plan for half precision on a GPU. */
  readonly floatBytes: number;
  readonly #grads: ReadonlyMap<string, GradConfig>;
  #nextId = 0;
  numBytes = 0;
  /** Bytes of distinct buffers alive (handles that alias a buffer count once). */
  bufferBytes = 0;
  /** Distinct buffers by term: a buffer counts under its newest live handle (a saved clone outlives the activation). */
  readonly bufferByTerm: Breakdown = emptyBreakdown();
  readonly byTerm: Breakdown = emptyBreakdown();
  peak: Peak = { bytes: 0, byTerm: emptyBreakdown(), phase: '' };
  peakBuffers = 0;
  peakBufferByTerm: Breakdown = emptyBreakdown();
  peakBufferPhase = '';
  /** The highest buffer total seen in each phase. */
  readonly bufferPhasePeaks = new Map<string, number>();
  readonly bufferTermPeaks: Breakdown = emptyBreakdown();
  /** The highest numBytes seen in each phase. */
  readonly phasePeaks = new Map<string, number>();
  /** The highest value each term reached (at kernel boundaries). */
  readonly termPeaks: Breakdown = emptyBreakdown();
  ctx: Context = BODY_CONTEXT;
  phase = '';
  #scopes: SimTensor[][] = [[]];
  #tape: TapeNode[] | null = null;
  #gradientDepth = 0;
  #kernelDepth = 0;
  /** Called after every kernel with its name and numBytes (for comparing with tf.profile's kernel list). */
  onKernel?: (name: string, numBytes: number) => void;
  /** True while a gradient function runs: new tensors are workspace. */
  #inGradient = false;

  /** Buffers are the engine's data ids (a forwarded output counts as a buffer of its own). */
  readonly countDataIds: boolean;

  constructor(
    backend: BackendModel,
    floatBytes: number,
    grads: ReadonlyMap<string, GradConfig>,
    countDataIds = false,
  ) {
    this.backend = backend;
    this.floatBytes = floatBytes;
    this.#grads = grads;
    this.countDataIds = countDataIds;
  }

  /** Whether kernel `name` hands out its input's buffer for an output of `dtype`. */
  #shares(name: string, input: SimTensor, dtype: SimDtype): boolean {
    if (this.backend.aliasing.has(name)) return true;
    return !this.countDataIds && input.dtype === dtype && this.backend.forwarding?.has(name) === true;
  }

  bytesPerElement(dtype: SimDtype): number {
    return dtype === 'bool' || dtype === 'uint8' ? 1 : dtype === 'int32' ? 4 : this.floatBytes;
  }

  #register(shape: readonly number[], dtype: SimDtype, buffer: SimBuffer | undefined, variable: boolean) {
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = size * this.bytesPerElement(dtype);
    const term = this.#inGradient ? this.ctx.work : this.ctx.value;
    const buf: SimBuffer = buffer ?? { bytes, handles: [], owner: undefined };
    const t: SimTensor = {
      id: this.#nextId++,
      shape: [...shape],
      dtype,
      bytes,
      buffer: buf,
      term,
      kept: false,
      disposed: false,
      variable,
    };
    const owner = buf.owner;
    if (owner === undefined) {
      this.bufferBytes += bytes;
      this.bufferByTerm[term] += bytes;
      buf.owner = t;
    } else if (!STICKY.has(owner.term)) {
      this.#moveBuffer(buf, owner.term, term);
      buf.owner = t;
    }
    buf.handles.push(t);
    this.numBytes += bytes;
    this.byTerm[term] += bytes;
    if (!variable) this.#scopes[this.#scopes.length - 1]?.push(t);
    if (owner === undefined) this.#bufferSnapshot();
    return t;
  }

  #moveBuffer(buf: SimBuffer, from: Term, to: Term): void {
    if (from === to) return;
    this.bufferByTerm[from] -= buf.bytes;
    this.bufferByTerm[to] += buf.bytes;
  }

  /** Buffers are sampled at every allocation, as the measurement (a hook on new data ids) does. */
  #bufferSnapshot(): void {
    if (this.bufferBytes > (this.bufferPhasePeaks.get(this.phase) ?? 0)) {
      this.bufferPhasePeaks.set(this.phase, this.bufferBytes);
    }
    for (const t of TERMS)
      if (this.bufferByTerm[t] > this.bufferTermPeaks[t]) this.bufferTermPeaks[t] = this.bufferByTerm[t];
    if (this.bufferBytes > this.peakBuffers) {
      this.peakBuffers = this.bufferBytes;
      this.peakBufferByTerm = { ...this.bufferByTerm };
      this.peakBufferPhase = this.phase;
    }
  }

  /** A new tensor with its own buffer (tf.tensor / a kernel output). No snapshot, as in tfjs. */
  make(shape: readonly number[], dtype: SimDtype = 'float32', term?: Term): SimTensor {
    const t = this.#register(shape, dtype, undefined, false);
    if (term !== undefined) this.relabel(t, term);
    return t;
  }

  /** A variable (parameter or optimizer slot): outside every scope, freed only explicitly. */
  variable(shape: readonly number[], term: Term): SimTensor {
    const t = this.#register(shape, 'float32', undefined, true);
    this.relabel(t, term);
    return t;
  }

  relabel(t: SimTensor, term: Term): void {
    if (t.disposed || t.term === term) return;
    this.byTerm[t.term] -= t.bytes;
    this.byTerm[term] += t.bytes;
    if (t.buffer.owner === t) this.#moveBuffer(t.buffer, t.term, term);
    t.term = term;
  }

  dispose(t: SimTensor | undefined): void {
    if (t === undefined || t.disposed) return;
    t.disposed = true;
    this.numBytes -= t.bytes;
    this.byTerm[t.term] -= t.bytes;
    const buf = t.buffer;
    buf.handles.splice(buf.handles.indexOf(t), 1);
    const next = buf.handles[buf.handles.length - 1];
    if (next === undefined) {
      this.bufferBytes -= buf.bytes;
      this.bufferByTerm[t.term] -= buf.bytes;
      buf.owner = undefined;
    } else if (buf.owner === t) {
      this.#moveBuffer(buf, t.term, next.term);
      buf.owner = next;
    }
  }

  /** Records the state after a kernel, as tf.profile does. */
  snapshot(): void {
    if (this.numBytes > (this.phasePeaks.get(this.phase) ?? 0))
      this.phasePeaks.set(this.phase, this.numBytes);
    for (const t of TERMS) if (this.byTerm[t] > this.termPeaks[t]) this.termPeaks[t] = this.byTerm[t];
    if (this.numBytes > this.peak.bytes) {
      this.peak = { bytes: this.numBytes, byTerm: { ...this.byTerm }, phase: this.phase };
    }
  }

  /** tf.tidy: tensors made inside and not returned (nor kept) are freed at the end. */
  tidy<R extends Container>(fn: () => R): R {
    this.#scopes.push([]);
    let result: R;
    try {
      result = fn();
    } finally {
      const scope = this.#scopes.pop() as SimTensor[];
      const keepIds = new Set<number>();
      collect(result!, (t) => keepIds.add(t.id));
      const parent = this.#scopes[this.#scopes.length - 1] as SimTensor[];
      for (const t of scope) {
        if (t.disposed || t.kept) continue;
        if (keepIds.has(t.id)) parent.push(t);
        else this.dispose(t);
      }
    }
    return result;
  }

  /**
   * Runs one kernel: makes its outputs (or runs the backend's composite), saves what the
   * gradient config asks for when the tape is recording, and snapshots.
   */
  runKernel(name: string, inputs: Inputs, outputs: readonly OutputSpec[], attrs: Attrs = {}): SimTensor[] {
    const tapeOn = this.#gradientDepth > 0 && this.#kernelDepth === 0;
    this.#kernelDepth++;
    let outs: SimTensor[];
    let saved: SimTensor[] = [];
    try {
      const composite = this.backend.composites[name];
      if (composite !== undefined) {
        const wasInGradient = this.#inGradient;
        this.#inGradient = true;
        try {
          outs = [composite(this, inputs, attrs)];
        } finally {
          this.#inGradient = wasInGradient;
        }
        for (const o of outs) this.relabel(o, wasInGradient ? this.ctx.work : this.ctx.value);
      } else {
        const first = Object.values(inputs)[0];
        outs = outputs.map((o) => {
          const dtype = o.dtype ?? 'float32';
          const alias =
            first !== undefined &&
            sizeOf(first.shape) === sizeOf(o.shape) &&
            this.#shares(name, first, dtype);
          return this.#register(o.shape, dtype, alias ? first.buffer : undefined, false);
        });
      }
      if (tapeOn) {
        const cfg = this.#grads.get(name);
        if (cfg !== undefined) {
          const toSave = cfg.saveAllInputs
            ? Object.values(inputs)
            : (cfg.inputsToSave ?? []).map((n) => inputs[n] as SimTensor);
          for (const [i, o] of outs.entries()) if (cfg.outputsToSave?.[i]) toSave.push(o);
          saved = toSave.map((t) => {
            const c = this.clone(t);
            c.kept = true;
            this.relabel(c, this.ctx.saved);
            return c;
          });
        }
      }
    } finally {
      this.#kernelDepth--;
    }
    if (tapeOn) this.#tape?.push({ name, inputs, outputs: outs, saved, attrs, ctx: this.ctx });
    this.snapshot();
    this.onKernel?.(name, this.numBytes);
    return outs;
  }

  /** One-output kernel. */
  kernel(name: string, inputs: Inputs, shape: readonly number[], attrs: Attrs = {}, dtype?: SimDtype) {
    return this.runKernel(name, inputs, [dtype ? { shape, dtype } : { shape }], attrs)[0] as SimTensor;
  }

  /** tf.clone / engine.clone: an Identity kernel. */
  clone(x: SimTensor): SimTensor {
    return this.kernel('Identity', { x }, x.shape, {}, x.dtype);
  }

  /** engine.gradients: forward under the tape in a tidy, then backprop in another tidy. */
  gradients(
    f: () => SimTensor,
    xs: readonly SimTensor[],
    dy: SimTensor | null,
    add: (a: SimTensor, b: SimTensor) => SimTensor,
  ): { value: SimTensor; grads: SimTensor[] } {
    if (this.#tape !== null) throw new Error('internal: nested gradients are not simulated');
    this.#gradientDepth++;
    this.#tape = [];
    let y: SimTensor;
    try {
      y = this.tidy(f);
    } finally {
      this.#gradientDepth--;
    }
    const tape = this.#tape;
    const filtered = filterTape(tape, xs, y);
    try {
      return this.tidy(() => {
        const acc = new Map<number, SimTensor>();
        acc.set(y.id, dy ?? this.make(y.shape));
        for (let i = filtered.length - 1; i >= 0; i--) {
          const node = filtered[i] as FilteredNode;
          const outer = this.ctx;
          this.ctx = node.ctx;
          this.#inGradient = true;
          try {
            const dys = node.outputs.map((o) => acc.get(o.id) ?? this.make(o.shape, o.dtype));
            const cfg = this.#grads.get(node.name);
            if (cfg === undefined) throw new Error(`internal: no simulated gradient for kernel ${node.name}`);
            const thunks = cfg.gradFunc(this, dys, node.saved, node.attrs);
            for (const [inputName, x] of Object.entries(node.pruned)) {
              const thunk = thunks[inputName];
              if (thunk === undefined)
                throw new Error(`internal: ${node.name} has no gradient for ${inputName}`);
              const dx = this.tidy(thunk);
              const gradTerm: Term = x.variable ? 'parameterGradients' : node.ctx.grad;
              this.relabel(dx, gradTerm);
              const cur = acc.get(x.id);
              if (cur === undefined) acc.set(x.id, dx);
              else {
                const sum = add(cur, dx);
                this.relabel(sum, gradTerm);
                acc.set(x.id, sum);
                this.dispose(cur);
              }
            }
          } finally {
            this.ctx = outer;
            this.#inGradient = false;
          }
        }
        const grads = xs.map((x) => acc.get(x.id) ?? this.make(x.shape));
        for (const node of tape) for (const s of node.saved) this.dispose(s);
        this.#tape = null;
        return { value: y, grads };
      });
    } finally {
      this.#tape = null;
    }
  }
}

interface FilteredNode extends TapeNode {
  /** Inputs that depend on some x: the only ones that get a gradient. */
  readonly pruned: Inputs;
}

/** tape.ts getFilteredNodesXToY: nodes on a path from some x to y, inputs pruned to those from x. */
function filterTape(tape: readonly TapeNode[], xs: readonly SimTensor[], y: SimTensor): FilteredNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  tape.forEach((node, i) => {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodeFromX.add(i);
    }
  });
  const leadsToY = new Set([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i] as TapeNode;
    if (node.outputs.some((o) => leadsToY.has(o.id))) {
      for (const t of Object.values(node.inputs)) leadsToY.add(t.id);
      nodeToY.add(i);
    }
  }
  const out: FilteredNode[] = [];
  tape.forEach((node, i) => {
    if (!nodeFromX.has(i) || !nodeToY.has(i)) return;
    const pruned: Record<string, SimTensor> = {};
    for (const [k, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) pruned[k] = t;
    out.push({ ...node, pruned });
  });
  return out;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function collect(c: Container, visit: (t: SimTensor) => void): void {
  if (c === undefined || typeof c === 'number') return;
  if (Array.isArray(c)) {
    for (const x of c) collect(x as Container, visit);
    return;
  }
  if ('buffer' in (c as object) && 'shape' in (c as object)) {
    visit(c as SimTensor);
    return;
  }
  for (const v of Object.values(c as Record<string, Container>)) collect(v, visit);
}
