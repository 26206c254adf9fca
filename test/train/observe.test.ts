// Metrics and progress reports of the trainer: the /metrics exposition, and the server-side apply
// of status.progress to the job's own status (nock stands in for the API server).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import nock from 'nock';
import { createTrainerMetrics, serveMetrics } from '../../trainer/train/observe.ts';
import { createStatusReporter, TRAINER_FIELD_MANAGER } from '../../trainer/train/report-k8s.ts';

const SERVER = 'https://k8s.test.invalid:6443';

const work = mkdtempSync(join(tmpdir(), 'kc-'));
after(() => rmSync(work, { recursive: true, force: true }));
let kubeconfigs = 0;

function kubeconfig(): string {
  const file = join(work, `config-${kubeconfigs++}`);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: SERVER, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 'trainer-token' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  return file;
}

before(() => nock.disableNetConnect());
// The metrics test talks to its own server on loopback.
before(() => nock.enableNetConnect('127.0.0.1'));
after(() => nock.enableNetConnect());
afterEach(() => {
  nock.cleanAll();
});

describe('trainer metrics', () => {
  it('serves the tilestream_trainer_* metrics with the job labels and no image identifiers', async () => {
    const m = createTrainerMetrics({ namespace: 'pathology', name: 'lesions' });
    m.pixels.inc(512 * 512);
    m.skipped.inc({ reason: 'truncated' });
    m.stepDuration.observe(1.5);
    const { server, port } = await serveMetrics(m.registry, 0, '127.0.0.1');
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(
        text,
        /tilestream_trainer_pixels_processed_total\{namespace="pathology",job="lesions"\} 262144/,
      );
      assert.match(
        text,
        /tilestream_trainer_skipped_images_total\{reason="truncated",namespace="pathology",job="lesions"\} 1/,
      );
      assert.match(text, /tilestream_trainer_image_step_duration_seconds_bucket/);
      assert.doesNotMatch(text, /path=|image=/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    } finally {
      server.close();
    }
  });
});

