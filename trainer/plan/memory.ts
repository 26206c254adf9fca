// The memory model: predicted peak memory of one training step, streamed with a given tile or
// conventional on the whole image, with a breakdown by term. The step is simulated over shapes
// (sim-engine.ts) exactly as trainer/streaming/network.ts runs it: tiled forward without a tape
// that stitches F, the head with its own tape on F giving dL/dF, then per tile a recomputed
// forward with the tape and its backward on the tile's slice of dL/dF, summing parameter
// gradients. Only the last tile of the forward (the most of F stitched) and one backward tile are
// simulated: every tile has the same shape. Pure: no TensorFlow import.

import { axisProfile, axisSizes, GeometryError, type TileGrid, tileGrid } from '../streaming/geometry.ts';
import { type Body, inferChannels, parameterShapes } from '../streaming/graph.ts';
import { type Network, networkParameterShapes } from '../streaming/network-shape.ts';
import { type BackendName, createEngine } from './sim-backends.ts';
import { headForward, loss, runBody } from './sim-body.ts';
import {
  BODY_CONTEXT,
  type Breakdown,
  emptyBreakdown,
  HEAD_CONTEXT,
  type SimEngine,
  type SimTensor,
  sizeOf,
  TERMS,
  type Term,
} from './sim-engine.ts';
import { add, concat, pad4, slice, zerosLike } from './sim-ops.ts';

export type { BackendName } from './sim-backends.ts';
export { BACKEND_NAMES } from './sim-backends.ts';
export type { Breakdown, Term } from './sim-engine.ts';
export { TERMS } from './sim-engine.ts';
export { networkParameterShapes };

/** The network as the planner sees it: structurally the same as streaming/network.ts Network. */
/** The network the planner sizes: the executors' own description (pure data). */
export type PlanNetwork = Network;

export type OptimizerName = 'none' | 'sgd' | 'momentum' | 'adam';
export const OPTIMIZERS: readonly OptimizerName[] = ['none', 'sgd', 'momentum', 'adam'];

/** State tensors per parameter (Adam: two moments; SGD with momentum: one velocity). */
export const OPTIMIZER_SLOTS: Readonly<Record<OptimizerName, number>> = {
  none: 0,
  sgd: 0,
  momentum: 1,
  adam: 2,
};
// Parameter-sized temporaries alive at once while tfjs's optimizers update one variable
// (tfjs-core optimizers/*.ts applyGradients: Adam builds ~10 intermediates per variable in a tidy).
const OPTIMIZER_TEMPORARIES: Readonly<Record<OptimizerName, number>> = {
  none: 0,
  sgd: 2,
  momentum: 4,
  adam: 10,
};

/** An optimizer as the StreamingTrainingJob spells it. */
export function optimizerFromSpec(spec: { type: string; momentum?: number } | undefined): OptimizerName {
  if (spec === undefined) return 'none';
  if (spec.type === 'adam') return 'adam';
  if (spec.type === 'sgd') return (spec.momentum ?? 0.9) > 0 ? 'momentum' : 'sgd';
  throw new Error(`unknown optimizer '${spec.type}'; expected sgd or adam`);
}

export type Dtype = 'float32' | 'float16';
export const DTYPES: readonly Dtype[] = ['float32', 'float16'];

/**
 * Where the image lives during a streamed step. 'uint8': decoded bytes (H·W·C), each tile made
 * float32 when read, as the paper's pipeline does. 'float32': one float tensor of the whole image
 * that tiles are sliced from (executor.ts tensorSource). 'none': tiles come from elsewhere.
 */
export type ImageStorage = 'uint8' | 'float32' | 'none';

export interface MemoryOptions {
  /** Backend whose kernels are modelled; 'tensorflow' is tfjs-node(-gpu). Default 'tensorflow'. */
  readonly backend?: BackendName;
  readonly dtype?: Dtype;
  readonly optimizer?: OptimizerName;
  readonly imageStorage?: ImageStorage;
  /** Also compute dL/dimage (saliency): the image tile joins the gradient targets. */
  readonly inputGrad?: boolean;
  /**
   * What a buffer is. 'memory' (default): the backend's memory, in which TensorFlow backs a
   * Reshape or a same-type Cast with its input's buffer. 'engine': tfjs's data ids, one buffer
   * each (what plan-measure's bufferPeakBytes counts). The two differ on tensorflow only.
   */
  readonly accounting?: 'memory' | 'engine';
  /** Debugging: called after every simulated kernel (compare with tf.profile's kernel list). */
  readonly onKernel?: (name: string, numBytes: number) => void;
}

