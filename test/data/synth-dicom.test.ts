// `tilestream synth --format dicom`: each synthetic image as a DICOM WSI series converted by
// wsidicomizer (installed by test/prepare.ts; skipped with the reason without it or OpenSlide). Read
// through OpenSlide at 0.5 µm/px with imageSize = the image size, a DICOM slide gives exactly the
// pixels synth painted (lossless JPEG 2000), its tissue found and centred.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openImage } from '../../trainer/data/image.ts';
import { generateLesionImage } from '../../trainer/data/lesions.ts';
import { DICOM_TILE_SIZE, WSIDICOMIZER_PYTHON_ENV } from '../../trainer/data/slide/dicom-writer.ts';
import { openslideAvailability } from '../../trainer/data/slide/openslide.ts';
import { dicomGlassSide, slideOfImage } from '../../trainer/data/slide/synthetic-slide.ts';
import {
  ensureSyntheticDataset,
  type SyntheticFormat,
  syntheticImageSeed,
  syntheticLabel,
} from '../../trainer/data/synthetic.ts';
import { skipUnlessRequired } from '../require-all.ts';
import { wsidicomizerMissing } from '../wsidicomizer.ts';

const openslide = openslideAvailability();
const skip =
  skipUnlessRequired(openslide.ok ? undefined : `OpenSlide is not set up (${openslide.reason})`) ??
  skipUnlessRequired(wsidicomizerMissing());

describe('dicomGlassSide', () => {
  const cases: [number, number, number][] = [
    // height, width → side
    [256, 256, 512],
    [170, 170, 256],
    [171, 100, 512],
    [1024, 768, 2048],
  ];
  for (const [h, w, side] of cases) {
    it(`${h}×${w} → ${side}: whole 256² tiles at every level, at least 1.5× the longer side`, () => {
      assert.equal(dicomGlassSide(h, w, DICOM_TILE_SIZE), side);
    });
  }
});

describe('tilestream synth --format dicom', { skip, timeout: 120_000 }, () => {
  let dir: string;
  const params = (format: SyntheticFormat) => ({
    height: 256,
    width: 256,
    count: 2,
    validationCount: 2,
    seed: 5,
    format,
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tilestream-synth-dicom-'));
    await ensureSyntheticDataset(join(dir, 'svs'), params('svs'));
    await ensureSyntheticDataset(join(dir, 'dicom'), params('dicom'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists each series by its level-0 instance, and records 3 channels and the stain normalization', async () => {
    const csv = await readFile(join(dir, 'dicom', 'train.csv'), 'utf8');
    assert.deepEqual(csv.trim().split('\n'), [
      'path,label,split',
      'train/000000.dicom/0.dcm,0,train',
      'train/000001.dicom/0.dcm,1,train',
    ]);
    assert.deepEqual((await readdir(join(dir, 'dicom', 'train', '000000.dicom'))).sort(), [
      '0.dcm',
      '1.dcm',
      '2.dcm',
    ]);
    const info = (f: string) => readFile(join(dir, f, 'dataset.json'), 'utf8').then((t) => JSON.parse(t));
    const [svs, dicom] = await Promise.all([info('svs'), info('dicom')]);
    assert.equal(dicom.channels, 3);
    assert.deepEqual(dicom.normalization, svs.normalization);
  });

  it('each slide reads as DICOM, tissue found and centred, with exactly the pixels painted', async () => {
    for (const split of ['train', 'validation'] as const) {
      for (const i of [0, 1]) {
        const n = String(i).padStart(6, '0');
        const at = `${split} ${n}`;
        // The slide synth painted: the image as tissue on whole-tile glass (both deterministic).
        const seed = syntheticImageSeed(5, split, i);
        const texture = generateLesionImage(256, 256, seed, syntheticLabel(i) === 1);
        const painted = slideOfImage(texture, seed, dicomGlassSide(256, 256, DICOM_TILE_SIZE));
        const file = join(dir, 'dicom', split === 'train' ? 'train' : 'val', `${n}.dicom`, '0.dcm');
        const img = await openImage(file, {
          height: 256,
          width: 256,
          channels: 3,
          slide: { micronsPerPixel: 0.5 },
        });
        try {
          const d = img.describe().slide;
          assert.ok(d);
          assert.deepEqual(
            [d.vendor, d.levels.map((l) => l.width), d.level, d.scaleX, d.tissue, d.placement],
            ['dicom', [512, 256], 0, 1, 'found', 'centred'],
            at,
          );
          assert.deepEqual(d.tissueBox, painted.tissue, at);
          const got = await img.readUint8Region(0, 0, 256, 256);
          const { x0, y0 } = painted.tissue;
          const want = new Uint8Array(256 * 256 * 3);
          for (let y = 0; y < 256; y++)
            want.set(
              painted.data.subarray(((y0 + y) * 512 + x0) * 3, ((y0 + y) * 512 + x0 + 256) * 3),
              y * 256 * 3,
            );
          assert.ok(
            Buffer.from(got).equals(Buffer.from(want)),
            `${at}: the pixels read differ from those painted`,
          );
        } finally {
          img.close();
        }
      }
    }
  });

  it(`without wsidicomizer it fails before writing anything, naming ${WSIDICOMIZER_PYTHON_ENV}`, async () => {
    const saved = process.env[WSIDICOMIZER_PYTHON_ENV];
    process.env[WSIDICOMIZER_PYTHON_ENV] = join(dir, 'no-such-python');
    try {
      await assert.rejects(ensureSyntheticDataset(join(dir, 'none'), params('dicom')), {
        message: new RegExp(`--format dicom: .*wsidicomizer.*${WSIDICOMIZER_PYTHON_ENV}=`),
      });
    } finally {
      if (saved === undefined) delete process.env[WSIDICOMIZER_PYTHON_ENV];
      else process.env[WSIDICOMIZER_PYTHON_ENV] = saved;
    }
    assert.deepEqual(
      (await readdir(join(dir, 'none')).catch(() => [])).filter(
        (f) => f !== 'dataset.json' && f !== 'train' && f !== 'val',
      ),
      [],
    );
  });
});
