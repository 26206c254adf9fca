// Which regions of which slides a trainer process reads through OpenSlide, for the tests that claim
// nothing decodes a whole slide. Preloaded into the trainer (`node --import` this file, with
// TILESTREAM_E2E_SLIDE_READS naming a file): it wraps Slide.readArgb — the one way pixels leave
// OpenSlide — and appends a JSON line per read. The trainer imports openslide.ts by the same URL,
// so it gets the wrapped class. Test-only: nothing in trainer/ knows about it.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Slide } from '../../trainer/data/slide/openslide.ts';

export const SLIDE_READS_ENV = 'TILESTREAM_E2E_SLIDE_READS';
/** This file, for `node --import`. */
export const SLIDE_READS_PRELOAD = fileURLToPath(import.meta.url);

/** One OpenSlide read: the region (top-left in level-0 pixels, size in level pixels) and its level's size. */
export interface SlideRead {
  path: string;
  level: number;
  x0: number;
  y0: number;
  width: number;
  height: number;
  levelWidth: number;
  levelHeight: number;
}

/** The reads recorded in `file` (none when the file does not exist). */
export function readSlideReads(file: string): SlideRead[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as SlideRead);
}

const out = process.env[SLIDE_READS_ENV];
if (out) {
  const original = Slide.prototype.readArgb;
  Slide.prototype.readArgb = function (this: Slide, x0, y0, level, width, height) {
    const l = this.levels[level];
    const read: SlideRead = {
      path: this.path,
      level,
      x0,
      y0,
      width,
      height,
      levelWidth: l?.width ?? 0,
      levelHeight: l?.height ?? 0,
    };
    // Synchronous and one line each: the record survives however the trainer exits.
    appendFileSync(out, `${JSON.stringify(read)}\n`);
    return original.call(this, x0, y0, level, width, height);
  };
}
