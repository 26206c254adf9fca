// `tilestream bench throughput` as a whole: which measurements to run (leaving out what would not
// fit this machine), in which order, and the report as a table.

import { type BackendChoice, type BackendName, initBackend, parseBackendChoice } from '../backend/select.ts';
import { formatTable } from '../text-table.ts';
import {
  type BackendComparison,
  compareBackends,
  measureRatio,
  type Skipped,
  type ThroughputCase,
  type ThroughputResult,
  tileAt,
  wontFit,
} from './throughput.ts';

export interface ThroughputOptions {
  readonly cases: readonly ThroughputCase[];
  /** Image sides of the ratios; default each case's own. */
  readonly sizes?: readonly number[];
  readonly backend: BackendChoice;
  /** Comma-separated backends, 'auto' (tensorflow,wasm when tensorflow starts, else wasm,cpu) or '' (none). */
  readonly compareBackends: string;
  readonly compareCases: readonly ThroughputCase[];
  readonly compareSize: number;
  readonly repeats: number;
}

export interface ThroughputReport {
  /** The backend of the streamed/conventional ratios. */
  readonly backend: BackendName;
  readonly ratios: ThroughputResult[];
  readonly backends: BackendComparison[];
  readonly skipped: Skipped[];
  readonly repeats: number;
}

async function comparedBackends(spec: string, log: (line: string) => void): Promise<BackendName[]> {
  if (spec.trim() === 'auto') {
    try {
      await initBackend('tensorflow');
      return ['tensorflow', 'wasm'];
    } catch (e) {
      log(`throughput: comparing wasm with cpu: ${(e as Error).message}`);
      return ['wasm', 'cpu'];
    }
  }
  const names = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => parseBackendChoice(s, '--compare-backends'));
  if (names.includes('auto')) throw new Error("--compare-backends: 'auto' stands alone");
  return [...new Set(names as BackendName[])];
}

export async function benchThroughput(
  o: ThroughputOptions,
  log: (line: string) => void,
): Promise<ThroughputReport> {
  const info = await initBackend(o.backend);
  const ratios: ThroughputResult[] = [];
  const skipped: Skipped[] = [];
  for (const c of o.cases) {
    for (const image of o.sizes ?? [c.image]) {
      let why: string | undefined;
      try {
        why = wontFit(c.network(), image, info.name);
        if (why === undefined) {
          const tile = tileAt(c, image);
          if (tile >= image) why = `the image is not larger than the smallest tile (${tile})`;
          else ratios.push(await measureRatio(c, info.name, o.repeats, log, image, tile));
        }
      } catch (e) {
        why = (e as Error).message;
      }
      if (why !== undefined) {
        skipped.push({ case: c.name, image, backend: info.name, why });
        log(`throughput: skipped ${c.name} ${image}² on ${info.name}: ${why}`);
      }
    }
  }
  const backends: BackendComparison[] = [];
  const names = o.compareBackends.trim() === '' ? [] : await comparedBackends(o.compareBackends, log);
  if (names.length > 0) {
    for (const c of o.compareCases) {
      const fitting = names.filter((b) => {
        const why = wontFit(c.network(), o.compareSize, b);
        if (why !== undefined) skipped.push({ case: c.name, image: o.compareSize, backend: b, why });
        return why === undefined;
      });
      if (fitting.length > 0) backends.push(await compareBackends(fitting, c, o.compareSize, o.repeats, log));
    }
  }
  return { backend: info.name, ratios, backends, skipped, repeats: o.repeats };
}

const pct = (x: number): string => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;

export function formatThroughput(r: ThroughputReport): string {
  const out: string[] = [];
  if (r.ratios.length > 0) {
    out.push(
      `Streamed / conventional time on ${r.backend}, ${r.repeats} interleaved rounds: median CPU time of this process, and the fastest round's wall time:\n`,
      formatTable(
        [
          'case',
          'image',
          'tile',
          'tiles',
          'A',
          '4A/3',
          'CPU: measured',
          'deviation',
          'tile-calibrated',
          'deviation',
          'fastest wall: measured',
          'tile-calibrated',
          'deviation',
          'conventional s (CPU / wall)',
          'streamed s (CPU / wall)',
        ],
        r.ratios.map((x) => [
          x.case,
          `${x.image}²`,
          `${x.tile}²`,
          String(x.tiles),
          x.areaFactor.toFixed(3),
          x.predictedRatio.toFixed(3),
          x.measuredRatio.toFixed(3),
          pct(x.deviation),
          x.tileCalibratedRatio.toFixed(3),
          pct(x.tileCalibratedDeviation),
          x.fastestWall.measuredRatio.toFixed(3),
          x.fastestWall.tileCalibratedRatio.toFixed(3),
          pct(x.fastestWall.tileCalibratedDeviation),
          `${x.conventional.cpuSeconds.toFixed(2)} / ${x.conventional.wallSeconds.toFixed(2)}`,
          `${x.streamed.cpuSeconds.toFixed(2)} / ${x.streamed.wallSeconds.toFixed(2)}`,
        ]),
      ),
    );
  }
  for (const b of r.backends) {
    const parts = Object.entries(b.seconds).map(
      ([name, t]) =>
        `${name} ${t.wallSeconds.toFixed(2)} s wall (fastest ${t.fastestWallSeconds.toFixed(2)}), ${t.cpuSeconds.toFixed(2)} s CPU` +
        (name === b.reference
          ? ''
          : ` (${(b.speedup[name]?.wall ?? Number.NaN).toFixed(2)}× wall, ${(b.speedup[name]?.fastestWall ?? Number.NaN).toFixed(2)}× fastest wall, ${(b.speedup[name]?.cpu ?? Number.NaN).toFixed(2)}× CPU of ${b.reference})`),
    );
    out.push(`\nconventional step, ${b.case} ${b.image}²: ${parts.join('; ')}\n`);
  }
  for (const s of r.skipped) out.push(`\nskipped ${s.case} ${s.image}² on ${s.backend}: ${s.why}`);
  return `${out.join('')}\n`;
}
