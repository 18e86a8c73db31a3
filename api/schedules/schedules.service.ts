/**
 * Retraining schedules as Temporal Schedules. Each schedule starts `modelLineRun` (workflows/model-line.ts),
 * which names the run `{scheduleId}-{yyyymmdd-hhmmss}`, resolves the model line's latest checkpoint, runs the
 * pipeline and records the result in the line. Temporal schedule ids are `{deployment}-{id}` (`sophia-{id}` in the
 * default deployment; `common/run-layout.ts`), and only the deployment's own schedules are listed and controlled.
 */
import { Inject, Injectable } from '@nestjs/common';
import { Client, ScheduleAlreadyRunning, ScheduleNotFoundError, type ScheduleDescription, type ScheduleOverlapPolicy } from '@temporalio/client';
import type { z } from 'zod';
import { parseDurationMs, formatDurationMs } from '../../common/duration';
import { pipelineInput } from '../../clients/runs';
import type { ModelLineRunInput } from '../../workflows/model-line';
import { launcherWorkflowId, scheduleIdOf, scheduleNameOf, scheduledRunId } from '../../common/run-layout';
import { identifyStore } from '../../storage/store-id';
import { Storage } from '../../storage/types';
import { resolveRequestConfig } from '../common/dto';
import { ApiError } from '../common/errors';
import { ApiSettings } from '../common/settings';
import { assertRoomForRun } from '../runs/run-limits';
import { assertStorageWritable } from '../runs/storage-check';
import { assertBackfillSize, assertScheduleInterval } from './schedule-limits';
import type { CreateScheduleBody, ScheduleAction, ScheduleActionBody, ScheduleList, ScheduleView } from './schedules.dto';

const toOverlap = (o: string) => o.toUpperCase() as ScheduleOverlapPolicy;

/** A schedule's cron or interval as it was created (the memo), else as Temporal describes its intervals. */
function specOf(d: ScheduleDescription): { cron?: string; every?: string } {
  const memo = d.memo ?? {};
  if (typeof memo.cron === 'string') return { cron: memo.cron };
  if (typeof memo.every === 'string') return { every: memo.every };
  const every = d.spec.intervals?.[0]?.every;
  return { every: formatDurationMs(Number(every ?? 1000)) };
}

@Injectable()
export class SchedulesService {
  constructor(
    @Inject(Client) private readonly client: Client,
    @Inject(Storage) private readonly storage: Storage,
    @Inject(ApiSettings) private readonly settings: ApiSettings,
  ) {}

  private handle(id: string) {
    return this.client.schedule.getHandle(scheduleIdOf(this.settings.temporal.deployment, id));
  }

