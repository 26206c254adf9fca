// Checkpoints: one self-checking file per save, written atomically (temporary file, fsync, rename,
// fsync of the directory), so a crash or a full disk at any moment leaves either the old or the new
// checkpoint. Layout (TSCKPT02): magic, u32 header length, JSON header, float32 payload, then the
// SHA-256 of every byte before it, so a changed header is caught like a changed payload.
// TSCKPT01 files (no trailer; the header held the payload's hash only) still load, see readV1.

import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const MAGIC = Buffer.from('TSCKPT02', 'ascii');
const MAGIC_V1 = Buffer.from('TSCKPT01', 'ascii');
const HASH_BYTES = 32;
const FILE = /^ckpt-(\d{9})\.tsckpt$/;

/**
 * Temporary files are `<checkpoint>.tmp-<host>-<pid>-<process token>-<random>`. The PID alone is 1
 * in every container, so the token tells this process's files from those of another pod writing to
 * the same volume (e.g. the old attempt's SIGTERM checkpoint).
 */
const WRITER = `${hostname().replace(/[^A-Za-z0-9-]/g, '_')}-${process.pid}-${randomBytes(6).toString('hex')}`;

/**
 * Another writer's temporary file is removed once nobody has written to it for this long. A live
 * writer touches it with every write and only its final fsync is silent; a pod being stopped has
 * 120 s (the operator's grace period) to write its checkpoint.
 */
export const STALE_TEMPORARY_MS = 10 * 60_000;

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
  version: 1 | 2;
  step: number;
  createdAt: string;
  meta: Record<string, unknown>;
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
  payloadBytes: number;
  /** TSCKPT01 only: the payload's SHA-256. */
  sha256?: string;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
  /**
   * A save failed because the checkpoint volume has no room (ENOSPC, EDQUOT, EFBIG): retrying
   * cannot help until space is freed, so the trainer exits with its own code (exit-codes.ts).
   */
  readonly volumeFull: boolean;
  constructor(message: string, options: ErrorOptions & { volumeFull?: boolean } = {}) {
    super(message, options);
    this.volumeFull = options.volumeFull ?? false;
  }
}

export function checkpointPath(dir: string, step: number): string {
  return join(dir, `ckpt-${String(step).padStart(9, '0')}.tsckpt`);
}

/**
 * Writes a checkpoint atomically and keeps only the newest `keep`. Returns its path. When the write
 * fails (a full disk, an I/O error) it throws CheckpointError naming the file; the temporary file is
 * removed and the checkpoints already there are left as they were.
 */
export function writeCheckpoint(dir: string, data: CheckpointData, keep: number): string {
  mkdirSync(dir, { recursive: true });
  const tensors: Header['tensors'] = [];
  const views: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of data.tensors) {
    tensors.push({ name, shape: [...t.shape], offset, length: t.values.length });
    views.push(Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength));
    offset += t.values.byteLength;
  }
  const header: Header = {
    version: 2,
    step: data.step,
    createdAt: new Date().toISOString(),
    meta: data.meta,
    tensors,
    payloadBytes: offset,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  const parts = [MAGIC, length, json, ...views];
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());

  const final = checkpointPath(dir, data.step);
  const tmp = `${final}.tmp-${WRITER}-${randomBytes(4).toString('hex')}`;
  try {
    writeDurably(tmp, parts);
    renameSync(tmp, final);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // A stale temporary file is pruned by a later save; the write error is what matters here.
    }
    const previous = listCheckpoints(dir)[0];
    const size = formatSize(parts.reduce((n, p) => n + p.length, 0));
    const { what, full } = describeWriteError(e);
    throw new CheckpointError(
      `cannot write checkpoint ${final}: ${what}; ` +
        (previous ? `the previous checkpoint ${previous} is kept` : 'there is no earlier checkpoint') +
        (full
          ? `. Free space on the checkpoint volume or lower spec.checkpoint.keep (a save needs room for keep + 1 checkpoints of ${size})`
          : '. Check that the checkpoint volume is mounted and writable'),
      { cause: e, volumeFull: full },
    );
  }
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
  prune(dir, keep, final);
  return final;
}

