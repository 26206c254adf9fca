// `tilestream bench throughput` on cheap settings (128² images, one timed round): its options, the
// JSON it prints on the tensorflow backend (ratios, tensorflow vs wasm) and without it (wasm vs
// cpu), what it leaves out and why. The figures themselves are in the README (Measured: time).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { THROUGHPUT_CASES, tileAt, wontFit } from '../../trainer/bench/throughput.ts';
import { formatThroughput, type ThroughputReport } from '../../trainer/bench/throughput-report.ts';
import { tensorflowSkip } from '../tensorflow-build.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'tilestream.js');
const CHEAP = [
  '--cases',
  'smallcnn',
  '--sizes',
  '128',
  '--compare-cases',
  'smallcnn',
  '--compare-size',
  '128',
];

function throughput(args: string[]) {
  return spawnSync(process.execPath, [cli, 'bench', 'throughput', ...args, '--repeats', '1'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
}

function report(args: string[]): ThroughputReport {
  const r = throughput([...args, '--json']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ThroughputReport;
}

describe('tilestream bench throughput', () => {
  it('tiles are half the image on the stride, except at the case’s own size', () => {
    const small = THROUGHPUT_CASES.smallcnn;
    const resnet = THROUGHPUT_CASES.resnet18;
    assert.ok(small && resnet);
    assert.equal(tileAt(small, 1024), 512);
    assert.equal(tileAt(resnet, 2048), 1024);
    assert.equal(tileAt(resnet, 1024), 512);
    assert.equal(tileAt(resnet, 1000) % 16, 0);
  });

  it('leaves out conventional steps that would not fit, with the numbers', () => {
    const net = THROUGHPUT_CASES.smallcnn?.network();
    assert.ok(net);
    assert.equal(wontFit(net, 1024, 'wasm'), undefined);
    assert.match(
      wontFit(net, 8192, 'wasm') ?? '',
      /needs \d+\.\d GiB \(planner\), over 3\.8 GiB of wasm heap/,
    );
  });

  it('on tensorflow: streamed/conventional ratios, and tensorflow vs wasm, in one JSON', {
    skip: tensorflowSkip(),
  }, () => {
    const r = report([...CHEAP, '--backend', 'tensorflow', '--compare-backends', 'tensorflow,wasm']);
    assert.equal(r.backend, 'tensorflow');
    assert.equal(r.ratios.length, 1);
    const ratio = r.ratios[0];
    assert.ok(ratio);
    const small = THROUGHPUT_CASES.smallcnn;
    assert.ok(small);
    // 128² is below twice the small CNN's minimum tile (80): tiles of 80, overlapping.
    assert.deepEqual(
      [ratio.case, ratio.backend, ratio.image, ratio.tile, ratio.tiles],
      ['smallcnn', 'tensorflow', 128, tileAt(small, 128), 16],
    );
    assert.equal(ratio.predictedRatio, (4 * ratio.areaFactor) / 3);
    for (const t of [ratio.conventional, ratio.streamed, ratio.tileForward, ratio.tileStep]) {
      assert.ok(t.cpuSeconds > 0 && t.wallSeconds > 0);
    }
    assert.ok(Math.abs(ratio.wall.tileCalibratedDeviation) < 10);
    assert.equal(r.backends.length, 1);
    const b = r.backends[0];
    assert.ok(b);
    assert.deepEqual(Object.keys(b.seconds), ['tensorflow', 'wasm']);
    assert.equal(b.reference, 'wasm');
    assert.equal(b.speedup.wasm?.wall, 1);
    assert.ok((b.speedup.tensorflow?.wall ?? 0) > 0);
  });

  it('without tensorflow: wasm ratios and wasm vs cpu; a table without --json', () => {
    const r = throughput([...CHEAP, '--backend', 'wasm', '--compare-backends', 'wasm,cpu']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Streamed \/ conventional time on wasm/);
    assert.match(
      r.stdout,
      /conventional step, smallcnn 128²: wasm [\d.]+ s wall \(fastest [\d.]+\), [\d.]+ s CPU; cpu .*× CPU of wasm\)/,
    );
  });

  it('an image no larger than the smallest tile is left out with the reason; unknown cases are refused', () => {
    const r = report(['--cases', 'resnet18', '--sizes', '64', '--backend', 'wasm', '--compare-backends', '']);
    assert.deepEqual(r.ratios, []);
    assert.deepEqual(r.backends, []);
    assert.equal(r.skipped.length, 1);
    assert.match(r.skipped[0]?.why ?? '', /not larger than the smallest tile/);
    const bad = throughput(['--cases', 'vgg', '--compare-backends', '']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /unknown case 'vgg'; choose from smallcnn, resnet18/);
  });

  it('formats the report as a table', () => {
    const t = { cpuSeconds: 1, wallSeconds: 2, fastestCpuSeconds: 1, fastestWallSeconds: 1.5 };
    const text = formatThroughput({
      backend: 'tensorflow',
      repeats: 3,
      ratios: [],
      backends: [
        {
          case: 'resnet18',
          image: 1024,
          seconds: {
            tensorflow: t,
            wasm: { cpuSeconds: 3, wallSeconds: 8, fastestCpuSeconds: 3, fastestWallSeconds: 6 },
          },
          reference: 'wasm',
          speedup: {
            tensorflow: { wall: 4, cpu: 3, fastestWall: 4, fastestCpu: 3 },
            wasm: { wall: 1, cpu: 1, fastestWall: 1, fastestCpu: 1 },
          },
          repeats: 3,
        },
      ],
      skipped: [{ case: 'smallcnn', image: 8192, backend: 'wasm', why: 'too big' }],
    });
    assert.match(
      text,
      /conventional step, resnet18 1024²: tensorflow 2\.00 s wall \(fastest 1\.50\), 1\.00 s CPU \(4\.00× wall, 4\.00× fastest wall, 3\.00× CPU of wasm\); wasm 8\.00 s wall/,
    );
    assert.match(text, /skipped smallcnn 8192² on wasm: too big/);
  });
});
