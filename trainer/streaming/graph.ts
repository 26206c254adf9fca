// The streamed body as a small DAG of local operations. Pure data: no TensorFlow import, so the
// geometry, the planner and the operator can read it. Layout is NHWC; weights use the Keras layout
// [kh, kw, cin / groups, cout].

/** A value per spatial axis: [height, width]. */
export type Pair = readonly [number, number];
/** Explicit zero padding: [top, bottom, left, right]. */
export type Padding = readonly [number, number, number, number];

/** 'gelu' is the exact (erf) GELU of PyTorch's nn.GELU() and Keras's gelu(approximate=False). */
export type ActivationFn = 'relu' | 'relu6' | 'leakyRelu' | 'sigmoid' | 'tanh' | 'elu' | 'gelu' | 'linear';
export const ACTIVATIONS: readonly ActivationFn[] = [
  'relu',
  'relu6',
  'leakyRelu',
  'sigmoid',
  'tanh',
  'elu',
  'gelu',
  'linear',
];

export interface Conv2dOp {
  readonly kind: 'conv2d';
  readonly filters: number;
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly dilation: Pair;
  readonly padding: Padding;
  readonly groups: number;
  readonly bias: boolean;
}
export interface PoolOp {
  readonly kind: 'maxPool' | 'avgPool';
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly padding: Padding;
}
export interface ActivationOp {
  readonly kind: 'activation';
  readonly fn: ActivationFn;
  /** Negative slope of leakyRelu, or alpha of elu. */
  readonly alpha?: number;
}
/** Frozen batch normalisation: y = x·scale + shift per channel. */
export interface AffineOp {
  readonly kind: 'affine';
}
/**
 * Layer normalisation over the channels of each pixel (ConvNeXt's LayerNorm2d / channels_last
 * LayerNorm): y = (x − mean_c x) / √(var_c x + ε) · gamma + beta. Its statistics are per pixel, so
 * it is a pointwise map of the pixel's channel vector and streams exactly; gamma and beta [C] are
 * trainable like convolution weights (their gradient is a sum over pixels, which the tiles split).
 */
export interface LayerNormOp {
  readonly kind: 'layerNorm';
  readonly epsilon: number;
}
/** ConvNeXt's layer scale: y = x · gamma per channel, gamma [C] trainable, initialised to `init`. */
export interface LayerScaleOp {
  readonly kind: 'layerScale';
  readonly init: number;
}
/**
 * Channels [begin, begin + size) of the input (InceptionNeXt's torch.split into branches): a
 * pointwise selection, so it streams exactly; its gradient pads dy back with zeros.
 */
export interface ChannelSliceOp {
  readonly kind: 'channelSlice';
  readonly begin: number;
  readonly size: number;
}
/** Zero padding as a layer of its own (Keras ZeroPadding2D that could not be folded). */
export interface PadOp {
  readonly kind: 'pad';
  readonly padding: Padding;
}
export interface MergeOp {
  readonly kind: 'add' | 'concat';
}
export type Op =
  | Conv2dOp
  | PoolOp
  | ActivationOp
  | AffineOp
  | LayerNormOp
  | LayerScaleOp
  | ChannelSliceOp
  | PadOp
  | MergeOp;

export interface BodyNode {
  readonly name: string;
  readonly op: Op;
  /** Names of earlier nodes, or INPUT. */
  readonly inputs: readonly string[];
}

/** The name by which nodes refer to the image. */
export const INPUT = 'input';

/** A streamable body: nodes in topological order, one image input, one output. */
export interface Body {
  readonly name: string;
  readonly inputChannels: number;
  readonly nodes: readonly BodyNode[];
  readonly output: string;
}

/** Per-axis footprint of one node: effective kernel, stride and padding along height or width. */
export interface AxisFootprint {
  readonly k: number;
  readonly s: number;
  readonly pLo: number;
  readonly pHi: number;
}

export type Axis = 0 | 1;

export function footprint(op: Op, axis: Axis): AxisFootprint {
  switch (op.kind) {
    case 'conv2d':
      return {
        k: op.dilation[axis] * (op.kernel[axis] - 1) + 1,
        s: op.stride[axis],
        pLo: op.padding[2 * axis] as number,
        pHi: op.padding[2 * axis + 1] as number,
      };
    case 'maxPool':
    case 'avgPool':
      return {
        k: op.kernel[axis],
        s: op.stride[axis],
        pLo: op.padding[2 * axis] as number,
        pHi: op.padding[2 * axis + 1] as number,
      };
    case 'pad':
      return { k: 1, s: 1, pLo: op.padding[2 * axis] as number, pHi: op.padding[2 * axis + 1] as number };
    case 'activation':
    case 'affine':
    case 'layerNorm':
    case 'layerScale':
    case 'channelSlice':
    case 'add':
    case 'concat':
      return { k: 1, s: 1, pLo: 0, pHi: 0 };
  }
}

