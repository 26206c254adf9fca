import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildInventory } from '../../operator/cluster/gpu-inventory.ts';
import { gpuMemoryTable } from '../../operator/cluster/gpu-memory-table.ts';
import { gpuUsage, type Placement, planPlacement, sizingRequests } from '../../operator/cluster/placement.ts';
import {
  memoizedSizer,
  SizingError,
  type SizingRequest,
  sizeTile,
  smallerTile,
} from '../../operator/cluster/tile-sizing.ts';
import type { Node } from '../../operator/kube/types.ts';
import { makeNode, makePod, makeStj } from './builders.ts';

const GiB = 2 ** 30;
const size = memoizedSizer();
const table = gpuMemoryTable();

const cluster = (): Node[] => [
  makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
  makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
  makeNode('h100-0').gpus(8, 'H100-SXM5-80GB', 81920).obj(),
];
/**
 * smallcnn on 14336² images: 16 and 40 GiB both fit 2×2 tiles, which the planner makes with its
 * lean 7200 px; 80 GiB holds the whole image as one tile.
 */
const bigImages = () => makeStj().image(14336);

function place(
  stj: ReturnType<typeof makeStj>,
  nodes: Node[] = cluster(),
  o: { usage?: Parameters<typeof gpuUsage>[0]; maxTile?: number } = {},
): Placement {
  return planPlacement({
    spec: stj.obj().spec,
    inventory: buildInventory(nodes, { memoryTable: table }),
    usage: gpuUsage(o.usage ?? []),
    size,
    ...(o.maxTile !== undefined && { maxTile: o.maxTile }),
  });
}

const chosen = (p: Placement) =>
  p.kind === 'gpu' ? `${p.cls.product}@${p.tile}` : `${p.kind}:${'reason' in p ? p.reason : ''}`;

