// The CPU allowance that sizes TensorFlow's thread pools: cgroup v1 and v2 CFS quotas read through
// an injected file reader, the tightest limit on the way to the root winning, capped by the affinity.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  cgroupCpuQuota,
  cpuAllowance,
  parseCfsQuota,
  parseCpuMax,
} from '../../trainer/backend/cpu-allowance.ts';

/** A file reader over a fixed set of files; any other path is unreadable. */
const files =
  (contents: Record<string, string>) =>
  (path: string): string | undefined =>
    contents[path];

describe('parseCpuMax (cgroup v2 cpu.max)', () => {
  const cases: Array<[string, number | undefined]> = [
    ['max 100000\n', undefined],
    ['max', undefined],
    ['250000 100000\n', 2.5],
    ['50000 100000', 0.5],
    ['400000 200000', 2],
    ['150000', 1.5], // the period defaults to 100000 µs
    ['0 100000', undefined],
    ['', undefined],
  ];
  for (const [text, want] of cases) {
    it(`${JSON.stringify(text)} → ${want}`, () => assert.equal(parseCpuMax(text), want));
  }
});

describe('parseCfsQuota (cgroup v1 cpu.cfs_quota_us, cpu.cfs_period_us)', () => {
  const cases: Array<[string, string, number | undefined]> = [
    ['-1\n', '100000\n', undefined],
    ['200000\n', '100000\n', 2],
    ['50000', '100000', 0.5],
    ['100000', '0', undefined],
    ['', '100000', undefined],
  ];
  for (const [quota, period, want] of cases) {
    it(`${JSON.stringify(quota)} / ${JSON.stringify(period)} → ${want}`, () =>
      assert.equal(parseCfsQuota(quota, period), want));
  }
});

