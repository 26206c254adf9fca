// openCollective: the collective engine for one rank. One rank needs no engine (the identity);
// more start TensorFlow's collectives (tensorflow-collective.ts) once every peer's host name
// resolves and every peer's server answers, all within the peer timeout.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { type Collective, PeersUnavailableError, type RankTopology } from './collective.ts';
import { TensorflowCollective } from './tensorflow-collective.ts';

export interface OpenCollectiveOptions {
  /** How long to wait for the peers at start, and for any one collective (the peer timeout). */
  readonly timeoutMs: number;
  readonly log?: (line: string) => void;
  /** How often the peers' health is checked while a collective waits (default 2 s). */
  readonly healthIntervalMs?: number;
  /** How long a peer may take to answer a health check before it counts as lost (default 10 s). */
  readonly healthTimeoutMs?: number;
  /** Chunks of the CPU ring all-reduce in flight at once (default 8; 0 leaves TensorFlow's choice). */
  readonly ringSubdivisions?: number;
}

/** The world of one rank: sums and broadcasts are copies of the inputs. */
export class IdentityCollective implements Collective {
  readonly rank = 0;
  readonly worldSize = 1;
  private closed = false;
  allReduceSum(buffers: readonly Float32Array[]): Promise<Float32Array[]> {
    return this.copy(buffers);
  }
  broadcast(buffers: readonly Float32Array[]): Promise<Float32Array[]> {
    return this.copy(buffers);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  private async copy(buffers: readonly Float32Array[]): Promise<Float32Array[]> {
    if (this.closed) throw new Error('the collective is closed');
    return buffers.map((b) => b.slice());
  }
}

/** Splits `host:port` (IPv6 hosts in brackets) into its parts. */
export function splitHostPort(peer: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(peer);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new Error(
      `peer ${JSON.stringify(peer)} is not host:port (a host name or address and a port 1–65535)`,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/** `address:port` as gRPC wants it (IPv6 in brackets). */
function joinHostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Every peer's `host:port` with the host resolved to an address, asking DNS again every second
 * until `deadline` (a headless Service's records appear only as its pods get addresses).
 * TensorFlow's gRPC would resolve a name once and give up; Node's resolver is retried here.
 */
export async function resolvePeers(
  peers: readonly string[],
  deadline: number,
  log: (line: string) => void = () => {},
): Promise<string[]> {
  const out: string[] = [];
  for (const [rank, peer] of peers.entries()) {
    const { host, port } = splitHostPort(peer);
    let said = false;
    for (;;) {
      try {
        out.push(joinHostPort((await lookup(host)).address, port));
        break;
      } catch (e) {
        if (Date.now() >= deadline) {
          throw new PeersUnavailableError(
            `the host of rank ${rank} (${host}) did not resolve within the peer timeout: ${(e as Error).message}`,
          );
        }
        if (!said)
          log(
            `collective: waiting for the host of rank ${rank} (${host}) to resolve: ${(e as Error).message}`,
          );
        said = true;
        await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
      }
    }
  }
  return out;
}

/**
 * The collective of `topology`'s rank, once every peer is there. Rejects with a
 * PeersUnavailableError when a peer's host does not resolve or its server does not answer within
 * `timeoutMs`, and with TensorflowUnavailableError when TensorFlow's native build is missing
 * (`tilestream setup tensorflow`). Rank 0's collectives are led by rank 0 (TensorFlow's group
 * leader); every rank must call the same collectives in the same order.
 */
export async function openCollective(
  topology: RankTopology,
  options: OpenCollectiveOptions,
): Promise<Collective> {
  const { rank, worldSize, peers } = topology;
  if (worldSize !== peers.length) {
    throw new Error(`world size ${worldSize} but ${peers.length} peers: one host:port per rank is needed`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new Error(`rank ${rank} is outside the world of ${worldSize}`);
  }
  if (worldSize === 1) return new IdentityCollective();
  const log = options.log ?? (() => {});
  const deadline = Date.now() + options.timeoutMs;
  const addresses = await resolvePeers(peers, deadline, log);
  const engine = TensorflowCollective.start({
    rank,
    peers: addresses,
    timeoutMs: options.timeoutMs,
    log,
    ...(options.healthIntervalMs === undefined ? {} : { healthIntervalMs: options.healthIntervalMs }),
    ...(options.healthTimeoutMs === undefined ? {} : { healthTimeoutMs: options.healthTimeoutMs }),
    ...(options.ringSubdivisions === undefined ? {} : { ringSubdivisions: options.ringSubdivisions }),
  });
  try {
    await engine.waitForPeers(Math.max(0, deadline - Date.now()));
  } catch (e) {
    await engine.close();
    throw e;
  }
  return engine;
}
