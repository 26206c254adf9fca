// Runs async work over a list with bounded concurrency: the real-API-server suites start one kubectl
// per manifest, and start-up dominates, but the machine has 2 cores.

/** Runs `fn` over `items`, `limit` at a time; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (x: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}
