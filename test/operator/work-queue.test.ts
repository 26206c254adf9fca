import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../operator/controller/clock.ts';
import {
  BucketRateLimiter,
  ExponentialRateLimiter,
  MaxOfRateLimiter,
} from '../../operator/controller/rate-limiter.ts';
import { WorkQueue } from '../../operator/controller/work-queue.ts';

const queue = (clock = new ManualClock()) => new WorkQueue(clock, new ExponentialRateLimiter(5, 1000));

describe('rate limiters (client-go default_rate_limiters_test)', () => {
  it('the per-key limiter doubles from 5 ms, counts requeues, and resets on forget', () => {
    const l = new ExponentialRateLimiter(5, 1_000_000);
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => l.when('a')),
      [5, 10, 20, 40, 80],
    );
    assert.equal(l.numRequeues('a'), 5);
    assert.equal(l.when('b'), 5, 'a second key is independent');
    l.forget('a');
    assert.equal(l.numRequeues('a'), 0);
    assert.equal(l.when('a'), 5);
  });

  it('caps at the maximum and never overflows', () => {
    const l = new ExponentialRateLimiter(5, 1_000_000);
    let last = 0;
    for (let i = 0; i < 2000; i++) last = l.when('x');
    assert.equal(last, 1_000_000);
  });

  it('the token bucket lets a burst through, then spaces retries by 1/qps', () => {
    const clock = new ManualClock();
    const b = new BucketRateLimiter(clock, 10, 3);
    assert.deepEqual([b.when('a'), b.when('b'), b.when('c'), b.when('d'), b.when('e')], [0, 0, 0, 100, 200]);
    clock.advance(1000);
    assert.equal(b.when('f'), 0, 'tokens come back with time');
  });

  it('max-of takes the larger delay', () => {
    const clock = new ManualClock();
    const l = new MaxOfRateLimiter(new ExponentialRateLimiter(5, 1000), new BucketRateLimiter(clock, 1, 1));
    assert.equal(l.when('a'), 5);
    assert.equal(l.when('a'), 1000, 'the empty bucket dominates');
  });

  it('refuses nonsense settings with the values', () => {
    assert.throws(() => new ExponentialRateLimiter(0, 10), /baseMs=0/);
  });
});

describe('WorkQueue (client-go contract)', () => {
  it('hands keys out in FIFO order and collapses duplicate adds', async () => {
    const q = queue();
    for (const k of ['a', 'b', 'a', 'c', 'b']) q.add(k);
    assert.equal(q.length, 3);
    assert.deepEqual([await q.get(), await q.get(), await q.get()], ['a', 'b', 'c']);
  });

  it('a key added while processing is not handed to a second worker, and runs again after done', async () => {
    const q = queue();
    q.add('a');
    const first = await q.get();
    q.add('a');
    assert.equal(q.length, 0, 'not queued while in flight');
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await Promise.resolve();
    assert.equal(second, undefined);
    q.done(first as string);
    await Promise.resolve();
    assert.equal(second, 'a');
  });

  it('a waiting worker is woken by add', async () => {
    const q = queue();
    const got = q.get();
    q.add('x');
    assert.equal(await got, 'x');
  });

  it('addAfter keeps the earlier due time', async () => {
    const clock = new ManualClock();
    const q = queue(clock);
    q.addAfter('a', 1000);
    q.addAfter('a', 200);
    q.addAfter('a', 5000);
    assert.equal(q.delayed, 1);
    clock.advance(199);
    assert.equal(q.length, 0);
    clock.advance(1);
    assert.equal(q.length, 1);
    assert.equal(await q.get(), 'a');
    clock.advance(10_000);
    assert.equal(q.length, 0, 'the later timers were cancelled');
  });

  it('addRateLimited backs off exponentially until forget', () => {
    const clock = new ManualClock();
    const q = queue(clock);
    q.addRateLimited('a');
    clock.advance(4);
    assert.equal(q.length, 0);
    clock.advance(1);
    assert.equal(q.length, 1);
    assert.equal(q.numRequeues('a'), 1);
    q.forget('a');
    assert.equal(q.numRequeues('a'), 0);
  });

  it('shutDown wakes idle workers, drops queued keys, and drained() waits for in-flight work', async () => {
    const clock = new ManualClock();
    const q = queue(clock);
    q.add('busy');
    const busy = await q.get();
    const idle = q.get();
    q.add('other');
    assert.equal(await idle, 'other', 'a waiting worker takes the next key');
    q.done('other');
    const idle2 = q.get();
    q.addAfter('later', 100);
    q.shutDown();
    q.add('queued-after-shutdown');
    assert.equal(await idle2, undefined, 'idle workers are woken with undefined');
    assert.equal(q.length, 0);
    assert.equal(await q.get(), undefined);
    let drained = false;
    const d = q.drained().then(() => {
      drained = true;
    });
    await Promise.resolve();
    assert.equal(drained, false, 'busy is still in flight');
    q.done(busy as string);
    await d;
    assert.equal(drained, true);
    clock.advance(1000);
    assert.equal(q.length, 0, 'delayed keys were dropped');
  });

  it('reports metrics through the observer', async () => {
    const clock = new ManualClock();
    const seen = {
      added: 0,
      depth: [] as number[],
      waited: [] as number[],
      worked: [] as number[],
      retried: 0,
    };
    const q = new WorkQueue(clock, new ExponentialRateLimiter(5, 1000), {
      added: () => seen.added++,
      depth: (n) => seen.depth.push(n),
      waited: (s) => seen.waited.push(s),
      worked: (s) => seen.worked.push(s),
      retried: () => seen.retried++,
    });
    q.add('a');
    clock.advance(250);
    const k = await q.get();
    clock.advance(1500);
    q.done(k as string);
    q.addRateLimited('a');
    assert.equal(seen.added, 1);
    assert.deepEqual(seen.depth, [1, 0]);
    assert.deepEqual(seen.waited, [0.25]);
    assert.deepEqual(seen.worked, [1.5]);
    assert.equal(seen.retried, 1);
  });

  it('matches a set-based model: no key is handed out twice at once, and every added key is processed', async () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('add' as const), k: fc.constantFrom('a', 'b', 'c', 'd') }),
      fc.record({ t: fc.constant('get' as const) }),
      fc.record({ t: fc.constant('done' as const), i: fc.nat(3) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        const q = queue();
        const inFlight: string[] = [];
        const pendingModel = new Set<string>(); // keys added and not yet handed out since their last add
        for (const o of ops) {
          if (o.t === 'add') {
            q.add(o.k);
            pendingModel.add(o.k);
          } else if (o.t === 'get') {
            if (q.length === 0) continue;
            const k = (await q.get()) as string;
            assert.ok(!inFlight.includes(k), `${k} handed out while in flight`);
            inFlight.push(k);
            pendingModel.delete(k);
          } else if (inFlight.length > 0) {
            const [k] = inFlight.splice(o.i % inFlight.length, 1);
            q.done(k as string);
          }
        }
        // Finish everything: every pending key comes out exactly once more.
        for (const k of inFlight.splice(0)) q.done(k);
        const out = new Set<string>();
        while (q.length > 0) {
          const k = (await q.get()) as string;
          assert.ok(!out.has(k));
          out.add(k);
          q.done(k);
        }
        assert.deepEqual([...out].sort(), [...pendingModel].sort());
      }),
      { numRuns: 200 },
    );
  });
});
