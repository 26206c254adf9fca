// One rank of the collective tests (collective.test.ts): opens the collective from its arguments,
// runs what the test asks and prints one JSON line per result; a PeersUnavailableError exits 6, as
// the trainer does.
import { type BackendChoice, initBackend } from '../../trainer/backend/select.ts';
import { type Collective, PeersUnavailableError } from '../../trainer/distributed/collective.ts';
import { openCollective } from '../../trainer/distributed/open-collective.ts';
import { knownBuffer, LENGTHS } from './collective-data.ts';

interface ChildArgs {
  rank: number;
  peers: string[];
  timeoutMs: number;
  /** 'sums': known data through allReduceSum and broadcast; 'loop': all-reduces until killed or failed. */
  mode: 'sums' | 'loop';
  healthIntervalMs?: number;
  /** A tfjs backend to start first, as a training rank does (the engine must not care which). */
  backend?: BackendChoice;
}

const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
const say = (o: object): void => {
  process.stdout.write(`${JSON.stringify({ rank: args.rank, at: Date.now(), ...o })}\n`);
};

let c: Collective | undefined;
try {
  if (args.backend !== undefined) {
    const info = await initBackend(args.backend);
    say({ event: 'backend', name: info.name });
  }
  c = await openCollective(
    { rank: args.rank, worldSize: args.peers.length, peers: args.peers },
    {
      timeoutMs: args.timeoutMs,
      log: (line) => process.stderr.write(`${line}\n`),
      ...(args.healthIntervalMs === undefined ? {} : { healthIntervalMs: args.healthIntervalMs }),
    },
  );
  say({ event: 'open' });
  if (args.mode === 'sums') {
    const inputs = LENGTHS.map((n, i) => knownBuffer(args.rank, i, n));
    const copies = inputs.map((b) => b.slice());
    const sums = await c.allReduceSum(inputs);
    const unchanged = inputs.every((b, i) => b.every((v, k) => v === copies[i]?.[k]));
    const bcast = await c.broadcast(inputs);
    // A second round: instance keys advance, the same group is reused.
    const again = await c.allReduceSum([Float32Array.of(args.rank)]);
    say({
      event: 'sums',
      sums: sums.map((b) => Array.from(b)),
      broadcast: bcast.map((b) => Array.from(b)),
      again: Array.from(again[0] ?? []),
      unchanged,
    });
  } else {
    const big = new Float32Array(1_000_000).fill(1);
    for (let i = 0; ; i++) {
      const [sum] = await (c as Collective).allReduceSum([big]);
      say({ event: 'step', i, value: sum?.[0] });
    }
  }
  await c.close();
  process.exit(0);
} catch (e) {
  say({ event: 'error', name: (e as Error).name, message: (e as Error).message });
  // As the trainer does: close the engine after a failure too (it must neither hang nor crash).
  await c?.close();
  say({ event: 'closed' });
  process.exit(e instanceof PeersUnavailableError ? 6 : 1);
}