describe('placement policy', () => {
  it('auto tile: the class with the largest tile among those with free GPUs', () => {
    const p = place(bigImages());
    assert.equal(p.kind, 'gpu');
    assert.equal(chosen(p), 'H100-SXM5-80GB@14336', 'the whole image fits on 80 GiB');
    assert.ok(
      p.kind === 'gpu' && p.prediction && p.prediction.conventionalBytes > p.prediction.streamedBytes * 0.99,
    );
  });

  it('skips a class whose GPUs are all taken, falling back to the largest tile overall when none is free', () => {
    const busyH100 = Array.from({ length: 8 }, (_, i) =>
      makePod('other-0', 'team', { name: `h${i}`, node: 'h100-0' }),
    );
    // Next best: 2×2 tiles, which the 16 GiB V100 holds as well as the A100 — the smaller GPU wins.
    assert.equal(chosen(place(bigImages(), cluster(), { usage: busyH100 })), 'Tesla-V100-SXM2-16GB@7200');
    const busyV100 = Array.from({ length: 4 }, (_, i) =>
      makePod('o', 'team', { name: `v${i}`, node: 'v100-0' }),
    );
    assert.equal(
      chosen(place(bigImages(), cluster(), { usage: [...busyH100, ...busyV100] })),
      'A100-SXM4-40GB@7200',
    );
    const all = [
      ...busyH100,
      ...Array.from({ length: 8 }, (_, i) => makePod('o', 'team', { name: `a${i}`, node: 'a100-0' })),
      ...Array.from({ length: 4 }, (_, i) => makePod('o', 'team', { name: `v${i}`, node: 'v100-0' })),
    ];
    assert.equal(chosen(place(bigImages(), cluster(), { usage: all })), 'H100-SXM5-80GB@14336');
    const finished = busyH100.map((p) => ({ ...p, status: { ...p.status, phase: 'Succeeded' as const } }));
    assert.equal(
      chosen(place(bigImages(), cluster(), { usage: finished })),
      'H100-SXM5-80GB@14336',
      'finished pods free their GPU',
    );
  });

  it('a fixed tileSize keeps only classes where it fits, and prefers the smallest GPU that holds it', () => {
    assert.equal(chosen(place(bigImages().tileSize(7200))), 'Tesla-V100-SXM2-16GB@7200');
    assert.equal(chosen(place(bigImages().tileSize(12000))), 'A100-SXM4-40GB@12000');
  });

  it('minGpuMemory filters GPUs whatever the tile', () => {
    assert.equal(
      chosen(place(bigImages().tileSize(8000).resources({ minGpuMemory: '50Gi' }))),
      'H100-SXM5-80GB@8000',
    );
    const p = place(bigImages().resources({ minGpuMemory: '100Gi' }));
    assert.equal(chosen(p), 'unplaceable:NoGPUWithSufficientMemory');
    assert.match(
      p.kind === 'unplaceable' ? p.message : '',
      /minGpuMemory is 100Gi \(100 GiB\) but the largest usable GPU has 80\.0 GiB/,
    );
  });

  it('no class holds even the minimum tile: NoGPUWithSufficientMemory with the numbers and the fix', () => {
    const small = [makeNode('mig').migSingle(7, 'A100-SXM4-80GB', '1g.5gb', 4864).obj()];
    const p = place(makeStj().model({ architecture: 'resnet18' }).image(8192), small);
    assert.equal(p.kind, 'unplaceable');
    assert.equal(p.kind === 'unplaceable' && p.reason, 'NoGPUWithSufficientMemory');
    const msg = p.kind === 'unplaceable' ? p.message : '';
    assert.match(msg, /the minimum tile \(224 px\) needs 5\.6 GiB/);
    assert.match(
      msg,
      /the largest GPU \(A100-SXM4-80GB-MIG-1g\.5gb, class a100-sxm4-80gb-mig-1g-5gb-4864mib\) has 4\.8 GiB/,
    );
    assert.match(msg, /add a node with at least 7\.0 GiB of GPU memory/);
  });

  it('a class on tainted nodes is usable only with a matching toleration; the GPU resource taint is tolerated by default', () => {
    const nodes = [
      makeNode('a100-0')
        .gpus(8, 'A100-SXM4-40GB', 40960)
        .taint('nvidia.com/gpu', 'NoSchedule', 'present')
        .obj(),
      makeNode('h100-0').gpus(8, 'H100-SXM5-80GB', 81920).taint('dedicated', 'NoSchedule', 'research').obj(),
    ];
    assert.equal(chosen(place(bigImages(), nodes)), 'A100-SXM4-40GB@7200');
    const tolerant = bigImages().resources({
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'research', effect: 'NoSchedule' }],
    });
    assert.equal(chosen(place(tolerant, nodes)), 'H100-SXM5-80GB@14336');
  });

  it('nodeSelector narrows the classes', () => {
    const nodes = [
      ...cluster().slice(0, 2),
      makeNode('h100-0').gpus(8, 'H100-SXM5-80GB', 81920).label('zone', 'b').obj(),
    ];
    assert.equal(
      chosen(place(bigImages().resources({ nodeSelector: { zone: 'b' } }), nodes)),
      'H100-SXM5-80GB@14336',
    );
    const none = place(bigImages().resources({ nodeSelector: { zone: 'c' } }), nodes);
    assert.equal(chosen(none), 'unplaceable:NoGPUNodes');
    assert.match(
      none.kind === 'unplaceable' ? none.message : '',
      /3 GPU node offer\(s\) exist but none admits this job/,
    );
  });

  it('no usable GPU node at all: NoGPUNodes naming the excluded nodes', () => {
    const p = place(bigImages(), [
      makeNode('c').gpus(1, 'L4', 23034).cordoned().obj(),
      makeNode('u').gpusWithoutGfd(1, ['nvidia.com/gpu.product', 'Quantum-X1']).obj(),
    ]);
    assert.equal(chosen(p), 'unplaceable:NoGPUNodes');
    const msg = p.kind === 'unplaceable' ? p.message : '';
    assert.match(msg, /c: cordoned/);
    assert.match(msg, /u: offers 1 nvidia\.com\/gpu \(product 'Quantum-X1'\)/);
  });

  it('a TensorFlow.js model needs a numeric tile (InvalidSpec otherwise), and then takes the largest GPU', () => {
    const tfjs = () =>
      makeStj().model({ architecture: 'tfjs', tfjsModel: 'model/model.json', bodyEnd: 'conv5' });
    const p = place(tfjs());
    assert.equal(chosen(p), 'unplaceable:InvalidSpec');
    assert.match(
      p.kind === 'unplaceable' ? p.message : '',
      /set spec\.streaming\.tileSize to a number of pixels/,
    );
    const q = place(tfjs().tileSize(1024));
    assert.equal(chosen(q), 'H100-SXM5-80GB@1024');
    assert.equal(q.kind === 'gpu' && q.prediction, undefined, 'no prediction without the model');
  });

  it('a CPU job plans for the wasm heap, or for spec.resources.memory on the cpu backend', () => {
    const wasm = place(bigImages().resources({ gpus: 0 }), []);
    assert.equal(wasm.kind, 'cpu');
    assert.equal(wasm.kind === 'cpu' && wasm.budgetBytes, 3.5 * GiB);
    const cpu = bigImages()
      .resources({ gpus: 0 })
      .spec((s) => {
        (s.training as Record<string, unknown>).backend = 'cpu';
      });
    assert.equal(chosen(place(cpu, [])), 'unplaceable:InvalidSpec');
    const sized = place(cpu.resources({ memory: '8Gi' }), []);
    assert.equal(sized.kind === 'cpu' && sized.budgetBytes, 8 * GiB);
  });

  it('after an out-of-memory exit the tile is capped (rounded down to the stride), and the smallest GPU that holds it wins', () => {
    // Auto: the planner's tile below the cap (3×3 tiles of 4832 px), on the smallest GPU holding it.
    assert.equal(chosen(place(bigImages(), cluster(), { maxTile: 7_010 })), 'Tesla-V100-SXM2-16GB@4832');
    // A fixed tile above the cap is cut to it, on the stride (16): 10000 needs more than 16 GiB.
    assert.equal(
      chosen(place(bigImages().tileSize(12_000), cluster(), { maxTile: 10_010 })),
      'A100-SXM4-40GB@10000',
    );
  });
});