/** A size for a message: KiB below 1 MiB (a small model's checkpoint showed as "0.0 MiB"), else MiB. */
function formatSize(bytes: number): string {
  return bytes < 2 ** 20 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Creates `path` (never an existing file), writes every part in full and fsyncs it. */
function writeDurably(path: string, parts: readonly Uint8Array[]): void {
  const fd = openSync(path, 'wx');
  let closed = false;
  try {
    for (const part of parts) {
      // write(2) may write less than asked (a disk filling up, the 2 GiB per-call cap, a signal);
      // the cause, if any, comes from the next call.
      for (let done = 0; done < part.length; ) {
        const n = writeSync(fd, part, done, part.length - done);
        if (n <= 0) throw new Error(`write returned ${n} with ${part.length - done} bytes to go`);
        done += n;
      }
    }
    fsyncSync(fd);
    closed = true;
    closeSync(fd); // network filesystems may report a failed write only here
  } finally {
    if (!closed) closeSync(fd);
  }
}

function describeWriteError(e: unknown): { what: string; full: boolean } {
  switch ((e as NodeJS.ErrnoException).code) {
    case 'ENOSPC':
      return { what: 'the volume is full (ENOSPC)', full: true };
    case 'EDQUOT':
      return { what: 'the disk quota is used up (EDQUOT)', full: true };
    case 'EFBIG':
      return { what: 'the file exceeds the largest size this process or volume allows (EFBIG)', full: true };
    default:
      return { what: (e as Error).message, full: false };
  }
}

/** Reads and verifies one checkpoint file; throws CheckpointError naming what is wrong. */
export function readCheckpoint(path: string): CheckpointData & { createdAt: string; version: 1 | 2 } {
  const buf = readFileSync(path);
  const magic = buf.subarray(0, 8);
  if (buf.length < 12 || !(magic.equals(MAGIC) || magic.equals(MAGIC_V1)))
    throw new CheckpointError(`${path}: not a tilestream checkpoint`);
  const v1 = magic.equals(MAGIC_V1);
  const { header, payload } = v1 ? readV1(path, buf) : readV2(path, buf);
  checkHeader(path, header, payload.length, v1);
  const tensors = new Map<string, CheckpointTensor>();
  for (const t of header.tensors) {
    const copy = new Float32Array(t.length);
    Buffer.from(copy.buffer).set(payload.subarray(t.offset, t.offset + t.length * 4));
    tensors.set(t.name, { shape: t.shape, values: copy });
  }
  return {
    step: header.step,
    meta: header.meta,
    tensors,
    createdAt: header.createdAt,
    version: v1 ? 1 : 2,
  };
}

function parseHeader(path: string, buf: Buffer): { header: Header; end: number } {
  const headerLength = buf.readUInt32LE(8);
  const end = 12 + headerLength;
  if (end > buf.length) throw new CheckpointError(`${path}: truncated header`);
  try {
    return { header: JSON.parse(buf.subarray(12, end).toString('utf8')) as Header, end };
  } catch (e) {
    throw new CheckpointError(`${path}: unreadable header (${(e as Error).message})`);
  }
}

function readV2(path: string, buf: Buffer): { header: Header; payload: Buffer } {
  const body = buf.subarray(0, Math.max(12, buf.length - HASH_BYTES));
  const intact =
    buf.length >= 12 + HASH_BYTES &&
    createHash('sha256')
      .update(body)
      .digest()
      .equals(buf.subarray(buf.length - HASH_BYTES));
  if (!intact) {
    // Tell a cut file (an interrupted copy) from a changed one; the header is trusted for no more.
    const { header, end } = parseHeader(path, buf);
    const expected = end + Number(header.payloadBytes) + HASH_BYTES;
    if (buf.length < expected)
      throw new CheckpointError(`${path}: truncated: ${buf.length} of ${expected} bytes`);
    throw new CheckpointError(`${path}: checksum mismatch, the file is corrupt`);
  }
  const { header, end } = parseHeader(path, buf);
  return { header, payload: body.subarray(end) };
}

/**
 * TSCKPT01, written before the checksum covered the header. Its payload hash still catches a cut or
 * changed payload, and checkHeader refuses a header that does not describe that payload; a header
 * changed consistently (e.g. two names of one shape swapped) is the one thing left undetected.
 */
function readV1(path: string, buf: Buffer): { header: Header; payload: Buffer } {
  const { header, end } = parseHeader(path, buf);
  const payload = buf.subarray(end);
  if (payload.length < header.payloadBytes) {
    throw new CheckpointError(
      `${path}: truncated: ${payload.length} of ${header.payloadBytes} payload bytes`,
    );
  }
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256)
    throw new CheckpointError(`${path}: checksum mismatch, the file is corrupt`);
  return { header, payload };
}

