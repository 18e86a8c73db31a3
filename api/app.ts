/**
 * Builds the API application: Nest on Express with a JSON body limit, request metrics and spans, the OpenAPI document
 * (`/openapi.json`, Swagger UI at `/docs`), a 415 for bodies that are not JSON, and the error shape of `common/errors.ts` for everything, including
 * unknown routes and unreadable bodies.
 */
import 'reflect-metadata';
import type { INestApplication, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { context } from '@opentelemetry/api';
import type { NextFunction, Request, Response } from 'express';
import { startServerSpan } from '../observability/tracing';
import { type ApiDependencies, ApiModule } from './app.module';
import { UNSUPPORTED_MEDIA_TYPE } from './common/errors';
import { RequestMetrics } from './health/request-metrics';

export interface CreateApiOptions extends ApiDependencies {
  /** Nest log levels (default: warnings and errors). */
  logLevels?: LogLevel[] | false;
  /** A logger instead of Nest's console one (`SOPHIA_LOG_FORMAT=json`: observability/nest-logger.ts). */
  logger?: LoggerService;
}

export async function createApiApp(options: CreateApiOptions): Promise<INestApplication> {
  const { settings } = options;
  // The adapter is passed in (not loaded by Nest on its own) so it shares this process's one copy of
  // @nestjs/common: otherwise its exceptions are not `instanceof HttpException` here.
  const app = await NestFactory.create<NestExpressApplication>(ApiModule.with(options), new ExpressAdapter(), {
    bodyParser: false,
    logger: options.logger ?? options.logLevels ?? ['error', 'warn'],
  });
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  const metrics = app.get(RequestMetrics);
  app.use((req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path;
      metrics.record(req.method, route ? `${req.baseUrl}${route}` : 'unmatched', res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  });
  // Every body the API reads is JSON: one of another type (or none declared) is a 415 here, not a 400 about a
  // missing body from the validation that would see nothing parsed. Requests without a body (or an empty one, as
  // a browser's bodiless POST sends) pass.
  app.use((req: Request, res: Response, next: NextFunction) => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody && !req.is(['application/json', '+json'])) res.status(415).json(UNSUPPORTED_MEDIA_TYPE);
    else next();
  });
  app.useBodyParser('json', { limit: settings.config.bodyLimitBytes, strict: true });
  // A span per request when tracing (observability/tracing.ts): POST /runs is the root of the run's trace. After the
  // body parser, whose stream callbacks would leave the span's async context.
  app.use((req: Request, res: Response, next: NextFunction) => {
    const span = startServerSpan(req.method, req.path, req.headers);
    if (!span) return next();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path;
      span.finish(route ? `${req.baseUrl}${route}` : undefined, res.statusCode);
    });
    context.with(span.context, next);
  });
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Sophia API')
      .setDescription('Start, watch and control SophiaVL-R1-style training runs (SFT → thinking reward model → Trust-GRPO → evaluation) and schedule retraining. Every route but /health needs `Authorization: Bearer <API key>`.')
      .setVersion('0.1.0')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'openapi.json', yamlDocumentUrl: 'openapi.yaml', ui: true });
  return app;
}
