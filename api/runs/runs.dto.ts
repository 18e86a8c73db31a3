/** Request and response schemas of the runs routes (validation and the OpenAPI document both come from these). */
import { z } from 'zod';
import { Name, RunConfigFields, RunId, exactlyOneConfig } from '../common/dto';

export const CreateRunBody = z
  .strictObject({
    runId: RunId.optional().describe('Default: run-YYYYMMDD-HHMMSS. Posting an id that is running attaches to it'),
    ...RunConfigFields,
    modelLine: Name('model line').optional().describe('Record the run as the latest of this model line when it completes'),
  })
  .refine(exactlyOneConfig.check, { ...exactlyOneConfig.params, path: ['preset'] });
export type CreateRunBody = z.infer<typeof CreateRunBody>;

export const RunCreated = z.object({
  runId: z.string(),
  workflowId: z.string(),
  state: z.enum(['started', 'attached', 'finished']).describe('started now, attached to the running run of that id, or finished earlier'),
  links: z.object({ self: z.string(), events: z.string() }),
});

const WORKFLOW_STATUSES = ['running', 'completed', 'failed', 'canceled', 'terminated', 'timed_out', 'continued_as_new'] as const;

export const ListRunsQuery = z.strictObject({
  status: z.enum(WORKFLOW_STATUSES).optional().describe('Only runs in this state'),
  pageSize: z.coerce.number().int().min(1).max(100).default(20),
  pageToken: z.string().max(4096).regex(/^[A-Za-z0-9_-]*$/, 'pageToken is the opaque nextPageToken of a previous page').optional(),
});

export const RunSummary = z.object({
  runId: z.string(),
  workflowId: z.string(),
  status: z.enum(WORKFLOW_STATUSES),
  startTime: z.string().nullable(),
  closeTime: z.string().nullable(),
  name: z.string().nullable().describe('The config name (preset) recorded when it started'),
});
export type RunSummary = z.infer<typeof RunSummary>;

export const RunList = z.object({ runs: z.array(RunSummary), nextPageToken: z.string().nullable() });

/** `LiveProgress.stalled` (clients/runs.ts): the running activity's heartbeat is overdue. */
export const Stalled = z
  .object({
    seconds: z.number().int().describe('Seconds since its last heartbeat (or since its attempt started, if it has sent none)'),
    worker: z.string().optional().describe('Identity of the worker running the attempt (e.g. gpu@host-4242-ab12), when the server knows it'),
    activity: z.string().describe('Activity type, e.g. runSftChunk'),
    attempt: z.number().int().describe('The attempt that went silent (1: the first)'),
    heartbeated: z.boolean().describe('false: the attempt has sent no heartbeat since it started (it was loading)'),
    retrying: z.boolean().describe('Its heartbeat timeout has passed: the next attempt is scheduled and waits for a worker'),
    message: z.string().describe('All of it in words: "no heartbeat for 34 s from worker gpu@host-4242-ab12 (runSftChunk, attempt 1)"'),
  })
  .describe('Present while the running activity\'s heartbeat is overdue (SOPHIA_HEARTBEAT_OVERDUE × its heartbeat timeout): its worker may be gone');

export const RunDetail = RunSummary.extend({
  progress: z
    .looseObject({ stalled: Stalled.optional() })
    .nullable()
    .describe('The pipeline progress query (stage, step, metrics, checkpoints) with the live heartbeat, and `stalled` when that heartbeat is overdue'),
  progressError: z.string().nullable().describe('Why progress is missing (e.g. no worker is polling)'),
});

export const MetricsQuery = z.strictObject({
  stage: z.string().max(64).regex(/^[A-Za-z0-9_-]+$/, 'stage is a metrics stage name such as sft, rm, grpo').optional(),
  kind: z.string().max(64).regex(/^[A-Za-z0-9_-]+$/, 'kind is a record kind such as step, validation, eval').optional(),
  maxPoints: z.coerce.number().int().min(2).max(100_000).optional().describe('Downsample each (stage, kind) series to at most this many records (first and last kept)'),
});

export const MetricsResponse = z.object({
  runId: z.string(),
  total: z.number().int().describe('Records before downsampling'),
  records: z.array(z.record(z.string(), z.union([z.string(), z.number()]))),
});

export const ControlAction = z.enum(['pause', 'resume', 'stop', 'cancel']);
export const ActionAccepted = z.object({ runId: z.string(), action: ControlAction, message: z.string() });

export const CheckpointList = z.object({
  runId: z.string(),
  checkpoints: z.array(
    z.object({ stage: z.string(), step: z.number().int(), key: z.string(), createdAt: z.string(), totalBytes: z.number().int(), metrics: z.record(z.string(), z.number()) }),
  ),
});

export const ReportResponse = z.object({
  runId: z.string(),
  markdown: z.string().nullable(),
  report: z.record(z.string(), z.unknown()).nullable().describe('report.json'),
  files: z.array(z.object({ name: z.string(), contentType: z.string(), size: z.number().int(), url: z.string() })),
});

export const ReportFileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(png|svg|json|md)$/, 'a report file is NAME.png, .svg, .json or .md');