/** Every tensor is stored in order, without gaps, with as many values as its shape says. */
function checkHeader(path: string, h: Header, payloadBytes: number, v1: boolean): void {
  const problems: string[] = [];
  if (h.version !== (v1 ? 1 : 2)) problems.push(`header version ${h.version} in a TSCKPT0${v1 ? 1 : 2} file`);
  if (!Number.isSafeInteger(h.step) || h.step < 0) problems.push(`step ${h.step} is not a step count`);
  if (typeof h.meta !== 'object' || h.meta === null) problems.push('no metadata');
  if (!Array.isArray(h.tensors)) problems.push('no tensor list');
  let offset = 0;
  const names = new Set<string>();
  for (const t of Array.isArray(h.tensors) ? h.tensors : []) {
    const values = Array.isArray(t.shape) ? t.shape.reduce((n, d) => n * d, 1) : Number.NaN;
    if (typeof t.name !== 'string' || names.has(t.name))
      problems.push(`tensor name ${JSON.stringify(t.name)}`);
    else if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      problems.push(`'${t.name}' has shape ${JSON.stringify(t.shape)}`);
    else if (values !== t.length)
      problems.push(`'${t.name}' has shape ${t.shape.join('x')} (${values} values) but ${t.length} stored`);
    else if (t.offset !== offset) problems.push(`'${t.name}' starts at byte ${t.offset}, not ${offset}`);
    names.add(t.name);
    offset += (Number.isSafeInteger(t.length) ? t.length : 0) * 4;
  }
  if (h.payloadBytes !== offset || payloadBytes !== offset)
    problems.push(
      `the tensors take ${offset} bytes, the header says ${h.payloadBytes}, the file holds ${payloadBytes}`,
    );
  if (problems.length === 0) return;
  throw new CheckpointError(
    `${path}: the header does not describe the stored tensors (${problems.slice(0, 3).join('; ')}); ` +
      (v1
        ? 'it is in the first checkpoint format, whose header the checksum does not cover: delete it to resume from the one before it'
        : 'delete it to resume from the one before it'),
  );
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
): (CheckpointData & { path: string; createdAt: string; version: 1 | 2 }) | undefined {
  for (const path of listCheckpoints(dir)) {
    try {
      const ckpt = readCheckpoint(path);
      const named = Number(FILE.exec(path.slice(dir.length + 1))?.[1]);
      if (ckpt.step !== named)
        throw new CheckpointError(`${path}: the file name says step ${named}, its header ${ckpt.step}`);
      if (ckpt.version === 1) {
        warn(
          `${path} is in the first checkpoint format (TSCKPT01), whose checksum does not cover its header; ` +
            'loading it after checking the header against the tensors. The next checkpoint is written in the current format',
        );
      }
      return { ...ckpt, path };
    } catch (e) {
      // Our errors start with the path; the file system's (EACCES, a file pruned meanwhile) do not.
      const why = e instanceof CheckpointError ? e.message : `${path}: ${(e as Error).message}`;
      warn(`skipping checkpoint ${why}; falling back to the one before it`);
    }
  }
  return undefined;
}

/**
 * Keeps the newest `keep` checkpoints and removes temporary files that are this process's own or
 * stale. Staleness is judged against the checkpoint just written, so it uses the volume's clock, not
 * this node's.
 */
function prune(dir: string, keep: number, written: string): void {
  const now = statSync(written).mtimeMs;
  for (const name of readdirSync(dir)) {
    if (!name.includes('.tsckpt.tmp-')) continue;
    const path = join(dir, name);
    let stale: boolean;
    try {
      stale = now - statSync(path).mtimeMs > STALE_TEMPORARY_MS;
    } catch {
      continue; // renamed or removed by its writer meanwhile
    }
    if (stale || name.includes(`.tmp-${WRITER}-`)) rmSync(path, { force: true });
  }
  for (const path of listCheckpoints(dir).slice(Math.max(keep, 1))) rmSync(path, { force: true });
}