describe('cgroupCpuQuota', () => {
  const pod = '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice';
  const container = `${pod}/cri-containerd-abc.scope`;
  const v2 = (limits: Record<string, string>) =>
    files({
      '/proc/self/cgroup': `0::${container}\n`,
      ...Object.fromEntries(
        Object.entries(limits).map(([dir, max]) => [`/sys/fs/cgroup${dir}/cpu.max`, max]),
      ),
    });

  it('v2: a pod limit above an unlimited container applies (the tightest on the way to the root)', () => {
    const read = v2({
      [container]: 'max 100000\n',
      [pod]: '400000 100000\n',
      '/kubepods.slice/kubepods-burstable.slice': 'max 100000\n',
      '/kubepods.slice': '3200000 100000\n',
    });
    assert.equal(cgroupCpuQuota(read), 4);
  });

  it('v2: a container limit tighter than its pod wins', () => {
    assert.equal(cgroupCpuQuota(v2({ [container]: '150000 100000', [pod]: '400000 100000' })), 1.5);
  });

  it('v2: no limit anywhere, or only the root cgroup, gives undefined', () => {
    assert.equal(cgroupCpuQuota(v2({ [container]: 'max 100000', [pod]: 'max 100000' })), undefined);
    assert.equal(cgroupCpuQuota(files({ '/proc/self/cgroup': '0::/\n' })), undefined);
  });

  it("v2 in a pod with a cgroup namespace: /proc/self/cgroup says 0::/ and the mount's root is the container's cgroup", () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '200000 100000\n' });
    assert.equal(cgroupCpuQuota(read), 2);
  });

  it("v1 in a container without a cgroup namespace: the host path is absent, the mount's root holds the limit", () => {
    const read = files({
      '/proc/self/cgroup': '4:cpu,cpuacct:/kubepods/burstable/pod1/ctr\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '100000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupCpuQuota(read), 1);
  });

  it('v1: reads cpu.cfs_quota_us and cpu.cfs_period_us under the cpu,cpuacct mount, up to the root', () => {
    const dir = '/sys/fs/cgroup/cpu,cpuacct';
    const read = files({
      '/proc/self/cgroup':
        '12:memory:/kubepods/burstable/pod1/ctr\n4:cpu,cpuacct:/kubepods/burstable/pod1/ctr\n',
      [`${dir}/kubepods/burstable/pod1/ctr/cpu.cfs_quota_us`]: '-1\n',
      [`${dir}/kubepods/burstable/pod1/ctr/cpu.cfs_period_us`]: '100000\n',
      [`${dir}/kubepods/burstable/pod1/cpu.cfs_quota_us`]: '250000\n',
      [`${dir}/kubepods/burstable/pod1/cpu.cfs_period_us`]: '100000\n',
      [`${dir}/kubepods/cpu.cfs_quota_us`]: '-1\n',
      [`${dir}/kubepods/cpu.cfs_period_us`]: '100000\n',
    });
    assert.equal(cgroupCpuQuota(read), 2.5);
  });

  it('v1: a separate cpu controller mounted at cpu/ (docker), limit on its own cgroup', () => {
    const read = files({
      '/proc/self/cgroup': '3:cpuacct:/docker/abc\n2:cpu:/docker/abc\n1:name=systemd:/docker/abc\n',
      '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us': '300000',
      '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us': '100000',
    });
    assert.equal(cgroupCpuQuota(read), 3);
  });

  it('v1: a quota without its period, or controllers other than cpu, are ignored', () => {
    const read = files({
      '/proc/self/cgroup': '4:cpuacct:/a\n2:cpu:/a\n',
      '/sys/fs/cgroup/cpu/a/cpu.cfs_quota_us': '100000',
      '/sys/fs/cgroup/cpuacct/a/cpu.cfs_quota_us': '100000',
      '/sys/fs/cgroup/cpuacct/a/cpu.cfs_period_us': '100000',
    });
    assert.equal(cgroupCpuQuota(read), undefined);
  });

  it('hybrid v1 + v2: the smaller of the two limits counts', () => {
    const read = files({
      '/proc/self/cgroup': '2:cpu:/job\n0::/job\n',
      '/sys/fs/cgroup/cpu/job/cpu.cfs_quota_us': '200000',
      '/sys/fs/cgroup/cpu/job/cpu.cfs_period_us': '100000',
      '/sys/fs/cgroup/job/cpu.max': '100000 100000',
    });
    assert.equal(cgroupCpuQuota(read), 1);
  });

  it('an unreadable /proc/self/cgroup gives undefined; the hierarchy root can be moved', () => {
    assert.equal(cgroupCpuQuota(files({})), undefined);
    const read = files({ '/proc/self/cgroup': '0::/x\n', '/host/cgroup/x/cpu.max': '200000 100000' });
    assert.equal(cgroupCpuQuota(read, '/host/cgroup'), 2);
  });
});

describe('cpuAllowance', () => {
  const quota = (max: string) =>
    files({ '/proc/self/cgroup': '0::/job\n', '/sys/fs/cgroup/job/cpu.max': max });
  const cases: Array<[string, string, number, { cpus: number; source: string }]> = [
    ['a fractional quota rounds up', '150000 100000', 8, { cpus: 2, source: 'cgroup CPU quota 1.50' }],
    [
      'a quota below one CPU still gives one thread',
      '50000 100000',
      8,
      { cpus: 1, source: 'cgroup CPU quota 0.50' },
    ],
    [
      'a quota above the affinity: the affinity',
      '1600000 100000',
      8,
      { cpus: 8, source: 'CPU affinity (8 CPUs)' },
    ],
    [
      'a quota that rounds up to the affinity: the affinity',
      '750000 100000',
      8,
      { cpus: 8, source: 'CPU affinity (8 CPUs)' },
    ],
    ['no quota: the affinity', 'max 100000', 3, { cpus: 3, source: 'CPU affinity (3 CPUs)' }],
  ];
  for (const [name, max, affinity, want] of cases) {
    it(`${name} (cpu.max ${max}, ${affinity} CPUs)`, () =>
      assert.deepEqual(cpuAllowance(quota(max), affinity), want));
  }
});
