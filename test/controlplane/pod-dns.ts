// Preloaded into pod processes by the node agent (NODE_OPTIONS=--import, test-only): the test
// control plane has no cluster DNS, and all its pods share this host, so the names a headless
// Service gives its pods (`<hostname>.<subdomain>`, also with `.<namespace>`, `.<namespace>.svc`
// or `.<namespace>.svc.cluster.local`) resolve to the address in the hosts file the agent keeps
// current (TILESTREAM_POD_HOSTS_FILE: the pods that run now). Other names go to the real resolver.
// dns.lookup and dns.promises.lookup (also imported as node:dns/promises) are wrapped.
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

export const POD_HOSTS_FILE_ENV = 'TILESTREAM_POD_HOSTS_FILE';

/** One line of the hosts file: a pod's `<hostname>.<subdomain>` in its namespace. */
export interface PodHost {
  name: string;
  namespace: string;
  address: string;
}

/** The address of `host` among `hosts`, if it is one of their names. */
export function resolvePodHost(host: string, hosts: readonly PodHost[]): string | undefined {
  const name = host.toLowerCase().replace(/\.$/, '');
  for (const h of hosts) {
    const base = h.name.toLowerCase();
    const ns = h.namespace.toLowerCase();
    if ([base, `${base}.${ns}`, `${base}.${ns}.svc`, `${base}.${ns}.svc.cluster.local`].includes(name))
      return h.address;
  }
  return undefined;
}

function readHosts(): PodHost[] {
  const file = process.env[POD_HOSTS_FILE_ENV];
  if (!file) return [];
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PodHost[];
  } catch {
    return []; // not written yet
  }
}

type LookupOptions = number | dns.LookupOptions | undefined;
const wantsAll = (o: LookupOptions) => typeof o === 'object' && o.all === true;

const realLookup = dns.lookup;
const realPromisesLookup = dns.promises.lookup;

function lookup(hostname: string, ...rest: unknown[]): void {
  const callback = rest.at(-1) as (err: Error | null, address: unknown, family?: number) => void;
  const options = (rest.length > 1 ? rest[0] : undefined) as LookupOptions;
  const address = resolvePodHost(hostname, readHosts());
  if (address === undefined) {
    (realLookup as (...a: unknown[]) => void)(hostname, ...rest);
    return;
  }
  process.nextTick(() =>
    wantsAll(options) ? callback(null, [{ address, family: 4 }]) : callback(null, address, 4),
  );
}

async function promisesLookup(hostname: string, options?: LookupOptions): Promise<unknown> {
  const address = resolvePodHost(hostname, readHosts());
  if (address === undefined)
    return (realPromisesLookup as (h: string, o?: LookupOptions) => Promise<unknown>)(hostname, options);
  return wantsAll(options) ? [{ address, family: 4 }] : { address, family: 4 };
}

if (process.env[POD_HOSTS_FILE_ENV]) {
  (dns as { lookup: unknown }).lookup = lookup;
  (dns.promises as { lookup: unknown }).lookup = promisesLookup;
  // `import { lookup } from 'node:dns/promises'` reads the ES module's export: update it too.
  syncBuiltinESMExports();
}
