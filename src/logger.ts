import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** json: one JSON object a line (for collectors); pretty: coloured lines for people; auto: pretty on a terminal. */
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  format?: LogFormat;
  /** Where lines go (stdout by default): tests pass a stream to read them. */
  destination?: DestinationStream;
  /** Whether stdout is a terminal (for auto); defaults to process.stdout.isTTY. */
  isTTY?: boolean;
}

/**
 * The server's logger (pino). Every line about a job carries its id as jobId: callers log with
 * jobLogger(logger, id) or pass { jobId } themselves.
 */
export function createLogger(level: string, options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'auto';
  const usePretty = format === 'pretty' || (format === 'auto' && (options.isTTY ?? process.stdout.isTTY === true));
  const base = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  if (!usePretty) return options.destination ? pino(base, options.destination) : pino(base);
  // In this thread and synchronous (no transport worker): lines are out before a crash or exit.
  const stream = pretty({
    colorize: options.destination ? false : undefined,
    sync: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    ...(options.destination ? { destination: options.destination } : {}),
  });
  return pino(base, stream);
}

/** A logger whose every line names the job. */
export function jobLogger(logger: Logger, jobId: string): Logger {
  return logger.child({ jobId });
}