export interface MemoryPrediction {
  /** bufferPeakBytes + workspaceBytes: the device memory the step needs, compared with the budget. */
  readonly requiredBytes: number;
  /** Peak of distinct tensor buffers (a reshape, or a clone the tape saves, shares its input's). */
  readonly bufferPeakBytes: number;
  /** Backend memory outside the tensors (kernel workspace, wasm heap overhead): an estimate, see workspaceEstimate. */
  readonly workspaceBytes: number;
  /** The phase of the buffer peak: forward, head, backward, optimizer (streamed) or step (conventional). */
  readonly peakPhase: string;
  /** What holds the memory at the peak, by term (buffers, plus backendWorkspace); sums to requiredBytes. */
  readonly breakdown: Breakdown;
  /** The buffer peak of each phase. */
  readonly phases: Readonly<Record<string, number>>;
  /**
   * Peak of tfjs's own accounting (numBytes after each kernel), what tf.profile's peakBytes
   * reports. It counts every handle, so saved clones and reshapes count again; higher than the
   * buffers on cpu and tensorflow.
   */
  readonly peakBytes: number;
  /** The tf.profile-style peak by term; sums to peakBytes. */
  readonly tfjsBreakdown: Breakdown;
  /** Distinct bytes the tape keeps for backward, per input pixel of the streamed body (at this tile or image). */
  readonly savedBytesPerPixel: number;
}

export interface StreamedPrediction extends MemoryPrediction {
  readonly tile: readonly [number, number];
  readonly tiles: number;
  /** Tile input area processed / image area (tileGrid.areaFactor). */
  readonly areaFactor: number;
  /** Predicted compute relative to conventional training: forward A + recompute A + backward 2A over 3. */
  readonly timeRatio: number;
}

interface Resolved {
  backend: BackendName;
  floatBytes: number;
  optimizer: OptimizerName;
  imageStorage: ImageStorage;
  inputGrad: boolean;
  countDataIds: boolean;
}

function resolve(o: MemoryOptions): Resolved {
  return {
    backend: o.backend ?? 'tensorflow',
    floatBytes: (o.dtype ?? 'float32') === 'float16' ? 2 : 4,
    optimizer: o.optimizer ?? 'none',
    imageStorage: o.imageStorage ?? 'uint8',
    inputGrad: o.inputGrad ?? false,
    countDataIds: o.accounting === 'engine',
  };
}

export function parameterCount(net: PlanNetwork): number {
  let n = 0;
  for (const s of networkParameterShapes(net).values()) n += sizeOf(s);
  return n;
}

/** Parameters (as variables) and optimizer slots: alive through the whole step. */
function persistent(sim: SimEngine, net: PlanNetwork, r: Resolved): Map<string, SimTensor> {
  const params = new Map<string, SimTensor>();
  for (const [name, shape] of networkParameterShapes(net)) {
    params.set(name, sim.variable(shape, 'parameters'));
    for (let i = 0; i < OPTIMIZER_SLOTS[r.optimizer]; i++) sim.variable(shape, 'optimizerState');
  }
  return params;
}

/** Runs fn with every new tensor counted under `term`. */
function under<R>(sim: SimEngine, term: Term, fn: () => R): R {
  const prev = sim.ctx;
  sim.ctx = { value: term, saved: term, grad: term, work: term };
  try {
    return fn();
  } finally {
    sim.ctx = prev;
  }
}

function scoped(params: ReadonlyMap<string, SimTensor>, prefix: string): Map<string, SimTensor> {
  const out = new Map<string, SimTensor>();
  for (const [n, t] of params) if (n.startsWith(`${prefix}/`)) out.set(n.slice(prefix.length + 1), t);
  return out;
}

/** The optimizer's update: parameter-sized temporaries for the largest variable, next to all gradients. */
function optimizerUpdate(sim: SimEngine, params: ReadonlyMap<string, SimTensor>, r: Resolved): void {
  const k = OPTIMIZER_TEMPORARIES[r.optimizer];
  if (k === 0) return;
  sim.phase = 'optimizer';
  let largest: SimTensor | undefined;
  for (const p of params.values()) if (!largest || p.bytes > largest.bytes) largest = p;
  if (!largest) return;
  const big = largest;
  sim.tidy(() => {
    for (let i = 0; i < k; i++) {
      sim.make(big.shape, 'float32', 'workspace');
      sim.snapshot();
    }
    return undefined;
  });
}

