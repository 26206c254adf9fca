// spec.model.initialWeights: start a job from the weights of an earlier tilestream run (a `.tsckpt`
// checkpoint, e.g. pretrained on another dataset). Body and trunk weights must all be there with the
// network's shapes, since a partly initialised body is almost always a wrong file; the head may
// differ (new classes) and then starts fresh. Optimizer state is not carried over: this is a new run.

import { type CheckpointTensor, readCheckpoint } from './checkpoint.ts';

export class InitialWeightsError extends Error {
  override name = 'InitialWeightsError';
}

const isHead = (name: string) => name.startsWith('head/');

/**
 * The tensors of `source` the network takes, by name. Pure. Throws naming the first missing or
 * mis-shaped body/trunk weight; head weights of another shape are left out.
 */
export function matchInitialWeights(
  source: ReadonlyMap<string, CheckpointTensor>,
  shapes: ReadonlyMap<string, readonly number[]>,
  what: string,
): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  for (const [name, shape] of shapes) {
    const t = source.get(name);
    const fits = t !== undefined && t.shape.join('x') === shape.join('x');
    if (fits) out.set(name, t);
    else if (!isHead(name)) {
      throw new InitialWeightsError(
        t === undefined
          ? `${what} has no weight '${name}': it was written for another architecture, width or bodyEnd ` +
              'than spec.model describes'
          : `${what}: '${name}' has shape ${t.shape.join('x')}, the network needs ${shape.join('x')}; ` +
              'spec.model must describe the network the weights came from',
      );
    }
  }
  return out;
}

/** Reads the checkpoint at `path` and matches it against the network's parameter shapes. */
export function readInitialWeights(
  path: string,
  shapes: ReadonlyMap<string, readonly number[]>,
): Map<string, CheckpointTensor> {
  let tensors: ReadonlyMap<string, CheckpointTensor>;
  try {
    tensors = readCheckpoint(path).tensors;
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new InitialWeightsError(
      `spec.model.initialWeights: cannot read ${path} (${reason}); it must be a tilestream checkpoint (.tsckpt)`,
    );
  }
  return matchInitialWeights(tensors, shapes, `spec.model.initialWeights ${path}`);
}
