// Planning tiles off the event loop: the PlannerPool's threads answer exactly as the planner does in
// this thread, are bounded, survive a thread's death, and never keep a process alive; the async sizer
// plans a key once, memoises SizingErrors and names the job in any other failure.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { asyncSizer, type Planner, SizingFailure } from '../../operator/cluster/async-sizer.ts';
import { defaultPlannerThreads, PlannerPool, PoolClosedError } from '../../operator/cluster/planner-pool.ts';
import {
  type Sizing,
  SizingError,
  type SizingRequest,
  sizeTile,
} from '../../operator/cluster/tile-sizing.ts';
import { makeStj } from './builders.ts';

const GiB = 2 ** 30;
const FAULTS = new URL('./fixtures/planner-worker-faults.ts', import.meta.url);

const gpu = (stj: ReturnType<typeof makeStj>, gib: number, maxTile?: number): SizingRequest => ({
  spec: stj.obj().spec,
  budgetBytes: gib * GiB,
  backend: 'tensorflow',
  ...(maxTile !== undefined && { maxTile }),
});

/** sizeTile's answer in this thread: the sizing, or the error's class and message. */
function here(req: SizingRequest): Sizing | { error: string } {
  try {
    return sizeTile(req);
  } catch (e) {
    return { error: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

async function there(pool: PlannerPool, req: SizingRequest): Promise<Sizing | { error: string }> {
  try {
    return await pool.run(req);
  } catch (e) {
    return { error: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

/** A fake job for the fault fixture: maxTile is its instruction, budgetBytes comes back as the tile. */
const task = (n: number, act: number): SizingRequest => ({
  spec: makeStj().obj().spec,
  budgetBytes: n,
  backend: 'tensorflow',
  maxTile: act,
});

describe('PlannerPool', () => {
  it('a planner thread sizes exactly as sizeTile does in this thread, SizingErrors included', async () => {
    const cases: [string, SizingRequest][] = [
      ['smallcnn 16384² on 16 GiB', gpu(makeStj().image(16384), 16)],
      ['smallcnn 16384² on 80 GiB (one tile)', gpu(makeStj().image(16384), 80)],
      ['resnet18 8192² on 16 GiB', gpu(makeStj().model({ architecture: 'resnet18' }).image(8192), 16)],
      ['resnet34 4096² on 40 GiB', gpu(makeStj().model({ architecture: 'resnet34' }).image(4096), 40)],
      [
        'resnet34 4096² capped after an out-of-memory exit',
        gpu(makeStj().model({ architecture: 'resnet34' }).image(4096), 40, 1024),
      ],
      [
        'midl2018 with a fixed tile cut to the cap',
        gpu(makeStj().model({ architecture: 'midl2018' }).image(8192).tileSize(4096), 16, 3000),
      ],
      [
        'too large for the budget',
        gpu(makeStj().model({ architecture: 'resnet34' }).image(16384).minTileSize(8192), 1),
      ],
      [
        'a wasm CPU job',
        { spec: makeStj().resources({ gpus: 0 }).obj().spec, budgetBytes: 3.5 * GiB, backend: 'wasm' },
      ],
      [
        'a body that cannot be planned (SizingError)',
        gpu(makeStj().model({ architecture: 'midl2018' }).image(16), 1),
      ],
    ];
    const pool = new PlannerPool({ threads: 2 });
    try {
      const answers = await Promise.all(cases.map(([, req]) => there(pool, req)));
      for (const [i, [name, req]] of cases.entries()) assert.deepEqual(answers[i], here(req), name);
      assert.ok(
        answers.some((a) => 'error' in a && a.error.startsWith('SizingError: ')),
        'the SizingError case stays a SizingError',
      );
      assert.equal(pool.stats.planned, cases.length);
    } finally {
      await pool.close();
    }
  });

  it('runs at most `threads` threads; the other requests wait for one and all are answered', async () => {
    const pool = new PlannerPool({ threads: 2, workerUrl: FAULTS });
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(most, pool.stats.threads);
    }, 2);
    try {
      const jobs = Array.from({ length: 7 }, (_, i) => pool.run(task(i + 1, 40)));
      assert.equal(pool.stats.queued, 5, 'two running, five waiting');
      const tiles = (await Promise.all(jobs)).map((s) => (s as { tile: number }).tile);
      assert.deepEqual(tiles, [1, 2, 3, 4, 5, 6, 7]);
      assert.ok(most <= 2 && pool.stats.threads === 2, `threads: at most ${most}, now ${pool.stats.threads}`);
      assert.deepEqual(pool.stats, { planned: 7, threads: 2, queued: 0 });
    } finally {
      clearInterval(watch);
      await pool.close();
    }
  });

  it('a thread that dies fails only its own request; the next request gets a new thread', async () => {
    const pool = new PlannerPool({ threads: 1, workerUrl: FAULTS });
    try {
      const [exited, waiting] = await Promise.allSettled([pool.run(task(1, -1)), pool.run(task(2, 1))]);
      assert.equal(exited.status, 'rejected');
      assert.match(String(exited.reason), /the planner thread stopped \(exit code 7\) while sizing/);
      assert.deepEqual(waiting, { status: 'fulfilled', value: { fits: true, tile: 2 } });
      await assert.rejects(pool.run(task(3, -2)), /stopped \(exit code 1: boom in the planner\)/);
      assert.deepEqual(await pool.run(task(4, 1)), { fits: true, tile: 4 });
    } finally {
      await pool.close();
    }
  });

  it("a plan that outgrows its thread's heap is a SizingError naming the image and the limit", async () => {
    // The planner's memory grows with the pixels: 32768² needs ~250 MiB, far above this 32 MiB heap.
    const pool = new PlannerPool({
      threads: 1,
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
    });
    try {
      await assert.rejects(
        pool.run(gpu(makeStj().image(32768), 80)),
        (e: Error) =>
          e instanceof SizingError &&
          /^the operator cannot plan a 32768×32768 px image: the planner ran out of memory \(a planner thread's heap is limited to 32 MiB\)/.test(
            e.message,
          ),
      );
      // A new thread takes the next request.
      const req = gpu(makeStj().image(4096), 16);
      assert.deepEqual(await pool.run(req), sizeTile(req));
    } finally {
      await pool.close();
    }
  });

  it('close() ends every thread and rejects the requests running or waiting; later requests too', async () => {
    const pool = new PlannerPool({ threads: 1, workerUrl: FAULTS });
    const running = pool.run(task(1, 2000));
    const waiting = pool.run(task(2, 1));
    const rejected = [assert.rejects(running, PoolClosedError), assert.rejects(waiting, PoolClosedError)];
    const t0 = performance.now();
    await pool.close();
    await Promise.all(rejected);
    await assert.rejects(pool.run(task(3, 1)), PoolClosedError);
    assert.ok(performance.now() - t0 < 1500, 'close() does not wait for the plan in flight');
    assert.deepEqual(pool.stats, { planned: 0, threads: 0, queued: 0 });
    await pool.close(); // idempotent
  });

  it('idle planner threads do not keep a process alive (one that forgets close() still exits)', () => {
    const pool = new URL('../../operator/cluster/planner-pool.ts', import.meta.url).href;
    const builders = new URL('./builders.ts', import.meta.url).href;
    const script = `
      import { PlannerPool } from ${JSON.stringify(pool)};
      import { makeStj } from ${JSON.stringify(builders)};
      const p = new PlannerPool({ threads: 2 });
      const spec = makeStj().image(4096).obj().spec;
      const s = await Promise.all([1, 2, 3].map((g) => p.run({ spec, budgetBytes: g * 2 ** 30, backend: 'tensorflow' })));
      console.log(JSON.stringify({ threads: p.stats.threads, fits: s.map((x) => x.fits) }));
    `;
    const dir = mkdtempSync(join(tmpdir(), 'tilestream-planner-'));
    const file = join(dir, 'forgets-close.mjs');
    writeFileSync(file, script);
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.signal, null, `the process had to be killed: it did not exit by itself\n${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { threads: 2, fits: [true, true, true] });
  });

  it('uses one thread fewer than the CPUs, at most 2 and at least 1', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 64].map((cpus) => defaultPlannerThreads(cpus)),
      [1, 1, 2, 2, 2],
    );
    assert.throws(() => new PlannerPool({ threads: 0 }), /whole number of threads ≥ 1, got 0/);
  });
});

/** A planner in this thread that counts its plans; `gate` holds them until released. */
function countingPlanner() {
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const p = {
    plans: 0,
    closed: false,
    release,
    async run(req: SizingRequest) {
      p.plans++;
      await gate;
      return sizeTile(req);
    },
    async close() {
      p.closed = true;
    },
  };
  return p satisfies Planner;
}

describe('asyncSizer', () => {
  it('plans a key once, also for jobs asking at the same time; peek() only looks', async () => {
    const planner = countingPlanner();
    const sizer = asyncSizer(planner);
    const req = gpu(makeStj().image(8192), 16);
    assert.equal(sizer.peek(req), undefined);
    const asked = Array.from({ length: 5 }, (_, i) => sizer.size(req, `team/job-${i}`));
    assert.equal(sizer.peek(req), undefined, 'not memoised while in flight');
    planner.release();
    const answers = await Promise.all(asked);
    assert.equal(planner.plans, 1);
    for (const a of answers) assert.deepEqual(a, sizeTile(req));
    assert.deepEqual(sizer.peek(req), sizeTile(req));
    // Another job with the same planning inputs (name, data paths aside) hits the memo.
    const twin = gpu(makeStj('other', 'lab').image(8192), 16);
    assert.deepEqual(await sizer.size(twin, 'lab/other'), sizeTile(req));
    assert.equal(planner.plans, 1);
    // A cap or another budget is another key.
    await sizer.size(gpu(makeStj().image(8192), 16, 2048), 'team/job-0');
    await sizer.size(gpu(makeStj().image(8192), 40), 'team/job-0');
    assert.equal(planner.plans, 3);
    await sizer.close();
    assert.ok(planner.closed);
  });

  it('memoises a spec that cannot be planned as its SizingError', async () => {
    const planner = countingPlanner();
    planner.release();
    const sizer = asyncSizer(planner);
    const req = gpu(makeStj().model({ architecture: 'midl2018' }).image(16), 1);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(
        sizer.size(req, 'team/tiny'),
        (e: Error) => e instanceof SizingError && /an input height of 16 is too small/.test(e.message),
      );
    }
    assert.equal(planner.plans, 1);
    assert.ok(sizer.peek(req) instanceof SizingError);
  });

  it('a fault in a planner thread reaches every job that asked, each named, and is not memoised', async () => {
    const pool = new PlannerPool({ threads: 1 });
    const sizer = asyncSizer(pool);
    // A spec without its streaming section (the API server would have defaulted it) breaks the planner.
    const spec = structuredClone(makeStj().model({ architecture: 'resnet34' }).image(4096).obj().spec);
    delete (spec as Partial<typeof spec>).streaming;
    const req: SizingRequest = { spec, budgetBytes: 40 * GiB, backend: 'tensorflow' };
    try {
      const both = await Promise.allSettled([sizer.size(req, 'team/first'), sizer.size(req, 'lab/second')]);
      for (const [r, job] of [
        [both[0], 'team/first'],
        [both[1], 'lab/second'],
      ] as const) {
        assert.equal(r.status, 'rejected');
        const e = r.reason as SizingFailure;
        assert.ok(e instanceof SizingFailure && e.job === job);
        assert.match(
          e.message,
          new RegExp(
            `^sizing the tile of ${job} \\(resnet34 4096×4096 px on 40\\.0 GiB \\(tensorflow\\)\\) failed: TypeError in a planner thread: .*tileSize`,
          ),
        );
        assert.match(String(e.cause && (e.cause as Error).stack), /in the planner thread:\n.*TypeError/);
      }
      assert.equal(pool.stats.planned, 1, 'both waited for the same plan');
      assert.equal(sizer.peek(req), undefined, 'a fault is not memoised');
      await assert.rejects(sizer.size(req, 'team/first'), SizingFailure);
      assert.equal(pool.stats.planned, 2, 'the next reconcile plans again');
    } finally {
      await sizer.close();
    }
  });

  it('keeps at most `capacity` sizings, dropping the least recently used', async () => {
    const planner = countingPlanner();
    planner.release();
    const sizer = asyncSizer(planner, { capacity: 2 });
    const [a, b, c] = [16, 24, 40].map((g) => gpu(makeStj().image(4096), g)) as [
      SizingRequest,
      SizingRequest,
      SizingRequest,
    ];
    await sizer.size(a, 'x/a');
    await sizer.size(b, 'x/b');
    sizer.peek(a); // a is now the most recently used
    await sizer.size(c, 'x/c');
    assert.ok(sizer.peek(a) && sizer.peek(c));
    assert.equal(sizer.peek(b), undefined);
  });
});