function finish(sim: SimEngine, net: PlanNetwork, r: Resolved, tileArea: number): MemoryPrediction {
  const workspaceBytes = workspaceEstimate(net.body, r.backend, tileArea, r.floatBytes, sim.peakBuffers);
  return {
    requiredBytes: sim.peakBuffers + workspaceBytes,
    bufferPeakBytes: sim.peakBuffers,
    workspaceBytes,
    peakPhase: sim.peakBufferPhase,
    breakdown: { ...sim.peakBufferByTerm, backendWorkspace: workspaceBytes },
    phases: Object.fromEntries(sim.bufferPhasePeaks),
    peakBytes: sim.peak.bytes,
    tfjsBreakdown: sim.peak.byTerm,
    savedBytesPerPixel: sim.bufferTermPeaks.savedForBackward / tileArea,
  };
}

/**
 * The wasm heap's high-water mark over the buffer peak: the allocator's fragmentation, the
 * heap's geometric growth steps (Emscripten grows by 20%) and XNNPACK's scratch (indirection
 * buffers, packed weights). Measured (heap − its initial 16 MiB) / buffers = 1.23–1.70 on the
 * built-in bodies from 1024² to 8192² (`tilestream bench memory`); 1.75 bounds them all.
 */
export const WASM_HEAP_FACTOR = 1.75;
/** The wasm module's heap before any tensor (measured: 16 MiB). */
export const WASM_HEAP_INITIAL_BYTES = 16 * 2 ** 20;

/**
 * Memory a backend uses beyond the tensors' buffers. tensorflow (cuDNN): convolution algorithms
 * may take a workspace; we reserve the largest convolution's input + output at the tile size (an
 * estimate: no GPU here to measure). wasm: the heap beyond the buffers, its initial size plus
 * (WASM_HEAP_FACTOR − 1) × buffers.
 * cpu: tensors are JavaScript typed arrays; kernel scratch is small.
 */
export function workspaceEstimate(
  body: Body,
  backend: BackendName,
  tileArea: number,
  floatBytes: number,
  bufferPeak: number,
): number {
  if (backend === 'wasm') return WASM_HEAP_INITIAL_BYTES + Math.ceil((WASM_HEAP_FACTOR - 1) * bufferPeak);
  if (backend !== 'tensorflow') return 0;
  const channels = inferChannels(body);
  const stride = axisProfile(body, 0).stride;
  const strideW = axisProfile(body, 1).stride;
  let worst = 0;
  for (const node of body.nodes) {
    if (node.op.kind !== 'conv2d') continue;
    const input = node.inputs[0] as string;
    const inPx = tileArea / ((stride.get(input) as number) * (strideW.get(input) as number));
    const outPx = tileArea / ((stride.get(node.name) as number) * (strideW.get(node.name) as number));
    const bytes = (inPx * (channels.get(input) as number) + outPx * node.op.filters) * floatBytes;
    worst = Math.max(worst, bytes);
  }
  return Math.ceil(worst);
}

