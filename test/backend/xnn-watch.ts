// XNNPACK reports a refused operator (e.g. an empty input) only as a line on stderr, and leaves
// the output tensor unwritten, so a test could pass on whatever the memory held. Tests on wasm
// watch stderr for those lines and fail if any appeared.
const XNN_FAILURE = /XNN status for \w+ is not successful/;

export interface XnnWatch {
  failures: string[];
  stop(): void;
}

export function watchXnnFailures(): XnnWatch {
  const failures: string[] = [];
  const original = process.stderr.write;
  const write = (chunk: unknown, ...rest: unknown[]): boolean => {
    const text = String(chunk);
    if (XNN_FAILURE.test(text)) failures.push(text.trim());
    // biome-ignore lint/suspicious/noExplicitAny: forwarding write's overloads unchanged
    return (original as any).call(process.stderr, chunk, ...rest);
  };
  process.stderr.write = write as typeof process.stderr.write;
  return {
    failures,
    stop: () => {
      process.stderr.write = original;
    },
  };
}
