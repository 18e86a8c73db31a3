/**
 * `/runs`: start, list, describe, watch (metrics, Server-Sent Events), control runs, and read their checkpoints
 * and report.
 */
import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import type { z } from 'zod';
import { ApiBodyFrom, ApiErrors, ApiPathParam, ApiQueryFrom, ApiResponseFrom } from '../common/openapi';
import { RunId } from '../common/dto';
import { ApiSettings } from '../common/settings';
import {
  ActionAccepted,
  CheckpointList,
  ControlAction,
  CreateRunBody,
  ListRunsQuery,
  MetricsQuery,
  MetricsResponse,
  ReportFileName,
  ReportResponse,
  RunCreated,
  RunDetail,
  RunList,
} from './runs.dto';
import { RunsService } from './runs.service';
import { streamRunEvents } from './run-events';

@ApiTags('runs')
@ApiBearerAuth()
@Controller('runs')
export class RunsController {
  constructor(
    @Inject(RunsService) private readonly runs: RunsService,
    @Inject(ApiSettings) private readonly settings: ApiSettings,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiBodyFrom(CreateRunBody)
  @ApiResponseFrom(201, RunCreated, 'The run was started (or attached to, or had finished earlier)')
  @ApiErrors(400, 401, 403, 409, 413)
  create(@Body({ schema: CreateRunBody }) body: CreateRunBody) {
    return this.runs.create(body);
  }

  @Get()
  @ApiQueryFrom(ListRunsQuery)
  @ApiResponseFrom(200, RunList, 'Runs, newest first')
  @ApiErrors(400, 401)
  list(@Query({ schema: ListRunsQuery }) query: z.infer<typeof ListRunsQuery>) {
    return this.runs.list(query);
  }

  @Get(':id')
  @ApiPathParam('id', RunId)
  @ApiResponseFrom(200, RunDetail, 'Status and progress')
  @ApiErrors(400, 401, 404)
  get(@Param('id', { schema: RunId }) id: string) {
    return this.runs.detail(id);
  }

  @Get(':id/metrics')
  @ApiPathParam('id', RunId)
  @ApiQueryFrom(MetricsQuery)
  @ApiResponseFrom(200, MetricsResponse, 'Per-step metrics from metrics.jsonl')
  @ApiErrors(400, 401, 404)
  metrics(@Param('id', { schema: RunId }) id: string, @Query({ schema: MetricsQuery }) query: z.infer<typeof MetricsQuery>) {
    return this.runs.metrics(id, query);
  }

  @Get(':id/events')
  @ApiPathParam('id', RunId)
  @ApiProduces('text/event-stream')
  @ApiResponseFrom(200, undefined, 'Server-Sent Events: `progress` (the run detail) when it changes, `metrics` ({records, total}) as steps are logged, `end` when the run closed. Reconnect with Last-Event-ID to resume the metrics')
  @ApiErrors(400, 401, 404)
  async events(@Param('id', { schema: RunId }) id: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    await this.runs.describe(id); // 404 as JSON before the stream starts
    const lastId = Number(req.header('last-event-id'));
    await streamRunEvents(this.runs, id, req, res, { pollMs: this.settings.config.eventsPollMs, sentMetrics: Number.isInteger(lastId) && lastId > 0 ? lastId : 0 });
  }

  @Post(':id/:action')
  @HttpCode(202)
  @ApiPathParam('id', RunId)
  @ApiPathParam('action', ControlAction)
  @ApiResponseFrom(202, ActionAccepted, 'The request was delivered to the run. `resume` of a failed, cancelled or terminated run starts a new execution of it that keeps its completed stages and continues from its last good checkpoint')
  @ApiErrors(400, 401, 403, 404, 409)
  control(@Param('id', { schema: RunId }) id: string, @Param('action', { schema: ControlAction }) action: z.infer<typeof ControlAction>) {
    return this.runs.control(id, action);
  }

  @Get(':id/checkpoints')
  @ApiPathParam('id', RunId)
  @ApiResponseFrom(200, CheckpointList, 'Committed checkpoints by stage and step')
  @ApiErrors(400, 401, 404)
  checkpoints(@Param('id', { schema: RunId }) id: string) {
    return this.runs.checkpoints(id);
  }

  @Get(':id/report')
  @ApiPathParam('id', RunId)
  @ApiResponseFrom(200, ReportResponse, 'The final report (markdown, report.json) and its files')
  @ApiErrors(400, 401, 404)
  report(@Param('id', { schema: RunId }) id: string) {
    return this.runs.report(id);
  }

  @Get(':id/report/files/:name')
  @ApiPathParam('id', RunId)
  @ApiPathParam('name', ReportFileName)
  @ApiProduces('image/png', 'image/svg+xml', 'application/json', 'text/markdown')
  @ApiResponseFrom(200, undefined, 'A report file (plot, JSON, markdown)')
  @ApiErrors(400, 401, 404)
  async reportFile(@Param('id', { schema: RunId }) id: string, @Param('name', { schema: ReportFileName }) name: string, @Res() res: Response): Promise<void> {
    const file = await this.runs.reportFile(id, name);
    res.setHeader('Content-Type', file.contentType);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (file.contentType.startsWith('image/svg')) res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
    res.end(Buffer.from(file.bytes));
  }
}