/** Predicted peak memory of one streamed training step (network.ts streamedStep) on image [H, W] with tile [th, tw]. */
export function predictStreamed(
  net: PlanNetwork,
  image: readonly [number, number],
  tile: readonly [number, number],
  options: MemoryOptions = {},
): StreamedPrediction {
  const r = resolve(options);
  const grid = tileGrid(net.body, image, tile);
  checkTrunk(net, grid, image);
  const sim = createEngine(r.backend, r.floatBytes, r.countDataIds);
  if (options.onKernel) sim.onKernel = options.onKernel;
  const C = net.body.inputChannels;
  const Cf = inferChannels(net.body).get(net.body.output) as number;
  const params = persistent(sim, net, r);
  const bodyParams = scoped(params, 'body');
  const bodyNames = [...parameterShapes(net.body).keys()];
  const bodyTensors = bodyNames.map((n) => bodyParams.get(n) as SimTensor);
  const th = grid.rows.tileLength;
  const tw = grid.cols.tileLength;
  const imageT =
    r.imageStorage === 'float32'
      ? sim.make([1, image[0], image[1], C], 'float32', 'image')
      : r.imageStorage === 'uint8'
        ? sim.make([1, image[0], image[1], C], 'uint8', 'image')
        : undefined;
  const readTile = (): SimTensor =>
    under(sim, 'tile', () =>
      r.imageStorage === 'float32' && imageT
        ? slice(sim, imageT, [0, 0, 0, 0], [1, th, tw, C])
        : sim.make([1, th, tw, C], 'float32'),
    );

  // Forward: the last tile runs with F stitched but for its own block (the most F ever held
  // while a tile runs), then the row concat and the final concat, as streamForward does.
  sim.phase = 'forward';
  const { rowsOwned, colsOwned } = ownedLengths(grid);
  const lastRowH = rowsOwned[rowsOwned.length - 1] as number;
  const lastColW = colsOwned[colsOwned.length - 1] as number;
  const Fh = grid.rows.outputLength;
  const Fw = grid.cols.outputLength;
  const prevRows =
    grid.rows.tiles.length > 1 ? sim.make([1, Fh - lastRowH, Fw, Cf], 'float32', 'featureMap') : undefined;
  const rowBlocks =
    grid.cols.tiles.length > 1
      ? sim.make([1, lastRowH, Fw - lastColW, Cf], 'float32', 'featureMap')
      : undefined;
  const x = readTile();
  const last = grid.tiles[grid.tiles.length - 1] as (typeof grid.tiles)[number];
  const block = sim.tidy(() =>
    slice(
      sim,
      runBody(sim, net.body, bodyParams, x),
      [0, last.row.owned.lo - last.row.outStart, last.col.owned.lo - last.col.outStart, 0],
      [1, lastRowH, lastColW, -1],
    ),
  );
  sim.relabel(block, 'featureMap');
  sim.dispose(x);
  let row = block;
  if (rowBlocks) {
    row = under(sim, 'featureMap', () => concat(sim, [rowBlocks, block], 2));
    sim.dispose(rowBlocks);
    sim.dispose(block);
  }
  let F = row;
  if (prevRows) {
    F = under(sim, 'featureMap', () => concat(sim, [prevRows, row], 1));
    sim.dispose(prevRows);
    sim.dispose(row);
  }

  // Head: trunk, pooling and dense on F with their own tape; dL/dF and head gradients out.
  sim.phase = 'head';
  sim.ctx = HEAD_CONTEXT;
  const headNames = [...params.keys()].filter((n) => !n.startsWith('body/'));
  const headTensors = headNames.map((n) => params.get(n) as SimTensor);
  const head = sim.tidy(() =>
    sim.gradients(
      () => loss(sim, headForward(sim, net, params, F)),
      [F, ...headTensors],
      null,
      (a, b) => add(sim, a, b),
    ),
  );
  sim.ctx = BODY_CONTEXT;
  const dF = head.grads[0] as SimTensor;
  sim.relabel(dF, 'featureMapGradient');
  for (const g of head.grads.slice(1)) sim.relabel(g, 'parameterGradients');
  sim.dispose(head.value);
  sim.dispose(F);

  // Backward: running sums, then one tile (the one with the largest owned block).
  sim.phase = 'backward';
  const sums = under(sim, 'parameterGradients', () => bodyTensors.map((p) => zerosLike(sim, p)));
  const ownedH = Math.max(...rowsOwned);
  const ownedW = Math.max(...colsOwned);
  const outH = last.row.outLength;
  const outW = last.col.outLength;
  const xb = readTile();
  const grads = sim.tidy(() => {
    const dy = under(sim, 'featureMapGradient', () =>
      pad4(sim, slice(sim, dF, [0, 0, 0, 0], [1, ownedH, ownedW, Cf]), [0, outH - ownedH, 0, outW - ownedW]),
    );
    const xs = r.inputGrad ? [xb, ...bodyTensors] : bodyTensors;
    return sim.tidy(
      () =>
        sim.gradients(
          () => runBody(sim, net.body, bodyParams, xb),
          xs,
          dy,
          (a, b) => add(sim, a, b),
        ).grads,
    );
  });
  sim.dispose(xb);
  const paramGrads = r.inputGrad ? grads.slice(1) : grads;
  if (r.inputGrad) sim.dispose(grads[0]);
  paramGrads.forEach((g, i) => {
    const next = under(sim, 'parameterGradients', () => add(sim, sums[i] as SimTensor, g));
    sim.dispose(sums[i]);
    sim.dispose(g);
    sums[i] = next;
  });
  sim.dispose(dF);
  optimizerUpdate(sim, params, r);
  const base = finish(sim, net, r, th * tw);
  return {
    ...base,
    tile: [th, tw],
    tiles: grid.tiles.length,
    areaFactor: grid.areaFactor,
    timeRatio: (4 * grid.areaFactor) / 3,
  };
}