  private async described(id: string): Promise<ScheduleDescription> {
    try {
      return await this.handle(id).describe();
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) throw new ApiError(404, 'path.id', `no schedule ${id}`);
      throw err;
    }
  }

  async create(body: CreateScheduleBody): Promise<ScheduleView> {
    assertScheduleInterval(body, this.settings.config.limits.minScheduleIntervalMs);
    const config = resolveRequestConfig(body, this.settings.config.runResources);
    await assertStorageWritable(this.storage, body.id);
    const temporal = this.settings.temporal;
    const { runId: _runId, configHash: _hash, ...pipeline } = pipelineInput('scheduled', config, await identifyStore(this.storage), temporal);
    const line = body.modelLine ?? body.startFrom?.modelLine;
    const input: ModelLineRunInput = {
      pipeline,
      runIdPrefix: body.id,
      line,
      from: body.startFrom ? { line: body.startFrom.modelLine, stage: body.startFrom.stage } : undefined,
      freshData: body.freshData,
      // Each firing checks these before it starts training (workflows/model-line.ts): they travel in the schedule's
      // action, so a firing reads the limits deterministically; changed limits apply to schedules created after.
      limits: { maxRunningRuns: this.settings.config.limits.maxRunningRuns, maxRunningRunsPerLine: this.settings.config.limits.maxRunningRunsPerLine },
    };
    try {
      await this.client.schedule.create({
        scheduleId: scheduleIdOf(temporal.deployment, body.id),
        spec: body.cron ? { cronExpressions: [body.cron.trim()] } : { intervals: [{ every: parseDurationMs(body.every!)! }] },
        action: { type: 'startWorkflow', workflowType: 'modelLineRun', workflowId: launcherWorkflowId(temporal.deployment, body.id), taskQueue: temporal.taskQueues.cpu, args: [input], ...(line ? { memo: { modelLine: line } } : {}) },
        policies: { overlap: toOverlap(body.overlap), catchupWindow: parseDurationMs(body.catchupWindow)! },
        state: { paused: body.paused, ...(body.note ? { note: body.note } : {}) },
        // Temporal describes cron specs back as calendars: keep what the user wrote, to show it as written.
        memo: { config: config.name ?? 'custom', ...(body.cron ? { cron: body.cron.trim() } : { every: body.every }), ...(line ? { modelLine: line } : {}), ...(body.startFrom ? { startFrom: body.startFrom } : {}) },
      });
    } catch (err) {
      if (err instanceof ScheduleAlreadyRunning) throw new ApiError(409, 'body.id', `schedule ${body.id} already exists (delete it first, or pick another id)`);
      // The server validates cron expressions more strictly than our pattern: report it on the field.
      // (the client rethrows the server's INVALID_ARGUMENT as a TypeError with the reason).
      if (err instanceof TypeError || (err as { code?: number }).code === 3) throw new ApiError(400, body.cron ? 'body.cron' : 'body.every', `the server rejected the schedule: ${(err as Error).message}`);
      throw err;
    }
    return this.get(body.id);
  }

  async list(): Promise<z.infer<typeof ScheduleList>> {
    const schedules: z.infer<typeof ScheduleList>['schedules'] = [];
    for await (const s of this.client.schedule.list()) {
      const id = scheduleNameOf(this.settings.temporal.deployment, s.scheduleId);
      if (id === undefined) continue; // another deployment's (or not Sophia's)
      schedules.push({
        id,
        paused: s.state.paused,
        note: s.state.note ?? null,
        nextRunTimes: s.info.nextActionTimes.map((t) => t.toISOString()),
        recentRuns: s.info.recentActions.map((a) => scheduledRunId(id, 'workflow' in a.action ? a.action.workflow.workflowId : '', a.takenAt)),
      });
    }
    return { schedules };
  }

  async get(id: string): Promise<ScheduleView> {
    const d = await this.described(id);
    const memo = (d.memo ?? {});
    const runOf = (workflowId: string, at: Date) => scheduledRunId(id, workflowId, at);
    const skipped = await Promise.all(d.info.recentActions.map((a) => ('workflow' in a.action ? this.skipReason(a.action.workflow) : Promise.resolve(null))));
    return {
      id,
      paused: d.state.paused,
      note: d.state.note ?? null,
      cron: typeof memo.cron === 'string' ? [memo.cron] : [],
      every: typeof memo.every === 'string' ? [memo.every] : (d.spec.intervals ?? []).map((i) => formatDurationMs(Number(i.every))),
      overlap: (d.policies.overlap ?? 'SKIP').toLowerCase(),
      catchupWindow: formatDurationMs(d.policies.catchupWindow),
      modelLine: typeof memo.modelLine === 'string' ? memo.modelLine : null,
      startFrom: (memo.startFrom as ScheduleView['startFrom'] | undefined) ?? null,
      configName: typeof memo.config === 'string' ? memo.config : null,
      nextRunTimes: d.info.nextActionTimes.map((t) => t.toISOString()),
      recentRuns: d.info.recentActions.map((a, i) => ({
        runId: runOf('workflow' in a.action ? a.action.workflow.workflowId : '', a.takenAt),
        scheduledAt: a.scheduledAt.toISOString(),
        startedAt: a.takenAt.toISOString(),
        skipped: skipped[i] ?? null,
      })),
      runningRuns: d.info.runningActions.map((a) => runOf(a.workflow.workflowId, new Date(0))),
    };
  }

  /** Why a firing started no run (over the running-run limits: its launcher's `skipped` memo), or null. */
  private async skipReason(launcher: { workflowId: string; firstExecutionRunId: string }): Promise<string | null> {
    const d = await this.client.workflow.getHandle(launcher.workflowId, launcher.firstExecutionRunId).describe().catch(() => undefined);
    return typeof d?.memo?.skipped === 'string' ? d.memo.skipped : null;
  }

  async act(id: string, action: z.infer<typeof ScheduleAction>, body: z.infer<typeof ScheduleActionBody>): Promise<{ id: string; action: typeof action; message: string }> {
    const d = await this.described(id);
    const handle = this.handle(id);
    const { limits } = this.settings.config;
    if (action === 'trigger' || action === 'backfill') {
      const line = typeof d.memo?.modelLine === 'string' ? d.memo.modelLine : undefined;
      await assertRoomForRun(this.client, this.settings.temporal, limits, { line, field: 'path.id' });
      await assertStorageWritable(this.storage, id);
    }
    switch (action) {
      case 'pause':
        await handle.pause(body.note ?? 'paused through the API');
        return { id, action, message: 'paused: no new runs start until unpause (running ones continue)' };
      case 'unpause':
        await handle.unpause(body.note ?? 'unpaused through the API');
        return { id, action, message: 'unpaused' };
      case 'trigger':
        await handle.trigger(body.overlap ? toOverlap(body.overlap) : undefined);
        return { id, action, message: 'a run was requested now; it shows up in recentRuns and GET /runs within seconds' };
      case 'backfill': {
        if (!body.start || !body.end) throw new ApiError(400, body.start ? 'body.end' : 'body.start', 'backfill needs start and end (ISO 8601 times)');
        const start = new Date(body.start);
        const end = new Date(body.end);
        if (!(start < end)) throw new ApiError(400, 'body.end', 'end must be after start');
        assertBackfillSize(specOf(d), start, end, limits.maxBackfillRuns);
        await handle.backfill({ start, end, ...(body.overlap ? { overlap: toOverlap(body.overlap) } : {}) });
        return { id, action, message: `runs due between ${start.toISOString()} and ${end.toISOString()} were requested` };
      }
    }
  }

  async delete(id: string): Promise<void> {
    await this.described(id);
    await this.handle(id).delete();
  }
}
