import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import {
  type BadImage,
  Dataset,
  type DatasetItem,
  type DatasetOptions,
  TooManyBadImagesError,
} from '../../trainer/data/dataset.ts';
import { ImageError } from '../../trainer/data/image-error.ts';
import { type ManifestEntry, parseManifest } from '../../trainer/data/manifest.ts';

const N = 30;
const SIDE = 16;

describe('dataset iteration', () => {
  let dir: string;
  let good: ManifestEntry[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-dataset-'));
    const rows = ['path,label'];
    for (let i = 0; i < N; i++) {
      const px = Buffer.alloc(SIDE * SIDE, i * 8);
      await sharp(px, { raw: { width: SIDE, height: SIDE, channels: 1 } })
        .toColourspace('b-w')
        .png()
        .toFile(join(dir, `img${i}.png`));
      rows.push(`img${i}.png,${i % 2}`);
    }
    await writeFile(join(dir, 'good.csv'), `${rows.join('\n')}\n`);
    good = parseManifest(`${rows.join('\n')}\n`, { file: 'good.csv', root: dir });
    // Bad ones: truncated, wrong size, random bytes (missing ones are simply not written).
    const png = await readFile(join(dir, 'img0.png'));
    await writeFile(join(dir, 'cut.png'), png.subarray(0, png.length - 20));
    await sharp(Buffer.alloc(20 * 16, 9), { raw: { width: 16, height: 20, channels: 1 } })
      .png()
      .toFile(join(dir, 'big.png'));
    await writeFile(join(dir, 'junk.png'), Buffer.from('not an image at all'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const options = (over: Partial<DatasetOptions> = {}): DatasetOptions => ({
    entries: good,
    image: { height: SIDE, width: SIDE, channels: 1 },
    seed: 11,
    augmentation: { flips: true, rotate90: true, colorJitter: 0.1 },
    ...over,
  });

  /** Drains an epoch; returns (manifest line, augmentation) per item and closes the images. */
  async function drain(
    ds: Dataset,
    epoch: number,
    limit = Infinity,
  ): Promise<{ items: string[]; last?: DatasetItem }> {
    const items: string[] = [];
    let last: DatasetItem | undefined;
    for await (const item of ds.items(epoch)) {
      assert.deepEqual(item.image.describe().augmentation, item.augmentation);
      items.push(`${item.entry.relativePath}:${JSON.stringify(item.augmentation)}`);
      item.image.close();
      last = item;
      if (items.length >= limit) break;
    }
    return last ? { items, last } : { items };
  }

  it('shuffles each epoch from the seed alone, and draws augmentations per position', async () => {
    const a = new Dataset(options());
    const b = new Dataset(options());
    const a0 = (await drain(a, 0)).items;
    assert.deepEqual(a0, (await drain(b, 0)).items, 'same seed, same epoch: same order and augmentations');
    assert.equal(a0.length, N);
    assert.equal(new Set(a0.map((s) => s.split(':')[0])).size, N, 'every image once');
    const a1 = (await drain(a, 1)).items;
    assert.notDeepEqual(
      a1.map((s) => s.split(':')[0]),
      a0.map((s) => s.split(':')[0]),
      'epochs differ',
    );
    const c0 = (await drain(new Dataset(options({ seed: 12 })), 0)).items;
    assert.notDeepEqual(c0, a0, 'seeds differ');
    const ordered = new Dataset(options({ shuffle: false, augmentation: undefined }));
    assert.deepEqual(
      (await drain(ordered, 0)).items,
      good.map((e) => `${e.relativePath}:{}`),
    );
    assert.deepEqual(a.position(), { ...a.position(), epoch: 2, index: 0, badInEpoch: 0 });
  });

  it('resumes from a saved position exactly, within and across epochs', async () => {
    const full = new Dataset(options());
    const e0 = (await drain(full, 0)).items;
    const e1 = (await drain(full, 1)).items;

    const first = new Dataset(options());
    const part = await drain(first, 0, 13);
    const saved = JSON.parse(JSON.stringify(part.last?.positionAfter())) as ReturnType<Dataset['position']>;
    assert.equal(saved.index, 13);

    const resumed = new Dataset(options());
    resumed.restore(saved);
    const rest = (await drain(resumed, saved.epoch)).items;
    assert.deepEqual([...part.items, ...rest], e0);
    assert.deepEqual((await drain(resumed, 1)).items, e1);

    // A position at the end of an epoch resumes at the next one.
    const end = new Dataset(options());
    end.restore({ ...saved, index: N });
    assert.deepEqual((await drain(end, 0)).items, []);
    assert.deepEqual(end.position().epoch, 1);
  });

  it('refuses a position from another seed or other data', () => {
    const ds = new Dataset(options());
    const p = ds.position();
    assert.throws(() => new Dataset(options({ seed: 5 })).restore(p), /seed 11, not 5/);
    assert.throws(() => new Dataset(options({ entries: good.slice(1) })).restore(p), /another manifest/);
    assert.throws(() => ds.restore({ ...p, index: N + 1 }), /invalid data position/);
    assert.throws(
      () => new Dataset(options({ entries: [], name: 'validation' })),
      /the validation dataset has no images/,
    );
  });

  /** The good manifest with some rows pointing at bad files. */
  function withBad(kinds: string[]): ManifestEntry[] {
    const names = {
      missing: 'gone.png',
      truncated: 'cut.png',
      'wrong-size': 'big.png',
      unreadable: 'junk.png',
    } as Record<string, string>;
    return good.map((e, i) =>
      i < kinds.length ? { ...e, path: join(dir, names[kinds[i] as string] as string) } : e,
    );
  }

  it('reports and skips bad images, and tolerates up to the threshold', async () => {
    const bad: BadImage[] = [];
    const ds = new Dataset(
      options({ entries: withBad(['missing', 'truncated', 'wrong-size']), onBadImage: (b) => bad.push(b) }),
    );
    const got = (await drain(ds, 0)).items;
    assert.equal(got.length, N - 3);
    assert.deepEqual(bad.map((b) => b.reason).sort(), ['missing', 'truncated', 'wrong-size']);
    assert.ok(bad.every((b) => b.epoch === 0 && b.message.includes(b.path)));
    // Exactly 10 % bad is allowed by the default threshold, in every epoch.
    assert.equal((await drain(ds, 1)).items.length, N - 3);
    assert.equal(bad.length, 6);
  });

  it('opening ahead yields the same items, positions and bad-image reports, and survives an early stop', async () => {
    const entries = withBad(['missing', 'truncated', 'wrong-size']);
    const run = async (openAhead: boolean) => {
      const bad: BadImage[] = [];
      const ds = new Dataset(options({ entries, openAhead, onBadImage: (b) => bad.push(b) }));
      const positions: string[] = [];
      const items: string[] = [];
      for await (const item of ds.items(0)) {
        items.push(`${item.entry.relativePath}:${JSON.stringify(item.augmentation)}`);
        // The consumer is slow: the next image is opened meanwhile.
        await new Promise((r) => setTimeout(r, 2));
        item.image.close();
        positions.push(JSON.stringify(item.positionAfter()));
      }
      const early = (await drain(new Dataset(options({ entries, openAhead })), 0, 3)).items;
      return { items, positions, bad: bad.map((b) => `${b.index}:${b.reason}`), early };
    };
    assert.deepEqual(await run(true), await run(false));
  });

  it('fails with a clear error when more than the allowed fraction is bad', async () => {
    const ds = new Dataset(
      options({ entries: withBad(['missing', 'truncated', 'wrong-size', 'unreadable']), name: 'training' }),
    );
    await assert.rejects(drain(ds, 0), (e: unknown) => {
      assert.ok(e instanceof TooManyBadImagesError);
      assert.equal(e.bad, 4);
      assert.equal(e.total, N);
      assert.match(e.message, /4 of the 30 training images are bad in epoch 0/);
      for (const r of ['1 missing', '1 truncated', '1 wrong-size', '1 unreadable'])
        assert.ok(e.message.includes(r), r);
      assert.match(e.message, /maxBadImageFraction/);
      return true;
    });
    const strict = new Dataset(options({ entries: withBad(['missing']), maxBadFraction: 0 }));
    await assert.rejects(drain(strict, 0), TooManyBadImagesError);
    const lenient = new Dataset(
      options({
        entries: withBad(['missing', 'truncated', 'wrong-size', 'unreadable']),
        maxBadFraction: 0.2,
      }),
    );
    assert.equal((await drain(lenient, 0)).items.length, N - 4);
  });

  it('counts images that fail after opening, and carries bad counts through a resume', async () => {
    // Manifest order, so the two missing images are positions 0 and 1.
    const opts = options({ entries: withBad(['missing', 'missing']), shuffle: false });
    const ds = new Dataset(opts);
    const seen: DatasetItem[] = [];
    for await (const item of ds.items(0)) {
      seen.push(item);
      if (seen.length === 20) break;
    }
    const last = seen[19] as DatasetItem;
    assert.equal(last.index, 21);
    assert.equal(last.positionAfter().badInEpoch, 2);
    ds.reportBad(last, new ImageError(last.entry.path, 'unreadable', 'a tile failed'));
    ds.reportBad(last, new ImageError(last.entry.path, 'unreadable', 'reported twice'));
    assert.deepEqual(
      { index: last.positionAfter().index, bad: last.positionAfter().badInEpoch },
      { index: 22, bad: 3 },
      'one more bad image, counted once; 3 of 30 is still allowed',
    );
    const resumed = new Dataset(opts);
    resumed.restore(last.positionAfter());
    const it = resumed.items(0);
    const next = (await it.next()).value as DatasetItem;
    assert.equal(next.index, 22);
    assert.throws(
      () => resumed.reportBad(next, new ImageError(next.entry.path, 'unreadable', 'x')),
      /4 of the 30 images are bad in epoch 0/,
    );
    await it.return(undefined);
  });
});
