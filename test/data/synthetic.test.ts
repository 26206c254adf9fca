import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { openImage } from '../../trainer/data/image.ts';
import { generateLesionImage, lesionCountRange } from '../../trainer/data/lesions.ts';
import { readManifest } from '../../trainer/data/manifest.ts';
import { boxDownsample } from '../../trainer/data/pixels.ts';
import { registerSynthCommand } from '../../trainer/data/synth-cli.ts';
import {
  ensureSyntheticDataset,
  nearestUpsample,
  readSyntheticInfo,
  type SyntheticParams,
} from '../../trainer/data/synthetic.ts';

/**
 * A checkerboard detector: the largest |mean of (−1)^(x+y)·v| over k × k windows, in grey levels.
 * A lesion (amplitude 51 grey levels) gives about 50; pixel noise and tissue give under 10.
 */
function checkerboardResponse(px: Uint8Array, h: number, w: number, k: number): number {
  let best = 0;
  for (let y = 0; y + k <= h; y++) {
    for (let x = 0; x + k <= w; x++) {
      let s = 0;
      for (let i = 0; i < k; i++)
        for (let j = 0; j < k; j++) s += ((x + j + y + i) & 1 ? -1 : 1) * (px[(y + i) * w + x + j] as number);
      best = Math.max(best, Math.abs(s) / (k * k));
    }
  }
  return best;
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
const imageMean = (px: Uint8Array) => px.reduce((x, y) => x + y, 0) / px.length;

describe('synthetic lesion images', () => {
  it('scales the lesion count with the area above 512²', () => {
    assert.deepEqual(lesionCountRange(256, 256), [1, 3]);
    assert.deepEqual(lesionCountRange(512, 512), [1, 3]);
    assert.deepEqual(lesionCountRange(1024, 1024), [4, 12]);
    assert.deepEqual(lesionCountRange(2048, 2048), [16, 48]);
  });

  it('is deterministic per seed; only positives have lesions, inside the image, of radius 4–8', () => {
    const a = generateLesionImage(96, 128, 7, true);
    assert.deepEqual(generateLesionImage(96, 128, 7, true).pixels, a.pixels);
    assert.notDeepEqual(generateLesionImage(96, 128, 8, true).pixels, a.pixels);
    assert.ok(a.lesions.length >= 1 && a.lesions.length <= 3);
    for (const l of a.lesions) {
      assert.ok(l.radius >= 4 && l.radius <= 8);
      assert.ok(
        l.x >= l.radius + 4 && l.x <= 128 - l.radius - 4 && l.y >= l.radius + 4 && l.y <= 96 - l.radius - 4,
      );
    }
    assert.deepEqual(generateLesionImage(96, 128, 7, false).lesions, []);
    const m = imageMean(a.pixels);
    assert.ok(Math.abs(m - 127.5) < 3, `mean grey ${m}`);
  });

  it('full resolution separates the classes; the 8× box-downsampled images do not', () => {
    const S = 128;
    const full: Record<string, number[]> = { pos: [], neg: [] };
    const down: Record<string, number[]> = { pos: [], neg: [] };
    const downMean: Record<string, number[]> = { pos: [], neg: [] };
    let residual = 0;
    for (let i = 0; i < 24; i++) {
      const cls = i % 2 ? 'pos' : 'neg';
      const img = generateLesionImage(S, S, 500 + i, cls === 'pos');
      const d = boxDownsample(img.pixels, S, S, 1, 8);
      full[cls]?.push(checkerboardResponse(img.pixels, S, S, 4));
      down[cls]?.push(checkerboardResponse(d, S / 8, S / 8, 2));
      downMean[cls]?.push(imageMean(d));
      if (cls === 'pos') {
        // The same image without its lesions: downsampling leaves at most one grey level of difference.
        const clean = boxDownsample(
          generateLesionImage(S, S, 500 + i, true, { lesions: false }).pixels,
          S,
          S,
          1,
          8,
        );
        for (let k = 0; k < d.length; k++)
          residual = Math.max(residual, Math.abs((d[k] as number) - (clean[k] as number)));
      }
    }
    assert.ok(Math.min(...(full.pos as number[])) > 30, `positives respond ${full.pos}`);
    assert.ok(Math.max(...(full.neg as number[])) < 15, `negatives respond ${full.neg}`);
    assert.ok(residual <= 1, `lesion residual after downsampling: ${residual} grey levels`);
    assert.ok(
      Math.abs(mean(down.pos as number[]) - mean(down.neg as number[])) < 1,
      `downsampled responses ${down.pos} / ${down.neg}`,
    );
    assert.ok(
      Math.abs(mean(downMean.pos as number[]) - mean(downMean.neg as number[])) < 0.5,
      'class-conditional mean grey',
    );
  });

  it('nearest upsampling repeats each pixel f × f times', () => {
    assert.deepEqual(
      nearestUpsample(Uint8Array.from([1, 2, 3, 4]), 2, 2, 2),
      Uint8Array.from([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]),
    );
  });
});

describe('synthetic datasets on disk', () => {
  let dir: string;
  const params: SyntheticParams = {
    height: 64,
    width: 96,
    count: 6,
    validationCount: 4,
    seed: 3,
    format: 'tiff',
    downsample: 8,
    downUp: true,
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-synth-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes images, manifests and dataset.json; labels alternate; lesions only in positives', async () => {
    const progress: string[] = [];
    const r = await ensureSyntheticDataset(dir, params, {
      onProgress: (p) => progress.push(`${p.split} ${p.done}/${p.total}`),
    });
    assert.equal(r.generated, 10);
    assert.equal(r.kept, 0);
    assert.deepEqual(progress.at(-1), 'validation 4/4');
    const info = await readSyntheticInfo(dir);
    assert.ok(info?.complete);
    assert.deepEqual(info.normalization, { mean: [0.5], std: [0.05] });
    assert.deepEqual(
      info.variants.map((v) => [v.dir, v.kind, v.height, v.width]),
      [
        ['.', 'full', 64, 96],
        ['down8', 'down', 8, 12],
        ['down8-up', 'down-up', 64, 96],
      ],
    );
    const train = await readManifest(join(dir, 'train.csv'));
    const val = await readManifest(join(dir, 'val.csv'));
    assert.deepEqual(
      train.entries.map((e) => e.label),
      [0, 1, 0, 1, 0, 1],
    );
    assert.deepEqual(
      val.entries.map((e) => e.label),
      [0, 1, 0, 1],
    );
    assert.ok(train.entries.every((e) => e.split === 'train' && e.relativePath.startsWith('train/')));
    assert.ok(val.entries.every((e) => e.split === 'validation'));

    for (const e of [...train.entries, ...val.entries]) {
      // Through the real reader: a grey tiled pyramidal TIFF of the full size.
      const src = await openImage(e.path, { height: 64, width: 96, channels: 1 });
      const d = src.describe();
      assert.equal(d.format, 'tiff');
      assert.equal(d.sourceChannels, 1);
      assert.equal(d.levels[0]?.tileWidth, 256);
      const px = await src.readUint8Region(0, 0, 64, 96);
      const response = checkerboardResponse(px, 64, 96, 4);
      assert.equal(response > 25, e.label === 1, `${e.relativePath} label ${e.label} response ${response}`);
      src.close();
    }
    // Training and validation images come from different streams.
    const t0 = await readFile(train.entries[0]?.path as string);
    const v0 = await readFile(val.entries[0]?.path as string);
    assert.notDeepEqual(t0, v0);

    // The copies: down8 is the box-downsampled image, down8-up its nearest upsampling.
    const down = await readManifest(join(dir, 'down8', 'train.csv'));
    const full1 = await openImage(train.entries[1]?.path as string, { height: 64, width: 96, channels: 1 });
    const small = await openImage(down.entries[1]?.path as string, { height: 8, width: 12, channels: 1 });
    const smallPx = await small.readUint8Region(0, 0, 8, 12);
    assert.deepEqual(smallPx, boxDownsample(await full1.readUint8Region(0, 0, 64, 96), 64, 96, 1, 8));
    const up = await readManifest(join(dir, 'down8-up', 'val.csv'));
    assert.equal(up.entries.length, 4);
    const upTrain = await readManifest(join(dir, 'down8-up', 'train.csv'));
    const upSrc = await openImage(upTrain.entries[1]?.path as string, { height: 64, width: 96, channels: 1 });
    assert.deepEqual(await upSrc.readUint8Region(0, 0, 64, 96), nearestUpsample(smallPx, 8, 12, 8));
    assert.ok(
      checkerboardResponse(await upSrc.readUint8Region(0, 0, 64, 96), 64, 96, 4) < 15,
      'no lesion left',
    );
  });

  it('leaves a complete dataset alone, completes a damaged one identically, and refuses other parameters', async () => {
    const file = join(dir, 'train', '000003.tiff');
    const before = await readFile(file);
    const mtime = (await stat(join(dir, 'train.csv'))).mtimeMs;
    const again = await ensureSyntheticDataset(dir, params);
    assert.equal(again.generated, 0);
    assert.equal((await stat(join(dir, 'train.csv'))).mtimeMs, mtime, 'nothing rewritten');

    await unlink(file);
    const repaired = await ensureSyntheticDataset(dir, params);
    assert.deepEqual([repaired.generated, repaired.kept], [1, 9]);
    assert.deepEqual(await readFile(file), before, 'regenerated byte for byte');

    await assert.rejects(
      ensureSyntheticDataset(dir, { ...params, seed: 4 }),
      /other parameters .*seed 3.*asked for.*seed 4.*--force/s,
    );
    // A dataset.json with extra fields (an earlier version recorded the copies there) still matches.
    const current = JSON.parse(await readFile(join(dir, 'dataset.json'), 'utf8')) as { params: object };
    await writeFile(
      join(dir, 'dataset.json'),
      JSON.stringify({ ...current, params: { ...current.params, downsample: null, downUp: false } }),
    );
    assert.equal((await ensureSyntheticDataset(dir, params)).generated, 0);
    // An interrupted run (complete: false) with other parameters is simply redone.
    const info = JSON.parse(await readFile(join(dir, 'dataset.json'), 'utf8')) as { complete: boolean };
    await writeFile(join(dir, 'dataset.json'), JSON.stringify({ ...info, complete: false }));
    const redone = await ensureSyntheticDataset(dir, { ...params, seed: 4, downUp: false });
    assert.equal(redone.generated, 10);
    assert.notDeepEqual(await readFile(file), before);
  });

  it('adds requested copies to a complete dataset without rewriting its images', async () => {
    const d = join(dir, 'grow');
    const base: SyntheticParams = {
      height: 32,
      width: 32,
      count: 2,
      validationCount: 2,
      seed: 1,
      format: 'png',
    };
    await ensureSyntheticDataset(d, base);
    const fullFile = join(d, 'train', '000001.png');
    const mtime = (await stat(fullFile)).mtimeMs;
    const grown = await ensureSyntheticDataset(d, { ...base, downsample: 4 });
    assert.equal(grown.generated, 4, 'pixels recomputed for the copy');
    assert.equal((await stat(fullFile)).mtimeMs, mtime, 'full-resolution files untouched');
    assert.deepEqual(
      grown.info.variants.map((v) => v.dir),
      ['.', 'down4'],
    );
    const small = await openImage(join(d, 'down4', 'train', '000001.png'), {
      height: 8,
      width: 8,
      channels: 1,
    });
    const big = await openImage(fullFile, { height: 32, width: 32, channels: 1 });
    assert.deepEqual(
      await small.readUint8Region(0, 0, 8, 8),
      boxDownsample(await big.readUint8Region(0, 0, 32, 32), 32, 32, 1, 4),
    );
    // Asking again without the copy is satisfied by the superset.
    const again = await ensureSyntheticDataset(d, base);
    assert.equal(again.generated, 0);
    assert.deepEqual(
      again.info.variants.map((v) => v.dir),
      ['.', 'down4'],
    );
  });

  it('checks parameters', async () => {
    await assert.rejects(
      ensureSyntheticDataset(dir, { ...params, height: 16 }),
      /height must be an integer ≥ 32/,
    );
    await assert.rejects(
      ensureSyntheticDataset(dir, { ...params, downsample: 7 }),
      /downsample 7 must divide the image size 64×96/,
    );
    await assert.rejects(
      ensureSyntheticDataset(dir, { ...params, format: 'jpeg' as 'png' }),
      /format must be one of png, tiff/,
    );
  });
});

