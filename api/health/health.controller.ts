/**
 * `GET /health` (no key needed): whether Temporal and the storage answer — `{status, temporal, storage}` as
 * ok/unavailable and up/down, 200 or 503, and nothing more: where they are and why they fail stays behind a key.
 * `GET /health/details` (read scope): the same with Temporal's address, the storage location and the errors.
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

const Up = z.enum(['up', 'down']);
const Health = z.object({
  status: z.enum(['ok', 'unavailable']),
  temporal: Up,
  storage: Up,
});
const HealthDetails = z.object({
  status: z.enum(['ok', 'unavailable']),
  temporal: z.object({ up: z.boolean(), address: z.string(), error: z.string().optional() }),
  storage: z.object({ up: z.boolean(), location: z.string(), error: z.string().optional() }),
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

  /** Both probes, with where each component is and why it failed. */
  private async check(): Promise<z.infer<typeof HealthDetails>> {
    const [temporalError, storageError] = await Promise.all([
      probe(() => (this.client.connection as Connection).healthService.check({})),
      probe(() => this.storage.head('healthcheck/probe')),
    ]);
    return {
      status: temporalError || storageError ? 'unavailable' : 'ok',
      temporal: { up: !temporalError, address: this.settings.temporal.connection.address, ...(temporalError ? { error: temporalError } : {}) },
      storage: { up: !storageError, location: this.storage.location, ...(storageError ? { error: storageError } : {}) },
    };
  }

  @Public()
  @Get('health')
  @ApiResponseFrom(200, Health, 'Temporal and storage answer')
  @ApiResponseFrom(503, Health, 'Temporal or storage does not answer')
  async health(@Res() res: Response): Promise<void> {
    const d = await this.check();
    const body: z.infer<typeof Health> = { status: d.status, temporal: d.temporal.up ? 'up' : 'down', storage: d.storage.up ? 'up' : 'down' };
    res.status(d.status === 'ok' ? 200 : 503).json(body);
  }

  @ApiBearerAuth()
  @Get('health/details')
  @ApiResponseFrom(200, HealthDetails, 'Temporal and storage answer: where they are')
  @ApiResponseFrom(503, HealthDetails, 'Temporal or storage does not answer: where, and why')
  @ApiErrors(401)
  async healthDetails(@Res() res: Response): Promise<void> {
    const d = await this.check();
    res.status(d.status === 'ok' ? 200 : 503).json(d);
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
