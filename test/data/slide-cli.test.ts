// `tilestream setup openslide` and `tilestream slides inspect`, run as a user runs them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { openslideAvailability } from '../../trainer/data/slide/openslide.ts';
import { OPENSLIDE_CACHE_ENV } from '../../trainer/data/slide/openslide-lib.ts';
import { EXIT_PREREQUISITES } from '../../trainer/data/slide/openslide-setup.ts';
import { writeAperioSvs } from '../../trainer/data/slide/slide-writer.ts';
import { generateSyntheticSlide } from '../../trainer/data/slide/synthetic-slide.ts';
import { skipUnlessRequired } from '../require-all.ts';

const cli = join(import.meta.dirname, '..', '..', 'bin', 'tilestream.js');
const available = openslideAvailability();

describe('tilestream setup openslide', () => {
  it('without python3 it says what to install, exits 2 and creates nothing', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'openslide-prereq-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const cache = join(dir, 'cache');
    const r = spawnSync(process.execPath, [cli, 'setup', 'openslide'], {
      env: { ...process.env, PATH: join(dir, 'empty'), [OPENSLIDE_CACHE_ENV]: cache },
      encoding: 'utf8',
    });
    assert.equal(r.status, EXIT_PREREQUISITES, r.stderr);
    assert.match(r.stderr, /python3 with pip is needed .*apt-get install python3 python3-pip/);
    assert.ok(!existsSync(join(cache, 'openslide-bin-4.0.1.2')), 'nothing looks installed');
  });

  it('a warm run is a no-op that names the library', {
    skip: skipUnlessRequired(available.ok ? undefined : available.reason),
  }, () => {
    const r = spawnSync(process.execPath, [cli, 'setup', 'openslide', '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      status: string;
      library: string;
      stamp: { openslideVersion: string };
    };
    assert.equal(out.status, 'present');
    assert.equal(out.stamp.openslideVersion, '4.0.1');
    assert.ok(existsSync(out.library));
  });
});

describe('tilestream slides inspect', {
  skip: skipUnlessRequired(available.ok ? undefined : available.reason),
}, () => {
  it('prints vendor, levels, resolution, tissue and crop, and writes the thumbnail and mask', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'slides-inspect-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'case.svs');
    await writeAperioSvs(
      file,
      generateSyntheticSlide(1024, 1536, { x0: 400, y0: 300, x1: 1000, y1: 700 }, 3, false),
      0.25,
    );
    const thumb = join(dir, 'case.png');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [cli, 'slides', 'inspect', file, '--thumbnail', thumb, ...args], {
        encoding: 'utf8',
      });
    const text = run('--size', '256', '--microns-per-pixel', '1');
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /aperio, 40×, 0\.25×0\.25 µm\/px at level 0/);
    assert.match(text.stdout, /level 2: 384×256 px, downsample 4, 1 µm\/px/);
    assert.match(text.stdout, /tissue: x 400–1000, y 300–700 \(600×400 px\) at level 0/);
    assert.match(
      text.stdout,
      /read: level 2, 1 level px per image px \(1 µm\/px\), centred; crop x 400–1000, y 300–700/,
    );
    const thumbMeta = await sharp(thumb).metadata();
    const maskMeta = await sharp(join(dir, 'case.mask.png')).metadata();
    assert.deepEqual([thumbMeta.format, thumbMeta.width, maskMeta.width], ['png', 768, 768]);
    const bad = spawnSync(process.execPath, [cli, 'slides', 'inspect', thumb], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /case\.png: OpenSlide does not recognise the file format/);
  });
});
