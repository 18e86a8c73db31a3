/**
 * `GET /health` (no key needed): whether Temporal and the storage answer, 200 or 503.
 * `GET /metrics` (read scope): Prometheus text — API requests, runs by status, process memory and uptime.
 */
import { Controller, Get, Header, Inject, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiProduces, ApiTags } from '@nestjs/swagger';
import { Client, type Connection } from '@temporalio/client';
import type { Response } from 'express';
import { z } from 'zod';
import { Storage } from '../../storage/types';
import { Public } from '../common/auth';
import { ApiErrors, ApiResponseFrom } from '../common/openapi';
import { ApiSettings } from '../common/settings';
import { withTimeout } from '../common/timeout';
import { RequestMetrics } from './request-metrics';

const Health = z.object({
  status: z.enum(['ok', 'degraded']),
  temporal: z.object({ ok: z.boolean(), address: z.string(), error: z.string().optional() }),
  storage: z.object({ ok: z.boolean(), location: z.string(), error: z.string().optional() }),
});

const RUN_STATES = { Running: 'running', Completed: 'completed', Failed: 'failed', Canceled: 'canceled', Terminated: 'terminated', TimedOut: 'timed_out' } as const;

/** Undefined when `fn` answers within `ms`, else why not. */
async function probe(fn: () => Promise<unknown>, ms = 3000): Promise<string | undefined> {
  try {
    await withTimeout(fn(), ms, `no answer within ${ms} ms`);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

@ApiTags('health')
@Controller()
export class HealthController {
  constructor(
    @Inject(Client) private readonly client: Client,
    @Inject(Storage) private readonly storage: Storage,
    @Inject(ApiSettings) private readonly settings: ApiSettings,
    @Inject(RequestMetrics) private readonly requests: RequestMetrics,
  ) {}

  @Public()
  @Get('health')
  @ApiResponseFrom(200, Health, 'Temporal and storage answer')
  @ApiResponseFrom(503, Health, 'Temporal or storage does not answer')
  async health(@Res() res: Response): Promise<void> {
    const temporalError = await probe(() => (this.client.connection as Connection).healthService.check({}));
    const storageError = await probe(() => this.storage.head('healthcheck/probe'));
    const body: z.infer<typeof Health> = {
      status: temporalError || storageError ? 'degraded' : 'ok',
      temporal: { ok: !temporalError, address: this.settings.temporal.connection.address, ...(temporalError ? { error: temporalError } : {}) },
      storage: { ok: !storageError, location: this.storage.location, ...(storageError ? { error: storageError } : {}) },
    };
    res.status(body.status === 'ok' ? 200 : 503).json(body);
  }

  @ApiBearerAuth()
  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiProduces('text/plain')
  @ApiResponseFrom(200, undefined, 'Prometheus text exposition format')
  @ApiErrors(401)
  async metrics(): Promise<string> {
    const lines = [...this.requests.lines()];
    lines.push('# HELP sophia_runs Training runs known to Temporal, by status.', '# TYPE sophia_runs gauge');
    for (const [state, label] of Object.entries(RUN_STATES)) {
      const count = await this.client.workflowService
        .countWorkflowExecutions({ namespace: this.settings.temporal.connection.namespace, query: `WorkflowType = 'trainingPipeline' AND ExecutionStatus = '${state}'` })
        .then((r) => Number(r.count ?? 0))
        .catch(() => undefined);
      if (count !== undefined) lines.push(`sophia_runs{status="${label}"} ${count}`);
    }
    const mem = process.memoryUsage();
    lines.push(
      '# HELP sophia_api_uptime_seconds Seconds since the API started.',
      '# TYPE sophia_api_uptime_seconds gauge',
      `sophia_api_uptime_seconds ${((Date.now() - this.requests.startedAt) / 1000).toFixed(1)}`,
      '# HELP sophia_api_resident_memory_bytes Resident set size of the API process.',
      '# TYPE sophia_api_resident_memory_bytes gauge',
      `sophia_api_resident_memory_bytes ${mem.rss}`,
    );
    return `${lines.join('\n')}\n`;
  }
}