describe('tilestream synth', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-synth-cli-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the command in-process, capturing stdout and stderr. */
  async function run(...args: string[]): Promise<{ stdout: string; stderr: string }> {
    const program = new Command('tilestream').exitOverride();
    registerSynthCommand(program);
    for (const c of program.commands) c.exitOverride();
    const out = { stdout: '', stderr: '' };
    const write = { stdout: process.stdout.write, stderr: process.stderr.write };
    // Only text is captured: the test runner itself reports through stdout with binary chunks.
    const capture = (stream: 'stdout' | 'stderr') =>
      ((chunk: unknown, ...rest: unknown[]) => {
        if (typeof chunk === 'string') {
          out[stream] += chunk;
          return true;
        }
        return (write[stream] as (...a: unknown[]) => boolean).call(process[stream], chunk, ...rest);
      }) as typeof process.stdout.write;
    process.stdout.write = capture('stdout');
    process.stderr.write = capture('stderr');
    try {
      await program.parseAsync(['node', 'tilestream', ...args]);
    } finally {
      process.stdout.write = write.stdout;
      process.stderr.write = write.stderr;
    }
    return out;
  }

  it('writes a PNG dataset with a downsampled copy and prints a JSON summary', async () => {
    const out = join(dir, 'set');
    // The same dataset twice: the second run must find it in place.
    const synth = (...extra: string[]) =>
      run(
        'synth',
        '--out',
        out,
        '--size',
        '48x64',
        '--count',
        '4',
        '--val-count',
        '2',
        '--seed',
        '9',
        '--downsample',
        '8',
        ...extra,
      );
    const r = await synth('--json');
    const summary = JSON.parse(r.stdout) as {
      generated: number;
      params: Record<string, unknown>;
      variants: { dir: string; train: string }[];
    };
    assert.equal(summary.generated, 6);
    assert.deepEqual(summary.params, {
      height: 48,
      width: 64,
      count: 4,
      validationCount: 2,
      seed: 9,
      format: 'png',
    });
    assert.deepEqual(
      summary.variants.map((v) => v.train),
      [join(out, 'train.csv'), join(out, 'down8', 'train.csv')],
    );
    assert.match(r.stderr, /synth train: 4\/4/);
    assert.match(r.stderr, /synth validation: 2\/2/);
    const src = await openImage(join(out, 'down8', 'val', '000001.png'), {
      height: 6,
      width: 8,
      channels: 1,
    });
    assert.equal(src.describe().format, 'png');
    const again = await synth();
    assert.match(again.stdout, /already holds this dataset/);
  });

  it('refuses bad options', async () => {
    await assert.rejects(
      run('synth', '--out', dir, '--size', 'big', '--count', '4'),
      /expected a size like 1024 or 768x1024/,
    );
    await assert.rejects(
      run('synth', '--out', dir, '--size', '64', '--count', '4', '--format', 'gif'),
      /Allowed choices are png, tiff/,
    );
    await assert.rejects(run('synth', '--out', dir, '--size', '64'), /required option '--count <K>'/);
  });
});