describe('status reports to Kubernetes', () => {
  it('is off without in-cluster credentials, even when a developer has a KUBECONFIG', () => {
    assert.equal(
      createStatusReporter({ namespace: 'a', name: 'b' }, 10, () => {}, { KUBECONFIG: kubeconfig() }),
      undefined,
    );
  });

  it('server-side applies status.progress under its own field manager, coalescing reports', async () => {
    const bodies: unknown[] = [];
    const scope = nock(SERVER, { reqheaders: { authorization: 'Bearer trainer-token' } })
      .matchHeader('content-type', 'application/apply-patch+yaml')
      .patch(
        '/apis/tilestream.io/v1alpha1/namespaces/pathology/streamingtrainingjobs/lesions/status',
        (body) => {
          bodies.push(body);
          return true;
        },
      )
      .query({ fieldManager: TRAINER_FIELD_MANAGER, force: 'true' })
      .reply(200, {});
    const reporter = createStatusReporter({ namespace: 'pathology', name: 'lesions' }, 60_000, () => {}, {
      TILESTREAM_STATUS_KUBECONFIG: kubeconfig(),
    });
    assert.ok(reporter);
    reporter.report({ progress: { step: 1, percent: '1%' } });
    reporter.report({ progress: { step: 2, percent: '2%' } });
    reporter.report({ lastCheckpoint: { step: 2 } });
    await reporter.flush();
    scope.done();
    assert.equal(bodies.length, 1, 'three reports within the interval make one request');
    const body = bodies[0] as { kind: string; metadata: { name: string }; status: Record<string, unknown> };
    assert.equal(body.kind, 'StreamingTrainingJob');
    assert.equal(body.metadata.name, 'lesions');
    assert.deepEqual(body.status, { progress: { step: 2, percent: '2%' }, lastCheckpoint: { step: 2 } });
  });

  it('applies the whole reported state every time, so a later report alone drops nothing', async () => {
    // A server-side apply removes the fields its manager owned but left out: applying only the newest
    // patch dropped progress and lastCheckpoint when the final result came alone.
    const bodies: { status: Record<string, unknown> }[] = [];
    nock(SERVER)
      .patch(/streamingtrainingjobs\/lesions\/status/, (body) => {
        bodies.push(body);
        return true;
      })
      .query(true)
      .times(3)
      .reply(200, {});
    const reporter = createStatusReporter({ namespace: 'pathology', name: 'lesions' }, 60_000, () => {}, {
      TILESTREAM_STATUS_KUBECONFIG: kubeconfig(),
    });
    assert.ok(reporter);
    reporter.report({ progress: { step: 8 } });
    await reporter.flush();
    reporter.report({ lastCheckpoint: { step: 8 } });
    await reporter.flush();
    reporter.report({ result: { validationAccuracy: 0.75 } });
    await reporter.flush();
    await reporter.flush(); // nothing new: no request
    assert.deepEqual(
      bodies.map((b) => b.status),
      [
        { progress: { step: 8 } },
        { progress: { step: 8 }, lastCheckpoint: { step: 8 } },
        { progress: { step: 8 }, lastCheckpoint: { step: 8 }, result: { validationAccuracy: 0.75 } },
      ],
    );
  });

  it('finish() sends the final state again after transient failures until it lands', async () => {
    const bodies: { status: Record<string, unknown> }[] = [];
    const path = /streamingtrainingjobs\/lesions\/status/;
    const record = (body: { status: Record<string, unknown> }) => {
      bodies.push(body);
      return true;
    };
    nock(SERVER).patch(path, record).query(true).reply(429, { kind: 'Status', message: 'too many requests' });
    nock(SERVER)
      .patch(path, record)
      .query(true)
      .reply(503, { kind: 'Status', message: 'etcdserver: no leader' });
    nock(SERVER).patch(path, record).query(true).reply(200, {});
    const warnings: string[] = [];
    const slept: number[] = [];
    const reporter = createStatusReporter(
      { namespace: 'pathology', name: 'lesions' },
      60_000,
      (w) => warnings.push(w),
      { TILESTREAM_STATUS_KUBECONFIG: kubeconfig() },
      async (ms) => {
        slept.push(ms);
      },
    );
    assert.ok(reporter);
    reporter.report({ progress: { step: 48, fraction: 1 }, result: { validationAccuracy: 0.5 } });
    assert.equal(await reporter.finish(), true);
    assert.equal(bodies.length, 3);
    for (const b of bodies)
      assert.deepEqual(b.status, {
        progress: { step: 48, fraction: 1 },
        result: { validationAccuracy: 0.5 },
      });
    assert.deepEqual(slept, [1000, 2000]);
    assert.equal(warnings.length, 2);
  });

  it('finish() gives up at once on a refusal, and after its timeout on transient failures', async () => {
    const path = /streamingtrainingjobs\/lesions\/status/;
    const make = (warnings: string[]) =>
      createStatusReporter(
        { namespace: 'pathology', name: 'lesions' },
        60_000,
        (w) => warnings.push(w),
        { TILESTREAM_STATUS_KUBECONFIG: kubeconfig() },
        async () => {},
      );
    nock(SERVER).patch(path).query(true).reply(403, { kind: 'Status', message: 'forbidden' });
    const refused: string[] = [];
    const a = make(refused);
    a?.report({ progress: { step: 1 } });
    assert.equal(await a?.finish(), false);
    assert.match(
      refused.at(-1) ?? '',
      /gave up reporting the final status to pathology\/lesions; the summary/,
    );
    assert.ok(nock.isDone());

    nock(SERVER).patch(path).query(true).times(100).reply(503, {});
    const down: string[] = [];
    const b = make(down);
    b?.report({ progress: { step: 1 } });
    // A zero timeout: one try, then the deadline has passed.
    assert.equal(await b?.finish(0), false);
    assert.match(down.at(-1) ?? '', /gave up reporting the final status to pathology\/lesions after 0 s/);
  });

  it('keeps training when the API refuses a report, with a warning', async () => {
    nock(SERVER)
      .patch(/streamingtrainingjobs\/lesions\/status/)
      .query(true)
      .reply(403, { kind: 'Status', message: 'forbidden' });
    const warnings: string[] = [];
    const reporter = createStatusReporter(
      { namespace: 'pathology', name: 'lesions' },
      60_000,
      (w) => warnings.push(w),
      {
        TILESTREAM_STATUS_KUBECONFIG: kubeconfig(),
      },
    );
    reporter?.report({ progress: { step: 1 } });
    await reporter?.flush();
    assert.match(warnings[0] ?? '', /could not report progress to pathology\/lesions/);
  });
});