describe('tile sizing', () => {
  it('more GPU memory never gives a smaller tile (property)', () => {
    const spec = makeStj().image(8192).obj().spec;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 }), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const s1 = size({ spec, budgetBytes: (lo * GiB) / 4, backend: 'tensorflow' });
        const s2 = size({ spec, budgetBytes: (hi * GiB) / 4, backend: 'tensorflow' });
        if (s1.fits)
          assert.ok(
            s2.fits && s2.tile >= s1.tile,
            `${lo / 4} GiB → ${s1.tile}, ${hi / 4} GiB → ${JSON.stringify(s2)}`,
          );
      }),
      { numRuns: 25 },
    );
  });

  it('smallerTile shrinks by a quarter on the stride, stops at the minimum', () => {
    const spec = makeStj().image(8192).minTileSize(256).obj().spec;
    assert.equal(smallerTile(spec, 1024), 768);
    assert.equal(smallerTile(spec, 300), 256);
    assert.equal(smallerTile(spec, 256), undefined);
  });

  it('a body that cannot be planned is a SizingError (a condition, not a crash)', () => {
    const spec = makeStj().model({ architecture: 'midl2018' }).image(16).obj().spec;
    assert.throws(
      () => sizeTile({ spec, budgetBytes: GiB, backend: 'tensorflow' }),
      (e: Error) => e instanceof SizingError && /an input height of 16 is too small/.test(e.message),
    );
  });
});

describe('sizingRequests', () => {
  it('lists exactly the sizings planPlacement asks for: each admitting class, the cap, or the CPU budget', () => {
    const nodes = [
      makeNode('v100-0').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
      makeNode('a100-0').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
      makeNode('h100-0').gpus(8, 'H100-SXM5-80GB', 81920).taint('dedicated', 'NoSchedule', 'x').obj(),
    ];
    const inventory = buildInventory(nodes, { memoryTable: gpuMemoryTable() });
    const asked = (spec: ReturnType<typeof makeStj>, maxTile?: number) => {
      const seen: SizingRequest[] = [];
      planPlacement({
        spec: spec.obj().spec,
        inventory,
        usage: new Map(),
        size: (req) => {
          seen.push(req);
          return size(req);
        },
        ...(maxTile !== undefined && { maxTile }),
      });
      return seen;
    };
    const cases: [string, ReturnType<typeof makeStj>, number | undefined][] = [
      // The tainted H100 does not admit the job.
      ['a GPU job', makeStj().image(8192), undefined],
      ['after an out-of-memory exit', makeStj().image(8192), 2048],
      ['minGpuMemory', makeStj().image(8192).resources({ minGpuMemory: '24Gi' }), undefined],
      ['no class large enough', makeStj().image(8192).resources({ minGpuMemory: '100Gi' }), undefined],
      ['a wasm CPU job', makeStj().resources({ gpus: 0 }), 1024],
      [
        'a cpu-backend job without memory (no budget: nothing to size)',
        makeStj()
          .resources({ gpus: 0 })
          .spec((s) => {
            (s.training as Record<string, unknown>).backend = 'cpu';
          }),
        undefined,
      ],
    ];
    for (const [name, spec, maxTile] of cases) {
      assert.deepEqual(
        sizingRequests(spec.obj().spec, inventory, maxTile)
          .map((r) => JSON.stringify(r))
          .sort(),
        asked(spec, maxTile)
          .map((r) => JSON.stringify(r))
          .sort(),
        name,
      );
    }
    assert.deepEqual(
      sizingRequests(makeStj().image(8192).obj().spec, inventory)
        .map((r) => r.budgetBytes / GiB)
        .sort((a, b) => a - b),
      [16, 40],
    );
  });
});
