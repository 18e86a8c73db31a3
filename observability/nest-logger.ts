/**
 * The API's Nest logger in the JSON format of `log.ts` (`SOPHIA_LOG_FORMAT=json`): one line per entry, component
 * `api`, the Nest context (the class that logged) as `context`, an error's stack as `stack`, and the
 * trace id of the request being served when tracing is on.
 */
import type { LoggerService, LogLevel } from '@nestjs/common';
import { jsonLogLine } from './log';
import { currentTraceId } from './tracing';

const LEVEL_NAMES: Record<LogLevel, string> = { fatal: 'ERROR', error: 'ERROR', warn: 'WARN', log: 'INFO', debug: 'DEBUG', verbose: 'TRACE' };

export class JsonNestLogger implements LoggerService {
  constructor(
    private readonly levels: readonly LogLevel[],
    private readonly write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  ) {}

  private emit(level: LogLevel, message: unknown, params: unknown[]): void {
    if (!this.levels.includes(level)) return;
    // Nest passes the context (a class name) last; an error's stack before it.
    const context = params.length > 0 && typeof params[params.length - 1] === 'string' ? (params.pop() as string) : undefined;
    const stack = params.find((p): p is string => typeof p === 'string');
    const text = message instanceof Error ? message.message : typeof message === 'string' ? message : JSON.stringify(message);
    this.write(jsonLogLine({ level: LEVEL_NAMES[level], message: text, time: new Date(), meta: { traceId: currentTraceId(), ...(context ? { context } : {}), ...(stack ? { stack } : {}) } }, 'api'));
  }

  log(message: unknown, ...params: unknown[]): void {
    this.emit('log', message, params);
  }
  error(message: unknown, ...params: unknown[]): void {
    this.emit('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.emit('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.emit('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.emit('verbose', message, params);
  }
  fatal(message: unknown, ...params: unknown[]): void {
    this.emit('fatal', message, params);
  }
}