/** Thrown for a body that is not a well-formed streamable DAG. */
export class BodyError extends Error {
  override name = 'BodyError';
}

/** Checks structure and returns the channel count of every node (and of INPUT). */
export function inferChannels(body: Body): Map<string, number> {
  const channels = new Map<string, number>([[INPUT, body.inputChannels]]);
  if (!Number.isInteger(body.inputChannels) || body.inputChannels < 1) {
    throw new BodyError(
      `body '${body.name}': inputChannels must be a positive integer, got ${body.inputChannels}`,
    );
  }
  for (const node of body.nodes) {
    const where = `body '${body.name}', node '${node.name}'`;
    if (channels.has(node.name))
      throw new BodyError(`${where}: the name is used twice; node names must be unique`);
    if (node.inputs.length === 0) throw new BodyError(`${where}: has no inputs`);
    const inC = node.inputs.map((i) => {
      const c = channels.get(i);
      if (c === undefined) {
        throw new BodyError(`${where}: input '${i}' is not an earlier node; list nodes in topological order`);
      }
      return c;
    });
    const op = node.op;
    const single = (): number => {
      if (inC.length !== 1)
        throw new BodyError(`${where}: ${op.kind} takes exactly one input, got ${inC.length}`);
      return inC[0] as number;
    };
    switch (op.kind) {
      case 'conv2d': {
        const c = single();
        checkPositive(where, 'filters', op.filters);
        checkPositive(where, 'groups', op.groups);
        checkWindow(where, op.kernel, op.stride, op.padding);
        for (const d of op.dilation) checkPositive(where, 'dilation', d);
        if (c % op.groups !== 0 || op.filters % op.groups !== 0) {
          throw new BodyError(
            `${where}: groups=${op.groups} must divide both the input channels (${c}) and filters (${op.filters})`,
          );
        }
        channels.set(node.name, op.filters);
        break;
      }
      case 'maxPool':
      case 'avgPool':
        checkWindow(where, op.kernel, op.stride, op.padding);
        channels.set(node.name, single());
        break;
      case 'pad':
        for (const p of op.padding) checkNonNegative(where, 'padding', p);
        channels.set(node.name, single());
        break;
      case 'activation':
      case 'affine':
      case 'layerScale':
        channels.set(node.name, single());
        break;
      case 'layerNorm':
        if (!(op.epsilon > 0)) throw new BodyError(`${where}: epsilon must be positive, got ${op.epsilon}`);
        channels.set(node.name, single());
        break;
      case 'channelSlice': {
        const c = single();
        if (!Number.isInteger(op.begin) || !Number.isInteger(op.size) || op.begin < 0 || op.size < 1) {
          throw new BodyError(`${where}: channelSlice needs an integer begin >= 0 and size >= 1`);
        }
        if (op.begin + op.size > c) {
          throw new BodyError(
            `${where}: channels ${op.begin}…${op.begin + op.size - 1} asked of an input with ${c} channels`,
          );
        }
        channels.set(node.name, op.size);
        break;
      }
      case 'add': {
        if (inC.length < 2) throw new BodyError(`${where}: add needs at least two inputs`);
        if (inC.some((c) => c !== inC[0])) {
          throw new BodyError(
            `${where}: add needs equal channel counts, got ${inC.join(', ')} from ${node.inputs.join(', ')}`,
          );
        }
        channels.set(node.name, inC[0] as number);
        break;
      }
      case 'concat':
        if (inC.length < 2) throw new BodyError(`${where}: concat needs at least two inputs`);
        channels.set(
          node.name,
          inC.reduce((a, b) => a + b, 0),
        );
        break;
    }
  }
  if (!channels.has(body.output) || body.output === INPUT) {
    throw new BodyError(`body '${body.name}': output '${body.output}' is not a node of the body`);
  }
  const reaches = new Set<string>([body.output]);
  for (let i = body.nodes.length - 1; i >= 0; i--) {
    const node = body.nodes[i] as BodyNode;
    if (reaches.has(node.name)) for (const input of node.inputs) reaches.add(input);
    else
      throw new BodyError(
        `body '${body.name}': node '${node.name}' does not lead to the output '${body.output}'`,
      );
  }
  return channels;
}

