import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  fakeGpuNode,
  gfdLabels,
  gpuResource,
  microTime,
  nodeNamesOf,
  rfc3339,
  STANDARD_GPU_CLASSES,
} from './gpu-node-spec.ts';

describe('fake GPU node specs', () => {
  it('labels whole-GPU classes with GFD memory in MiB, product and count', () => {
    const c40 = STANDARD_GPU_CLASSES.find((c) => c.name === 'gpu-40g');
    assert.ok(c40);
    const l = gfdLabels(c40);
    assert.equal(l['nvidia.com/gpu.memory'], '40960');
    assert.equal(l['nvidia.com/gpu.product'], 'A100-SXM4-40GB');
    assert.equal(l['nvidia.com/gpu.count'], '8');
    assert.equal(l['nvidia.com/mig.strategy'], 'none');
  });
  it('describes the MIG device under the single strategy and offers nvidia.com/gpu', () => {
    const mig = STANDARD_GPU_CLASSES.find((c) => c.mig);
    assert.ok(mig?.mig);
    const l = gfdLabels(mig);
    assert.equal(l['nvidia.com/gpu.product'], 'A100-SXM4-80GB-MIG-1g.10gb');
    assert.equal(l['nvidia.com/gpu.memory'], String(mig.mig.memoryMiB));
    assert.equal(l['nvidia.com/mig.strategy'], 'single');
    assert.deepEqual(gpuResource(mig), { name: 'nvidia.com/gpu', count: 7 });
  });
  it('uses a per-profile resource and labels under the mixed strategy', () => {
    const cls = {
      name: 'm',
      mig: {
        profile: '3g.40gb',
        strategy: 'mixed' as const,
        parentProduct: 'H100-SXM5-80GB',
        memoryMiB: 40192,
        count: 2,
      },
    };
    const l = gfdLabels(cls);
    assert.equal(l['nvidia.com/mig-3g.40gb.memory'], '40192');
    assert.equal(l['nvidia.com/gpu.product'], 'H100-SXM5-80GB');
    assert.deepEqual(gpuResource(cls), { name: 'nvidia.com/mig-3g.40gb', count: 2 });
    const node = fakeGpuNode(cls, 'm-0', rfc3339());
    assert.equal(node.status?.allocatable?.['nvidia.com/mig-3g.40gb'], '2');
  });
  it('gives every node allocatable pods > 0 and capacity = allocatable', () => {
    for (const cls of STANDARD_GPU_CLASSES) {
      for (const name of nodeNamesOf({ ...cls, nodes: 2 })) {
        const n = fakeGpuNode(cls, name, rfc3339());
        assert.ok(Number(n.status?.allocatable?.pods) > 0);
        assert.deepEqual(n.status?.capacity, n.status?.allocatable);
        assert.equal(n.metadata?.labels?.['kubernetes.io/hostname'], name);
      }
    }
  });
  it('rejects a whole-GPU class without memory', () => {
    assert.throws(() => gfdLabels({ name: 'x', product: 'p', gpuCount: 1 }), /memoryMiB/);
  });
  it('formats MicroTime with exactly six fractional digits and Time with none', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }), (d) => {
        assert.match(microTime(d), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
        assert.match(rfc3339(d), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
        assert.equal(new Date(microTime(d)).getTime(), d.getTime());
      }),
    );
  });
});
