import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildInventory, className } from '../../operator/cluster/gpu-inventory.ts';
import { gpuMemoryTable, parseGpuMemoryTable, productKey } from '../../operator/cluster/gpu-memory-table.ts';
import { tolerates, untoleratedTaints } from '../../operator/cluster/tolerations.ts';
import { makeNode } from './builders.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const table = gpuMemoryTable();

describe('GPU inventory', () => {
  it('groups heterogeneous GPU nodes into classes by product and memory, largest first', () => {
    const inv = buildInventory(
      [
        makeNode('v100-a').gpus(4, 'Tesla-V100-SXM2-16GB', 16384).obj(),
        makeNode('a100-b').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
        makeNode('a100-a').gpus(8, 'A100-SXM4-40GB', 40960).obj(),
        makeNode('h100-a').gpus(8, 'H100-SXM5-80GB', 81920).obj(),
        makeNode('cpu-only').obj(),
      ],
      { memoryTable: table },
    );
    assert.deepEqual(
      inv.classes.map((c) => [c.name, c.memoryBytes / MiB, c.offers.map((o) => o.node)]),
      [
        ['h100-sxm5-80gb-81920mib', 81920, ['h100-a']],
        ['a100-sxm4-40gb-40960mib', 40960, ['a100-a', 'a100-b']],
        ['tesla-v100-sxm2-16gb-16384mib', 16384, ['v100-a']],
      ],
    );
    const a100 = inv.classes[1];
    assert.deepEqual(a100?.selector, [
      { key: 'nvidia.com/gpu.product', values: ['A100-SXM4-40GB'] },
      { key: 'nvidia.com/gpu.memory', values: ['40960'] },
    ]);
    assert.equal(a100?.offers[0]?.allocatable, 8);
    assert.deepEqual(inv.excluded, [], 'a node without GPUs is not a GPU node at all');
  });

  it('MIG single: the slice is the device (product and memory per MIG device)', () => {
    const inv = buildInventory([makeNode('mig').migSingle(7, 'A100-SXM4-80GB', '1g.10gb', 9856).obj()], {
      memoryTable: table,
    });
    const [c] = inv.classes;
    assert.equal(c?.resourceName, 'nvidia.com/gpu');
    assert.equal(c?.product, 'A100-SXM4-80GB-MIG-1g.10gb');
    assert.equal(c?.migProfile, '1g.10gb');
    assert.equal(c?.memoryBytes, 9856 * MiB);
    assert.equal(c?.offers[0]?.allocatable, 7);
  });

  it('MIG mixed: one class per profile resource, memory from the profile label or, without it, the profile name', () => {
    const node = makeNode('mixed')
      .migMixed('A100-SXM4-80GB', '3g.40gb', 2, 40192)
      .migMixed('A100-SXM4-80GB', '1g.10gb', 1)
      .obj();
    const inv = buildInventory([node], { memoryTable: table });
    const byRes = Object.fromEntries(inv.classes.map((c) => [c.resourceName, c]));
    const big = byRes['nvidia.com/mig-3g.40gb'];
    const small = byRes['nvidia.com/mig-1g.10gb'];
    assert.equal(big?.memoryBytes, 40192 * MiB);
    assert.equal(big?.memorySource, 'gfd');
    assert.deepEqual(big?.selector, [
      { key: 'nvidia.com/gpu.product', values: ['A100-SXM4-80GB'] },
      { key: 'nvidia.com/mig-3g.40gb.memory', values: ['40192'] },
    ]);
    assert.equal(small?.memoryBytes, 10e9, 'decimal gigabytes of the profile name: a lower bound');
    assert.equal(small?.memorySource, 'mig-profile');
    assert.equal(small?.product, 'A100-SXM4-80GB-MIG-1g.10gb');
  });

  it('without GFD, memory comes from the product table (GKE accelerator label), and unknown products are excluded with the fix', () => {
    const inv = buildInventory(
      [
        makeNode('gke-t4').gpusWithoutGfd(1, ['cloud.google.com/gke-accelerator', 'nvidia-tesla-t4']).obj(),
        makeNode('mystery').gpusWithoutGfd(2, ['nvidia.com/gpu.product', 'Quantum-X1']).obj(),
        makeNode('bare').gpusWithoutGfd(1).obj(),
      ],
      { memoryTable: table },
    );
    assert.equal(inv.classes.length, 1);
    const t4 = inv.classes[0];
    assert.equal(t4?.memoryBytes, 15360 * MiB);
    assert.equal(t4?.memorySource, 'table');
    assert.deepEqual(t4?.selector, [
      { key: 'cloud.google.com/gke-accelerator', values: ['nvidia-tesla-t4'] },
    ]);
    assert.deepEqual(
      inv.excluded.map((x) => x.node),
      ['bare', 'mystery'],
    );
    assert.match(inv.excluded[1]?.reason ?? '', /'Quantum-X1' is not in the GPU memory table/);
    assert.match(inv.excluded[0]?.reason ?? '', /install NVIDIA GPU Feature Discovery/);
  });

  it('a configured table entry overrides the default and adds products', () => {
    const custom = gpuMemoryTable(
      parseGpuMemoryTable('gpuMemory:\n  Quantum-X1: 24Gi\n  Tesla-T4: 15000\n', 't.yaml'),
    );
    const inv = buildInventory(
      [
        makeNode('q').gpusWithoutGfd(1, ['nvidia.com/gpu.product', 'Quantum-X1']).obj(),
        makeNode('t').gpusWithoutGfd(1, ['nvidia.com/gpu.product', 'Tesla-T4']).obj(),
      ],
      { memoryTable: custom },
    );
    assert.deepEqual(
      inv.classes.map((c) => c.memoryBytes),
      [24 * GiB, 15000 * MiB],
    );
  });

  it('leaves cordoned and NotReady nodes out, saying why', () => {
    const inv = buildInventory(
      [
        makeNode('ok').gpus(1, 'L4', 23034).obj(),
        makeNode('cordoned').gpus(1, 'L4', 23034).cordoned().obj(),
        makeNode('down').gpus(1, 'L4', 23034).notReady().obj(),
      ],
      { memoryTable: table },
    );
    assert.deepEqual(
      inv.classes[0]?.offers.map((o) => o.node),
      ['ok'],
    );
    assert.deepEqual(inv.excluded, [
      { node: 'cordoned', reason: 'cordoned (spec.unschedulable)' },
      { node: 'down', reason: 'not Ready (Ready=Unknown)' },
    ]);
  });

  it('time-sliced GPUs give each pod its share of the memory', () => {
    const inv = buildInventory(
      [makeNode('ts').gpus(2, 'A100-SXM4-40GB', 40960).shared('time-slicing', 4).obj()],
      {
        memoryTable: table,
      },
    );
    assert.equal(inv.classes[0]?.memoryBytes, (40960 / 4) * MiB);
    assert.equal(inv.classes[0]?.offers[0]?.allocatable, 8);
  });

  it('a class whose nodes were recognised by different labels is pinned by hostname', () => {
    const inv = buildInventory(
      [
        makeNode('gfd').gpusWithoutGfd(1, ['nvidia.com/gpu.product', 'Tesla-T4']).obj(),
        makeNode('gke').gpusWithoutGfd(1, ['cloud.google.com/gke-accelerator', 'Tesla-T4']).obj(),
      ],
      { memoryTable: table },
    );
    assert.equal(inv.classes.length, 1);
    assert.deepEqual(inv.classes[0]?.selector, [{ key: 'kubernetes.io/hostname', values: ['gfd', 'gke'] }]);
  });

  it('class names are stable DNS-like strings', () => {
    assert.equal(
      className('NVIDIA A100-SXM4-80GB (MIG 3g.40gb)', 40192 * MiB),
      'nvidia-a100-sxm4-80gb-mig-3g-40gb-40192mib',
    );
  });
});