function checkPositive(where: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1)
    throw new BodyError(`${where}: ${what} must be a positive integer, got ${v}`);
}
function checkNonNegative(where: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v < 0)
    throw new BodyError(`${where}: ${what} must be a non-negative integer, got ${v}`);
}
function checkWindow(where: string, kernel: Pair, stride: Pair, padding: Padding): void {
  for (const k of kernel) checkPositive(where, 'kernel', k);
  for (const s of stride) checkPositive(where, 'stride', s);
  for (const p of padding) checkNonNegative(where, 'padding', p);
}

/** The consumers of every node, for walking the DAG backwards. */
export function consumers(body: Body): Map<string, string[]> {
  const out = new Map<string, string[]>([[INPUT, []]]);
  for (const n of body.nodes) out.set(n.name, []);
  for (const n of body.nodes) for (const i of n.inputs) out.get(i)?.push(n.name);
  return out;
}

/** Parameter shapes of a node, by parameter name (e.g. `conv1/kernel`). Pure, for init and the planner. */
export function parameterShapes(body: Body): Map<string, number[]> {
  const channels = inferChannels(body);
  const shapes = new Map<string, number[]>();
  for (const node of body.nodes) {
    const op = node.op;
    const inC = channels.get(node.inputs[0] as string) as number;
    if (op.kind === 'conv2d') {
      shapes.set(`${node.name}/kernel`, [op.kernel[0], op.kernel[1], inC / op.groups, op.filters]);
      if (op.bias) shapes.set(`${node.name}/bias`, [op.filters]);
    } else if (op.kind === 'affine') {
      shapes.set(`${node.name}/scale`, [inC]);
      shapes.set(`${node.name}/shift`, [inC]);
    } else if (op.kind === 'layerNorm') {
      shapes.set(`${node.name}/gamma`, [inC]);
      shapes.set(`${node.name}/beta`, [inC]);
    } else if (op.kind === 'layerScale') {
      shapes.set(`${node.name}/gamma`, [inC]);
    }
  }
  return shapes;
}

/** A network cut in two at one node: the streamed body up to it, and the rest run conventionally. */
export interface SplitNetwork {
  readonly body: Body;
  /** The nodes after the cut, with the cut node's output as their INPUT; absent when nothing follows. */
  readonly trunk?: Body;
}

/**
 * Cuts `net` after node `cut`. The cut must separate the graph: no node after it may read a node
 * before it except through `cut` (true at ResNet block boundaries, not inside a residual block).
 */
export function splitAt(net: Body, cut: string): SplitNetwork {
  const channels = inferChannels(net);
  const index = net.nodes.findIndex((n) => n.name === cut);
  if (index < 0) {
    throw new BodyError(
      `'${cut}' is not a layer of '${net.name}'; layers: ${net.nodes.map((n) => n.name).join(', ')}`,
    );
  }
  const ancestors = new Set<string>([cut]);
  for (let i = index; i >= 0; i--) {
    const node = net.nodes[i] as BodyNode;
    if (ancestors.has(node.name)) for (const input of node.inputs) ancestors.add(input);
  }
  const bodyNodes = net.nodes.slice(0, index + 1).filter((n) => ancestors.has(n.name));
  const rest = net.nodes.slice(index + 1);
  const body: Body = { name: net.name, inputChannels: net.inputChannels, nodes: bodyNodes, output: cut };
  inferChannels(body);
  if (rest.length === 0) return { body };
  const renamed = rest.map((n) => ({
    ...n,
    inputs: n.inputs.map((i) => {
      if (i === cut) return INPUT;
      if (ancestors.has(i) || i === INPUT || !rest.some((r) => r.name === i)) {
        throw new BodyError(
          `cannot cut '${net.name}' at '${cut}': layer '${n.name}' after it also reads '${i}' from before the cut ` +
            '(a skip connection crosses it); cut at the end of a block instead',
        );
      }
      return i;
    }),
  }));
  const trunk: Body = {
    name: `${net.name}-head`,
    inputChannels: channels.get(cut) as number,
    nodes: renamed,
    output: net.output,
  };
  inferChannels(trunk);
  return { body, trunk };
}
