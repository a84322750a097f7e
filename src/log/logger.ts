import pino, { Logger, LoggerOptions } from 'pino';

// Paths that may carry secrets: registry credentials travel in X-Registry-Auth /
// X-Registry-Config headers, and a container's Env often holds passwords/tokens.
export const REDACT_PATHS = [
  'req.headers["x-registry-auth"]',
  'req.headers["x-registry-config"]',
  'req.headers.authorization',
  'headers["x-registry-auth"]',
  'headers["x-registry-config"]',
  'headers.authorization',
  'body.Env',
  'Env',
  '*.Env',
];

export interface LogOptions {
  level?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stderr is a terminal. */
  pretty?: boolean;
  /** Write to this file descriptor / path instead of stderr. */
  destination?: string | number;
}

/**
 * The one logger factory. JSON lines by default (machines read logs), pretty
 * when a person is watching a terminal.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.CALICO_LOG_LEVEL ?? 'info';
  const base: LoggerOptions = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  const dest = opts.destination ?? 2;
  const pretty = opts.pretty ?? (typeof dest === 'number' && dest === 2 && process.stderr.isTTY === true);
  if (pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { destination: dest, colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  return pino(base, pino.destination({ dest, sync: false, mkdir: true }));
}

/** A logger that discards everything (tests, quiet CLI paths). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
