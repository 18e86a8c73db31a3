/** Request and response schemas of the schedules routes (retraining on a Temporal Schedule). */
import { z } from 'zod';
import { parseDurationMs } from '../../common/duration';
import { Name, RunConfigFields, exactlyOneConfig } from '../common/dto';

export const ScheduleId = Name('schedule id');

const Duration = (what: string, minMs: number) =>
  z
    .string()
    .max(32)
    .refine((t) => (parseDurationMs(t) ?? -1) >= minMs, `${what} is a duration such as 30s, 15m, 24h or 7d (at least ${minMs / 1000} s)`);

/** Overlap policies that make sense for runs (cancel/terminate-other would only reach the launcher, not the run). */
const OVERLAP = ['skip', 'buffer_one', 'buffer_all', 'allow_all'] as const;

export const CreateScheduleBody = z
  .strictObject({
    id: ScheduleId,
    cron: z
      .string()
      .max(128)
      .regex(/^\s*(@\w+|(\S+\s+){4}\S+(\s+\S+){0,2})\s*$/, 'cron is 5 fields (minute hour day-of-month month day-of-week), e.g. "0 3 * * *", or @daily')
      .optional()
      .describe('Cron expression (UTC), e.g. "0 3 * * *" for 03:00 every night'),
    every: Duration('every', 1000).optional().describe('Interval instead of cron, e.g. "24h"'),
    ...RunConfigFields,
    startFrom: z
      .strictObject({
        modelLine: Name('model line'),
        stage: z.enum(['sftWarmup', 'rewardModel', 'trustGrpo']).default('sftWarmup'),
      })
      .optional()
      .describe("Start each run from the latest checkpoint of this model line (from scratch while the line has none), at this stage"),
    modelLine: Name('model line').optional().describe('Record completed runs in this line (default: startFrom.modelLine)'),
    freshData: z.boolean().default(true).describe('Generate each run\'s data with its own seed'),
    overlap: z.enum(OVERLAP).default('skip').describe('What to do when a run is due while the previous one still trains'),
    catchupWindow: Duration('catchupWindow', 10_000).default('1m').describe('How late a missed run may still start (after an outage)'),
    paused: z.boolean().default(false),
    note: z.string().max(500).optional(),
  })
  .refine(exactlyOneConfig.check, { ...exactlyOneConfig.params, path: ['preset'] })
  .refine((b) => (b.cron === undefined) !== (b.every === undefined), { message: 'give exactly one of cron or every', path: ['cron'] });
export type CreateScheduleBody = z.infer<typeof CreateScheduleBody>;

export const ScheduleView = z.object({
  id: z.string(),
  paused: z.boolean(),
  note: z.string().nullable(),
  cron: z.array(z.string()),
  every: z.array(z.string()),
  overlap: z.string(),
  catchupWindow: z.string(),
  modelLine: z.string().nullable(),
  startFrom: z.object({ modelLine: z.string(), stage: z.string() }).nullable(),
  configName: z.string().nullable(),
  nextRunTimes: z.array(z.string()),
  recentRuns: z.array(
    z.object({
      runId: z.string(),
      scheduledAt: z.string(),
      startedAt: z.string(),
      skipped: z.string().nullable().describe('Why this firing started no run (the running-run limits), else null'),
    }),
  ),
  runningRuns: z.array(z.string()),
});
export type ScheduleView = z.infer<typeof ScheduleView>;

export const ScheduleList = z.object({
  schedules: z.array(z.object({ id: z.string(), paused: z.boolean(), note: z.string().nullable(), nextRunTimes: z.array(z.string()), recentRuns: z.array(z.string()) })),
});

export const ScheduleAction = z.enum(['pause', 'unpause', 'trigger', 'backfill']);

export const ScheduleActionBody = z
  .strictObject({
    note: z.string().max(500).optional().describe('pause/unpause: why'),
    start: z.iso.datetime({ offset: true }).optional().describe('backfill: from (ISO 8601)'),
    end: z.iso.datetime({ offset: true }).optional().describe('backfill: to (ISO 8601)'),
    overlap: z.enum(OVERLAP).optional().describe('trigger/backfill: overlap policy for these runs (default: the schedule\'s; allow_all for trigger)'),
  })
  .default({});

export const ScheduleActionResult = z.object({ id: z.string(), action: ScheduleAction, message: z.string() });
