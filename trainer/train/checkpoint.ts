// Checkpoints: one self-checking file per save, written atomically (temporary file, fsync, rename,
// fsync of the directory), so a crash at any moment leaves either the old or the new checkpoint.
// Layout: magic "TSCKPT01", u32 header length, JSON header, float32 payload. The header carries the
// payload's SHA-256, so a truncated or corrupted file is detected and the one before it is used.

import { createHash } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

const MAGIC = Buffer.from('TSCKPT01', 'ascii');
const FILE = /^ckpt-(\d{9})\.tsckpt$/;

export interface CheckpointTensor {
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

export interface CheckpointData {
  /** Optimizer steps taken. */
  readonly step: number;
  /** Arbitrary JSON: epoch, data position, RNG state, optimizer scalars, network fingerprint. */
  readonly meta: Record<string, unknown>;
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
}

interface Header {
  version: 1;
  step: number;
  createdAt: string;
  meta: Record<string, unknown>;
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
  payloadBytes: number;
  sha256: string;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export function checkpointPath(dir: string, step: number): string {
  return join(dir, `ckpt-${String(step).padStart(9, '0')}.tsckpt`);
}

/** Writes a checkpoint atomically and keeps only the newest `keep`. Returns its path. */
export function writeCheckpoint(dir: string, data: CheckpointData, keep: number): string {
  mkdirSync(dir, { recursive: true });
  const tensors: Header['tensors'] = [];
  let offset = 0;
  for (const [name, t] of data.tensors) {
    tensors.push({ name, shape: [...t.shape], offset, length: t.values.length });
    offset += t.values.byteLength;
  }
  const payload = Buffer.alloc(offset);
  for (const [i, t] of [...data.tensors.values()].entries()) {
    const h = tensors[i] as Header['tensors'][number];
    Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength).copy(payload, h.offset);
  }
  const header: Header = {
    version: 1,
    step: data.step,
    createdAt: new Date().toISOString(),
    meta: data.meta,
    tensors,
    payloadBytes: payload.length,
    sha256: createHash('sha256').update(payload).digest('hex'),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const final = checkpointPath(dir, data.step);
  const tmp = `${final}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const part of [MAGIC, length, json, payload]) writeSync(fd, part);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, final);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
  prune(dir, keep);
  return final;
}

/** Reads and verifies one checkpoint file; throws CheckpointError naming what is wrong. */
export function readCheckpoint(path: string): CheckpointData & { createdAt: string } {
  const buf = readFileSync(path);
  if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC))
    throw new CheckpointError(`${path}: not a tilestream checkpoint`);
  const headerLength = buf.readUInt32LE(8);
  if (12 + headerLength > buf.length) throw new CheckpointError(`${path}: truncated header`);
  let header: Header;
  try {
    header = JSON.parse(buf.subarray(12, 12 + headerLength).toString('utf8')) as Header;
  } catch (e) {
    throw new CheckpointError(`${path}: unreadable header (${(e as Error).message})`);
  }
  const payload = buf.subarray(12 + headerLength);
  if (payload.length !== header.payloadBytes) {
    throw new CheckpointError(
      `${path}: truncated: ${payload.length} of ${header.payloadBytes} payload bytes`,
    );
  }
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256) {
    throw new CheckpointError(`${path}: checksum mismatch, the file is corrupt`);
  }
  const tensors = new Map<string, CheckpointTensor>();
  for (const t of header.tensors) {
    const copy = new Float32Array(t.length);
    Buffer.from(copy.buffer).set(payload.subarray(t.offset, t.offset + t.length * 4));
    tensors.set(t.name, { shape: t.shape, values: copy });
  }
  return { step: header.step, meta: header.meta, tensors, createdAt: header.createdAt };
}

/** Checkpoint files in `dir`, newest first. */
export function listCheckpoints(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => FILE.test(n))
    .sort()
    .reverse()
    .map((n) => join(dir, n));
}

/**
 * The newest checkpoint that verifies. A corrupt newer one is reported through `warn` and the one
 * before it is used; undefined when there is none.
 */
export function loadLatestCheckpoint(
  dir: string,
  warn: (message: string) => void,
): (CheckpointData & { path: string; createdAt: string }) | undefined {
  for (const path of listCheckpoints(dir)) {
    try {
      return { ...readCheckpoint(path), path };
    } catch (e) {
      warn(`skipping checkpoint ${path}: ${(e as Error).message}; falling back to the one before it`);
    }
  }
  return undefined;
}

function prune(dir: string, keep: number): void {
  for (const name of readdirSync(dir)) {
    if (name.includes('.tsckpt.tmp-')) rmSync(join(dir, name), { force: true }); // leftovers of a killed writer
  }
  for (const path of listCheckpoints(dir).slice(Math.max(keep, 1))) rmSync(path, { force: true });
}
