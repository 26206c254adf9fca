// Small helpers shared by the command-line modules (commander option parsers, output).

import { type Command, InvalidArgumentError } from 'commander';
import { parseQuantity, QuantityError } from '../crds/quantity.ts';

/** Commander parser for a non-negative integer option. */
export function parseIntOption(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a whole number, got '${value}'`);
  return Number(value);
}

/** Commander parser for a positive integer option. */
export function parsePositiveInt(value: string): number {
  if (!/^\s*\d+\s*$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError(`expected a positive whole number, got '${value}'`);
  }
  return Number(value);
}

/** A memory quantity as Kubernetes writes it ('16Gi', '40960Mi', '17179869184'), in bytes. */
export function parseMemory(value: string): number {
  let bytes: number;
  try {
    bytes = parseQuantity(value.trim());
  } catch (e) {
    if (e instanceof QuantityError) throw new InvalidArgumentError(e.message);
    throw e;
  }
  if (!(bytes > 0)) throw new InvalidArgumentError(`memory must be more than zero, got '${value}'`);
  return bytes;
}

/** Where a command prints: commander's configured output (tests capture it), else stdout. */
export function commandOutput(cmd: Command): (text: string) => void {
  const out = cmd.configureOutput().writeOut;
  return out ?? ((text: string) => void process.stdout.write(text));
}

/** Parses `--size`: N for N×N, or HxW. */
export function parseSizeOption(value: string): { height: number; width: number } {
  const m = /^\s*(\d+)\s*(?:[x×]\s*(\d+)\s*)?$/i.exec(value);
  if (!m)
    throw new InvalidArgumentError(`expected a size like 1024 or 768x1024 (height x width), got '${value}'`);
  const height = Number(m[1]);
  return { height, width: m[2] === undefined ? height : Number(m[2]) };
}