describe('GPU memory table', () => {
  it('parses quantities and MiB numbers, top level or under gpuMemory', () => {
    assert.deepEqual(
      [...parseGpuMemoryTable('{"A": "16Gi", "B": 1024}', 'x.json')],
      [
        ['A', 16 * GiB],
        ['B', GiB],
      ],
    );
  });
  it('names the bad entry and the fix', () => {
    assert.throws(
      () => parseGpuMemoryTable('T4: 16GB\n', 'values.yaml'),
      /values\.yaml: T4: .*'16GB'.*write e\.g\. '16Gi'/,
    );
    assert.throws(
      () => parseGpuMemoryTable('- a\n- b\n', 'v.yaml'),
      /expected a mapping of GPU product to memory/,
    );
    assert.throws(() => parseGpuMemoryTable('T4: [1]\n', 'v.yaml'), /T4: expected a quantity/);
  });
  it('normalises product spellings', () => {
    assert.equal(productKey('NVIDIA Tesla T4'), productKey('tesla-t4'));
    assert.equal(productKey('nvidia-tesla-t4'), 't4');
  });
});

describe('taints and tolerations (scheduler semantics)', () => {
  const gpuTaint = { key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' as const };
  it('matches by key, value, operator and effect', () => {
    assert.equal(tolerates({ key: 'nvidia.com/gpu', operator: 'Exists' }, gpuTaint), true);
    assert.equal(tolerates({ key: 'nvidia.com/gpu', operator: 'Equal', value: 'present' }, gpuTaint), true);
    assert.equal(tolerates({ key: 'nvidia.com/gpu', value: 'absent' }, gpuTaint), false);
    assert.equal(
      tolerates({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoExecute' }, gpuTaint),
      false,
    );
    assert.equal(tolerates({ operator: 'Exists' }, gpuTaint), true, 'empty key with Exists tolerates all');
  });
  it('PreferNoSchedule never keeps a pod off', () => {
    assert.deepEqual(untoleratedTaints([{ key: 'x', effect: 'PreferNoSchedule' }, gpuTaint], []), [gpuTaint]);
  });
});
