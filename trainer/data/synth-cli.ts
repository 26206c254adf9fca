// `tilestream synth`: writes the synthetic lesion dataset (synthetic.ts). Progress goes to stderr,
// the summary to stdout (JSON with --json).

import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { parseIntOption, parseSizeOption } from '../cli-util.ts';
import {
  ensureSyntheticDataset,
  SYNTHETIC_FORMATS,
  type SyntheticFormat,
  type SyntheticProgress,
} from './synthetic.ts';

interface SynthOptions {
  out: string;
  size: { height: number; width: number };
  count: number;
  valCount: number;
  seed: number;
  format: SyntheticFormat;
  downsample?: number;
  downUp?: boolean;
  force?: boolean;
  json?: boolean;
}

/** Adds the `synth` subcommand to a program. */
export function registerSynthCommand(program: Command): Command {
  return program
    .command('synth')
    .description(
      'write the synthetic lesion dataset: grey tissue-like images whose label is a few 8–16 px ' +
        'checkerboard lesions that vanish when the image is downsampled; with train.csv and val.csv',
    )
    .requiredOption('--out <dir>', 'folder to write (created if missing)')
    .requiredOption('--size <N|HxW>', 'image size in pixels, e.g. 1024 or 768x1024', parseSizeOption)
    .requiredOption('--count <K>', 'training images (half positive)', parseIntOption)
    .option('--val-count <V>', 'validation images (≥ 200 for a meaningful AUC)', parseIntOption, 200)
    .option('--seed <S>', 'generator seed', parseIntOption, 1)
    .addOption(
      new Option(
        '--format <format>',
        'file format (svs: each image as the tissue of an Aperio whole slide, read with spec.data.slides.micronsPerPixel 0.5; ' +
          "dicom: the same slide as a DICOM WSI series, converted by PyPI's wsidicomizer, which must be installed)",
      )
        .choices(SYNTHETIC_FORMATS)
        .default('png'),
    )
    .option('--downsample <F>', 'also write an F× box-downsampled copy to DIR/downF/', parseIntOption)
    .option(
      '--down-up',
      'with --downsample, also write that copy upsampled back to full size to DIR/downF-up/',
    )
    .option('--force', 'regenerate every image, even over a complete dataset with other parameters')
    .option('--json', 'print the summary as JSON')
    .action(async (o: SynthOptions) => {
      const dir = resolve(o.out);
      const result = await ensureSyntheticDataset(
        dir,
        {
          height: o.size.height,
          width: o.size.width,
          count: o.count,
          validationCount: o.valCount,
          seed: o.seed,
          format: o.format,
          ...(o.downsample !== undefined ? { downsample: o.downsample } : {}),
          ...(o.downUp ? { downUp: true } : {}),
        },
        { onProgress: progressPrinter(), ...(o.force ? { force: true } : {}) },
      );
      const summary = {
        dir,
        generated: result.generated,
        kept: result.kept,
        seconds: Number(result.seconds.toFixed(2)),
        params: result.info.params,
        normalization: result.info.normalization,
        variants: result.info.variants.map((v) => ({
          ...v,
          train: resolve(dir, v.dir, result.info.manifests.train),
          validation: resolve(dir, v.dir, result.info.manifests.validation),
        })),
      };
      if (o.json) {
        process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        return;
      }
      const p = result.info.params;
      const lines = [
        result.generated === 0
          ? `${dir} already holds this dataset (${p.count} training + ${p.validationCount} validation images)`
          : `wrote ${result.generated} images (${result.kept} kept) in ${summary.seconds} s to ${dir}`,
        ...summary.variants.map(
          (v) => `  ${v.kind.padEnd(8)} ${v.height}×${v.width}  ${v.train}  ${v.validation}`,
        ),
        `  normalization: mean [${summary.normalization.mean.join(', ')}], std [${summary.normalization.std.join(', ')}]`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

/** Progress on stderr: a rewritten line on a terminal, a line per 10 % otherwise. */
function progressPrinter(): (p: SyntheticProgress) => void {
  const tty = process.stderr.isTTY === true;
  let lastDecile = -1;
  return (p) => {
    const rate = p.seconds > 0 ? ` ${(p.done / p.seconds).toFixed(1)} img/s` : '';
    const line = `synth ${p.split}: ${p.done}/${p.total}${rate}`;
    if (tty) {
      process.stderr.write(`\r${line}${p.done === p.total ? '\n' : ''}`);
      return;
    }
    const decile = Math.floor((10 * p.done) / p.total);
    if (decile !== lastDecile || p.done === p.total) {
      lastDecile = decile;
      process.stderr.write(`${line}\n`);
    }
  };
}
