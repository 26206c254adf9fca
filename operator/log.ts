// Structured logs: winston, one JSON object per line on stderr. Reconcile logs come from a child
// logger carrying the job's namespace and name, so every line can be filtered by job. Messages
// never carry image paths (they may identify a patient).

import winston from 'winston';

export interface Logger {
  debug(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
  child(meta: Record<string, unknown>): Logger;
}

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(o: { level?: LogLevel; stream?: NodeJS.WritableStream } = {}): Logger {
  return winston.createLogger({
    level: o.level ?? 'info',
    defaultMeta: { component: 'tilestream-operator' },
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors(),
      winston.format.json(),
    ),
    transports: [
      o.stream
        ? new winston.transports.Stream({ stream: o.stream })
        : new winston.transports.Console({ stderrLevels: [...LOG_LEVELS] }),
    ],
  });
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
