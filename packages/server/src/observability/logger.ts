import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stdout (pino). Tests pass level 'silent' or a custom destination. */
export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: 'rtm-server' }, timestamp: pino.stdTimeFunctions.isoTime }, destination as never);
}
