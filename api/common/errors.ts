/**
 * One error shape for every failed request, and the filter that produces it:
 *
 *   { "statusCode": 400, "error": "Bad Request", "message": "body.config.rl.steps: …", "field": "body.config.rl.steps",
 *     "issues": [{ "field": "…", "message": "…" }] }
 *
 * `field` names what to fix (a body path, a query or path parameter, the Authorization header, the URL path).
 * Sophia's own errors map by category (config/input → 400, not-found → 404, conflict → 409, unavailable → 503;
 * the server's storage misconfigured → 503 on field `storage`);
 * anything unexpected becomes a 500 whose body carries an id to find it in the log, never a stack trace.
 */
import { randomBytes } from 'node:crypto';
import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Request, Response } from 'express';
import { ConfigError, SophiaError, StorageConfigError } from '../../common/errors';

export interface ApiErrorBody {
  statusCode: number;
  error: string;
  message: string;
  field: string;
  issues?: { field: string; message: string }[];
}

/** An error raised on purpose by the API, with the field it is about. */
export class ApiError extends HttpException {
  constructor(status: number, field: string, message: string, issues?: ApiErrorBody['issues']) {
    super({ statusCode: status, error: statusText(status), message, field, ...(issues ? { issues } : {}) } satisfies ApiErrorBody, status);
  }
}

function statusText(status: number): string {
  const name = HttpStatus[status];
  return typeof name === 'string'
    ? name
        .toLowerCase()
        .split('_')
        .map((w) => w[0]!.toUpperCase() + w.slice(1))
        .join(' ')
    : 'Error';
}

/** A body that is not JSON (Content-Type missing or another type, or a charset other than UTF-8). */
export const UNSUPPORTED_MEDIA_TYPE: ApiErrorBody = {
  statusCode: 415,
  error: 'Unsupported Media Type',
  message: 'send the body as UTF-8 JSON (Content-Type: application/json)',
  field: 'headers.content-type',
};

const CATEGORY_STATUS: Record<string, number> = { config: 400, input: 400, 'not-found': 404, conflict: 409, corrupt: 500, unavailable: 503 };

export function toErrorBody(err: unknown, req: Pick<Request, 'path'>, logger: Pick<Logger, 'error'>): ApiErrorBody {
  if (err instanceof HttpException) {
    const status = err.getStatus();
    // Express/body-parser failures, mapped to HttpExceptions by the adapter: say which part of the request.
    if (err.cause instanceof SyntaxError && status === 400) return { statusCode: 400, error: 'Bad Request', message: `the request body is not valid JSON (${err.cause.message})`, field: 'body' };
    if (err.cause instanceof URIError) return { statusCode: 400, error: 'Bad Request', message: 'the URL path has an invalid percent-encoding', field: 'path' };
    if (status === 413) return { statusCode: 413, error: 'Payload Too Large', message: 'the request body is larger than the limit (SOPHIA_API_BODY_LIMIT)', field: 'body' };
    if (status === 415) return UNSUPPORTED_MEDIA_TYPE;
    const response = err.getResponse();
    if (typeof response === 'object' && response !== null && 'field' in response) return response as ApiErrorBody;
    const raw = typeof response === 'string' ? response : (response as { message?: unknown }).message;
    const message = Array.isArray(raw) ? raw.map(String).join('; ') : typeof raw === 'string' ? raw : err.message;
    const field = status === 404 ? 'path' : status === 401 || status === 403 ? 'authorization' : 'request';
    return { statusCode: status, error: statusText(status), message: status === 404 && /^Cannot /.test(message) ? `no route ${req.path}` : message, field };
  }
  if (err instanceof WorkflowNotFoundError) return { statusCode: 404, error: 'Not Found', message: 'no such run or schedule', field: 'id' };
  // The server's storage is misconfigured (a missing bucket, a folder it cannot write): not the request's fault.
  if (err instanceof StorageConfigError) return { statusCode: 503, error: statusText(503), message: err.message, field: 'storage' };
  if (err instanceof SophiaError && err.category !== 'corrupt') {
    const status = CATEGORY_STATUS[err.category] ?? 500;
    const field = err instanceof ConfigError ? err.field : err.category === 'not-found' ? 'id' : 'request';
    return { statusCode: status, error: statusText(status), message: err.message, field };
  }
  const id = randomBytes(6).toString('hex');
  logger.error(`unhandled error ${id} on ${req.path}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return { statusCode: 500, error: 'Internal Server Error', message: `internal error (logged as ${id})`, field: 'request' };
}

@Catch()
export class ApiExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('api');

  catch(err: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    const body = toErrorBody(err, req, this.logger);
    if (res.headersSent) {
      res.end();
      return;
    }
    if (body.statusCode === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="sophia"');
    res.status(body.statusCode).json(body);
  }
}
