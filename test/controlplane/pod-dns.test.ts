// The node agent's DNS preload (pod-dns.ts): in a process started as the agent starts pod processes,
// a pod's `<hostname>.<subdomain>` (with or without the namespace's search suffixes) resolves to
// the address in the hosts file, through dns.lookup and node:dns/promises alike; other names go to
// the system resolver, and a pod not in the file does not resolve.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { POD_HOSTS_FILE_ENV, resolvePodHost } from './pod-dns.ts';

const work = mkdtempSync(join(tmpdir(), 'pod-dns-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('pod-dns preload', () => {
  const hosts = [{ name: 'job-0-0.job-ranks', namespace: 'team', address: '127.0.0.1' }];

  it('matches the short name and the namespace search suffixes only', () => {
    for (const n of [
      'job-0-0.job-ranks',
      'JOB-0-0.job-ranks.team',
      'job-0-0.job-ranks.team.svc.cluster.local.',
    ])
      assert.equal(resolvePodHost(n, hosts), '127.0.0.1', n);
    for (const n of ['job-0-1.job-ranks', 'job-0-0.job-ranks.other', 'job-0-0'])
      assert.equal(resolvePodHost(n, hosts), undefined, n);
  });

  it('answers dns.lookup and node:dns/promises in a process it is preloaded into', () => {
    const file = join(work, 'hosts.json');
    writeFileSync(file, JSON.stringify(hosts));
    const script = `
      import dns from 'node:dns';
      import { lookup } from 'node:dns/promises';
      const out = [await lookup('job-0-0.job-ranks'), await lookup('job-0-0.job-ranks.team.svc', { all: true })];
      out.push(await new Promise((r) => dns.lookup('job-0-0.job-ranks', (e, a) => r(a))));
      out.push(await lookup('job-0-1.job-ranks').catch(() => 'unresolved'));
      console.log(JSON.stringify(out));`;
    const text = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: {
        ...process.env,
        [POD_HOSTS_FILE_ENV]: file,
        NODE_OPTIONS: `--import=${new URL('./pod-dns.ts', import.meta.url).href}`,
      },
      encoding: 'utf8',
    });
    assert.deepEqual(JSON.parse(text), [
      { address: '127.0.0.1', family: 4 },
      [{ address: '127.0.0.1', family: 4 }],
      '127.0.0.1',
      'unresolved',
    ]);
  });
});
