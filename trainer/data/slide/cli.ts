// `tilestream slides inspect FILE`: what the trainer would read from a slide (inspect.ts).

import { basename, resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { BACKEND_CHOICES, type BackendChoice } from '../../backend/select.ts';
import { parseIntOption, parseSizeOption } from '../../cli-util.ts';
import { ARCHITECTURES, type Architecture } from '../../streaming/bodies.ts';
import { formatTable } from '../../text-table.ts';
import { benchSlides } from './bench.ts';
import { inspectSlide } from './inspect.ts';
import type { SlideRequest, TissueFit } from './slide-geometry.ts';

interface InspectFlags {
  thumbnail?: string;
  size?: { height: number; width: number };
  micronsPerPixel?: number;
  level?: number;
  fit: TissueFit;
  tissue: boolean;
  json?: boolean;
}

const fmtBox = (b: { x0: number; y0: number; x1: number; y1: number }): string =>
  `x ${b.x0}–${b.x1}, y ${b.y0}–${b.y1} (${b.x1 - b.x0}×${b.y1 - b.y0} px)`;

export function registerSlidesCommand(program: Command): void {
  const slides = program
    .command('slides')
    .description('whole-slide images read through OpenSlide (see: slides inspect)');
  slides
    .command('inspect <file>')
    .description(
      "print a slide's vendor, levels, resolution and tissue box (and with --size, the level, scale and crop " +
        'that spec.data.slides would read), and write a thumbnail PNG with the tissue outline (green) and the crop (red)',
    )
    .option(
      '--thumbnail <png>',
      'where to write the thumbnail (default: <file name>.tissue.png here); the mask goes beside it',
    )
    .option('--size <N|HxW>', 'spec.data.imageSize, to show the placement', parseSizeOption)
    .option('--microns-per-pixel <um>', 'spec.data.slides.micronsPerPixel', parsePositiveNumber)
    .option('--level <L>', 'spec.data.slides.level', parseIntOption)
    .addOption(
      new Option('--fit <fit>', 'spec.data.slides.fit').choices(['crop', 'downscale']).default('crop'),
    )
    .option('--no-tissue', 'spec.data.slides.tissue: false (place the whole slide)')
    .option('--json', 'print the report as JSON')
    .action(async (file: string, o: InspectFlags) => {
      const path = resolve(file);
      const thumbnailPath = resolve(o.thumbnail ?? `${basename(file).replace(/\.[^.]*$/, '')}.tissue.png`);
      try {
        if (o.size && o.micronsPerPixel === undefined && o.level === undefined) {
          throw new InvalidArgumentError(
            '--size needs --microns-per-pixel or --level (as spec.data.slides does)',
          );
        }
        const request: SlideRequest = { fit: o.fit, tissue: o.tissue };
        if (o.micronsPerPixel !== undefined) request.micronsPerPixel = o.micronsPerPixel;
        if (o.level !== undefined) request.level = o.level;
        const r = await inspectSlide(path, {
          thumbnailPath,
          ...(o.size && { image: { ...o.size, request } }),
        });
        if (o.json === true) {
          process.stdout.write(`${JSON.stringify(r)}\n`);
          return;
        }
        const mpp = r.micronsPerPixel;
        const lines = [
          `${r.path}: ${r.vendor}${r.objectivePower ? `, ${r.objectivePower}×` : ''}, ` +
            (mpp
              ? `${mpp.x}×${mpp.y} µm/px at level 0`
              : 'no resolution metadata (spec.data.slides.level needed)'),
          ...r.levels.map(
            (l, i) =>
              `  level ${i}: ${l.width}×${l.height} px, downsample ${Number(l.downsample.toFixed(3))}` +
              (l.micronsPerPixel !== undefined ? `, ${Number(l.micronsPerPixel.toFixed(4))} µm/px` : ''),
          ),
          r.tissue.box
            ? `tissue: ${fmtBox(r.tissue.box)} at level 0; ${(r.tissue.fraction * 100).toFixed(1)}% of the thumbnail ` +
              `(level ${r.tissue.thumbnailLevel}, saturation threshold ${r.tissue.threshold}/255)`
            : 'tissue: none found (the whole slide would be used)',
        ];
        if (r.placement) {
          const p = r.placement;
          lines.push(
            `read: level ${p.level}, ${Number(p.scaleX.toFixed(4))} level px per image px` +
              (p.micronsPerPixel !== undefined ? ` (${Number(p.micronsPerPixel.toFixed(4))} µm/px)` : '') +
              `, ${p.placement}; crop ${fmtBox(p.cropLevel0)} at level 0`,
          );
        }
        lines.push(`thumbnail: ${r.thumbnail}`, `mask: ${r.mask}`);
        process.stdout.write(`${lines.join('\n')}\n`);
      } catch (err) {
        process.stderr.write(`slides inspect: ${path}: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}

function parsePositiveNumber(v: string): number {
  const n = Number(v);
  if (!(Number.isFinite(n) && n > 0))
    throw new InvalidArgumentError(`expected a positive number, got '${v}'`);
  return n;
}

/** `tilestream bench slides`. */
export function registerSlideBench(bench: Command): void {
  bench
    .command('slides')
    .description(
      'read training tiles from a whole slide through OpenSlide at several resolutions (Mpx/s of tiles delivered, ' +
        'thumbnail and tissue time); a synthetic JPEG .svs unless --file',
    )
    .option('--file <slide>', 'a slide to read instead of the synthetic one')
    .option('--side <px>', 'side of the synthetic slide', parseIntOption, 8192)
    .option('--image-size <px>', 'training image side at every resolution', parseIntOption, 2048)
    .option('--tile <px>', 'tile side', parseIntOption, 512)
    .option(
      '--microns-per-pixel <list>',
      'resolutions to read',
      (v) => v.split(',').map(parsePositiveNumber),
      [0.25, 0.5, 0.75, 1, 2],
    )
    .addOption(
      new Option(
        '--train <architecture>',
        'also time streamed training steps reading the slide at the first resolution',
      ).choices(ARCHITECTURES),
    )
    .option('--width <n>', 'with --train: smallcnn channels or ResNet base width', parseIntOption)
    .addOption(
      new Option('--backend <name>', 'with --train: the backend').choices(BACKEND_CHOICES).default('auto'),
    )
    .option('--rounds <n>', 'with --train: rounds of each (the fastest counts)', parseIntOption, 2)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        file?: string;
        side: number;
        imageSize: number;
        tile: number;
        micronsPerPixel: number[];
        train?: Architecture;
        width?: number;
        backend: BackendChoice;
        rounds: number;
        json?: boolean;
      }) => {
        const { train, width, backend, rounds, ...rest } = o;
        const r = await benchSlides({
          ...rest,
          ...(train !== undefined && {
            train: { architecture: train, backend, rounds, ...(width !== undefined && { width }) },
          }),
          log: (l) => process.stderr.write(`bench slides: ${l}\n`),
        });
        if (o.json === true) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          formatTable(
            ['µm/px', 'level', 'scale', 'open + tissue', 'tiles', 'ms/tile', 'Mpx/s'],
            r.rows.map((x) => [
              String(x.micronsPerPixel),
              String(x.level),
              String(Number(x.scale.toFixed(3))),
              `${x.openMs.toFixed(0)} ms`,
              String(x.tiles),
              x.msPerTile.toFixed(1),
              x.megapixelsPerSecond.toFixed(1),
            ]),
          ) + `${r.imageSize}² image, ${r.tile}² tiles, max RSS ${r.maxRssMiB.toFixed(0)} MiB\n`,
        );
        const s = r.step;
        if (s !== undefined) {
          process.stdout.write(
            `training step (${s.architecture} on ${s.backend}, ${s.micronsPerPixel} µm/px): ` +
              `${s.stepSeconds.toFixed(2)} s reading as it goes, ${s.stepSecondsReadAhead.toFixed(2)} s reading ahead; ` +
              `its reads alone take ${s.readSeconds.toFixed(2)} s; it consumes ${s.megapixelsPerSecond.toFixed(2)} Mpx/s\n`,
          );
        }
      },
    );
}