/** The layers after the body must keep a non-empty output on the stitched feature map. */
function checkTrunk(net: PlanNetwork, grid: TileGrid, image: readonly [number, number]): void {
  if (!net.trunk) return;
  for (const [axis, n] of [
    [0, grid.rows.outputLength],
    [1, grid.cols.outputLength],
  ] as const) {
    try {
      axisSizes(net.trunk, axis, n);
    } catch (e) {
      if (!(e instanceof GeometryError)) throw e;
      throw new GeometryError(
        `a ${image[0]}×${image[1]} image is too small for the layers after the streamed body ` +
          `(its ${n}-pixel feature map ${axis === 0 ? 'height' : 'width'} vanishes: ${e.message}); use a larger image or a later body end`,
      );
    }
  }
}

function ownedLengths(grid: TileGrid): { rowsOwned: number[]; colsOwned: number[] } {
  return {
    rowsOwned: grid.rows.tiles.map((t) => t.owned.hi - t.owned.lo + 1),
    colsOwned: grid.cols.tiles.map((t) => t.owned.hi - t.owned.lo + 1),
  };
}

/** Predicted peak memory of conventional whole-image training (network.ts conventionalStep). */
export function predictConventional(
  net: PlanNetwork,
  image: readonly [number, number],
  options: MemoryOptions = {},
): MemoryPrediction {
  const r = resolve(options);
  // Validates the image against the body and the trunk (GeometryError when a layer would vanish).
  checkTrunk(net, tileGrid(net.body, image, image), image);
  const sim = createEngine(r.backend, r.floatBytes, r.countDataIds);
  if (options.onKernel) sim.onKernel = options.onKernel;
  const params = persistent(sim, net, r);
  const names = [...params.keys()];
  const tensors = names.map((n) => params.get(n) as SimTensor);
  // The whole image as the float32 input of the network.
  const x = sim.make([1, image[0], image[1], net.body.inputChannels], 'float32', 'image');
  sim.phase = 'step';
  const { value, grads } = sim.tidy(() =>
    sim.gradients(
      () => {
        const features = runBody(sim, net.body, scoped(params, 'body'), x);
        sim.ctx = HEAD_CONTEXT;
        try {
          return loss(sim, headForward(sim, net, params, features));
        } finally {
          sim.ctx = BODY_CONTEXT;
        }
      },
      r.inputGrad ? [x, ...tensors] : tensors,
      null,
      (a, b) => add(sim, a, b),
    ),
  );
  for (const g of grads) sim.relabel(g, 'parameterGradients');
  sim.dispose(value);
  if (r.inputGrad) sim.dispose(grads[0]);
  optimizerUpdate(sim, params, r);
  return finish(sim, net, r, image[0] * image[1]);
}

/** Compute overhead of streaming with this tile: A = tile area processed / image area, time ≈ 4A/3. */
export function overheadFactor(
  net: PlanNetwork,
  image: readonly [number, number],
  tile: readonly [number, number],
): { areaFactor: number; timeRatio: number; tiles: number } {
  const grid = tileGrid(net.body, image, tile);
  return { areaFactor: grid.areaFactor, timeRatio: (4 * grid.areaFactor) / 3, tiles: grid.tiles.length };
}

/** The term that holds the most bytes in a breakdown. */
export function dominantTerm(b: Breakdown): Term {
  let best: Term = TERMS[0];
  for (const t of TERMS) if (b[t] > b[best]) best = t;
  return best;
}

/** Human names of the terms, for tables. */
export const TERM_LABELS: Readonly<Record<Term, string>> = {
  parameters: 'parameters',
  optimizerState: 'optimizer state',
  parameterGradients: 'parameter gradients',
  image: 'image buffer',
  tile: 'input tile',
  activations: 'activations (transient)',
  savedForBackward: 'saved for backward (tape)',
  activationGradients: 'activation gradients',
  workspace: 'kernel workspace',
  featureMap: 'feature map F',
  featureMapGradient: 'gradient dL/dF',
  head: 'head (trunk, pooling, dense)',
  backendWorkspace: 'backend workspace (estimate)',
};

export { emptyBreakdown };
