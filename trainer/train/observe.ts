// What a training run shows: Prometheus metrics on /metrics (prom-client), structured JSON logs
// (winston) when stderr is not a terminal, a progress bar with ETA when it is. Metric labels carry
// the job's namespace and name only — never an image path, which may identify a patient.

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import winston from 'winston';

export interface TrainerMetrics {
  readonly registry: Registry;
  readonly peakMemory: Gauge;
  readonly predictedMemory: Gauge;
  readonly pixels: Counter;
  readonly images: Counter;
  readonly tiles: Counter;
  readonly skipped: Counter;
  readonly stepDuration: Histogram;
  readonly loss: Gauge;
  readonly epoch: Gauge;
  readonly progress: Gauge;
  readonly lastCheckpoint: Gauge;
  readonly validationAuc: Gauge;
  readonly tileSize: Gauge;
}

export function createTrainerMetrics(job: { namespace: string; name: string }): TrainerMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ namespace: job.namespace, job: job.name });
  const reg = { registers: [registry] };
  return {
    registry,
    peakMemory: new Gauge({
      name: 'tilestream_trainer_peak_memory_bytes',
      help: 'Peak tensor memory of a streamed training step, measured with tf.profile on the first image of each epoch.',
      ...reg,
    }),
    predictedMemory: new Gauge({
      name: 'tilestream_trainer_predicted_peak_memory_bytes',
      help: 'Peak memory the planner predicts for this job, streamed or conventional training.',
      labelNames: ['mode'],
      ...reg,
    }),
    pixels: new Counter({
      name: 'tilestream_trainer_pixels_processed_total',
      help: 'Image pixels trained on.',
      ...reg,
    }),
    images: new Counter({
      name: 'tilestream_trainer_images_processed_total',
      help: 'Images trained on.',
      ...reg,
    }),
    tiles: new Counter({
      name: 'tilestream_trainer_tiles_processed_total',
      help: 'Tiles run through the body, forward and backward passes counted separately.',
      ...reg,
    }),
    skipped: new Counter({
      name: 'tilestream_trainer_skipped_images_total',
      help: 'Images skipped because they could not be read, by reason.',
      labelNames: ['reason'],
      ...reg,
    }),
    stepDuration: new Histogram({
      name: 'tilestream_trainer_image_step_duration_seconds',
      help: 'Time of one streamed training step (one image).',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
      ...reg,
    }),
    loss: new Gauge({ name: 'tilestream_trainer_loss', help: 'Training loss of the last batch.', ...reg }),
    epoch: new Gauge({ name: 'tilestream_trainer_epoch', help: 'Epochs completed.', ...reg }),
    progress: new Gauge({
      name: 'tilestream_trainer_progress_ratio',
      help: 'Fraction of the run done (0–1).',
      ...reg,
    }),
    lastCheckpoint: new Gauge({
      name: 'tilestream_trainer_last_checkpoint_timestamp_seconds',
      help: 'Unix time of the last checkpoint written.',
      ...reg,
    }),
    validationAuc: new Gauge({
      name: 'tilestream_trainer_validation_auc',
      help: 'Validation ROC AUC of the last epoch.',
      ...reg,
    }),
    tileSize: new Gauge({
      name: 'tilestream_trainer_tile_size_pixels',
      help: 'Tile side in pixels.',
      ...reg,
    }),
  };
}

/** Serves /metrics (and /healthz) on a port; port 0 picks a free one. Resolves with the bound port. */
export function serveMetrics(
  registry: Registry,
  port: number,
  host = '0.0.0.0',
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        });
    } else if (req.url === '/healthz') {
      res.writeHead(200);
      res.end('ok');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr ? addr.port : port });
    });
  });
}

export type Logger = winston.Logger;

/** JSON lines on stderr; `job` fields on every line. Level from TILESTREAM_LOG_LEVEL (default info). */
export function createLogger(fields: Record<string, string>, pretty: boolean): Logger {
  return winston.createLogger({
    level: process.env.TILESTREAM_LOG_LEVEL ?? 'info',
    defaultMeta: fields,
    format: pretty
      ? winston.format.combine(
          winston.format.timestamp({ format: 'HH:mm:ss' }),
          winston.format.printf((i) => `${String(i.timestamp)} ${i.level.padEnd(5)} ${String(i.message)}`),
        )
      : winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}

/** A one-line progress bar with ETA for terminals; redraws at most 5 times a second. */
export class ProgressBar {
  readonly #out: NodeJS.WriteStream;
  readonly #start = Date.now();
  #last = 0;
  #shown = false;

  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }

  update(fraction: number, label: string): void {
    const now = Date.now();
    if (now - this.#last < 200 && fraction < 1) return;
    this.#last = now;
    const width = 28;
    const done = Math.round(Math.min(Math.max(fraction, 0), 1) * width);
    const elapsed = (now - this.#start) / 1000;
    const eta = fraction > 0 ? (elapsed * (1 - fraction)) / fraction : Number.NaN;
    const line = `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${(100 * fraction).toFixed(1).padStart(5)}% ${label} eta ${formatDuration(eta)}`;
    this.#out.write(`\r${line.slice(0, (this.#out.columns ?? 120) - 1)}\x1b[K`);
    this.#shown = true;
  }

  /** Clears the bar so a log line can be printed. */
  clear(): void {
    if (this.#shown) this.#out.write('\r\x1b[K');
    this.#shown = false;
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0
    ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}`
    : `${m}:${String(r).padStart(2, '0')}`;
}
