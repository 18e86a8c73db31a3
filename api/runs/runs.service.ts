/**
 * What the runs routes do, over the Temporal client and the storage: start runs, list and describe them (with
 * the pipeline's progress query), control them by signal, and read what they stored (metrics.jsonl,
 * checkpoints, the report).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import type { z } from 'zod';
import { planResume, startResume } from '../../clients/resume';
import { controlRun, pipelineInput, runProgress, runningConfigDifference, startRun } from '../../clients/runs';
import { defaultRunId, deploymentPipelinesQuery, modelLineWorkflowId, pipelineWorkflowId, runIdOfWorkflowId } from '../../common/run-layout';
import { CheckpointNotFoundError, CorruptCheckpointError, NotFoundError } from '../../common/errors';
import { CheckpointStore } from '../../storage/checkpoints';
import { type MetricRecord, readMetrics } from '../../storage/metrics-log';
import { getJson } from '../../storage/json';
import { identifyStore } from '../../storage/store-id';
import { Storage } from '../../storage/types';
import type { ModelLineRunInput } from '../../workflows/model-line';
import { resolveRequestConfig } from '../common/dto';
import { ApiError } from '../common/errors';
import { ApiSettings } from '../common/settings';
import { withTimeout } from '../common/timeout';
import { assertRoomForRun } from './run-limits';
import { assertStorageWritable } from './storage-check';
import type { RunCreated, CheckpointList, ControlAction, CreateRunBody, ListRunsQuery, MetricsQuery, ReportResponse, RunDetail, RunSummary } from './runs.dto';

type Status = RunSummary['status'];

/** Temporal's WorkflowExecutionStatus enum (numbers in raw responses, names in the SDK) → ours. */
const STATUS_BY_NUMBER: Record<number, Status> = { 1: 'running', 2: 'completed', 3: 'failed', 4: 'canceled', 5: 'terminated', 6: 'continued_as_new', 7: 'timed_out' };
const STATUS_QUERY: Record<Status, string> = {
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  canceled: 'Canceled',
  terminated: 'Terminated',
  timed_out: 'TimedOut',
  continued_as_new: 'ContinuedAsNew',
};
const statusOf = (name: string): Status => name.toLowerCase() as Status;

const CONTENT_TYPES: Record<string, string> = { png: 'image/png', svg: 'image/svg+xml', json: 'application/json', md: 'text/markdown; charset=utf-8' };

/** Keeps at most `maxPoints` records per (stage, kind) series, evenly spaced, first and last always kept. */
export function downsample(records: readonly MetricRecord[], maxPoints: number): MetricRecord[] {
  const series = new Map<string, MetricRecord[]>();
  for (const r of records) {
    const key = `${r.stage}/${r.kind}`;
    const list = series.get(key) ?? [];
    list.push(r);
    series.set(key, list);
  }
  const keep = new Set<MetricRecord>();
  for (const list of series.values()) {
    if (list.length <= maxPoints) {
      list.forEach((r) => keep.add(r));
      continue;
    }
    for (let i = 0; i < maxPoints; i++) keep.add(list[Math.round((i * (list.length - 1)) / (maxPoints - 1))]!);
  }
  return records.filter((r) => keep.has(r));
}

const PROGRESS_TIMEOUT_MS = 3000;

const memoString = (memo: Record<string, unknown> | undefined, key: string): string | null => (typeof memo?.[key] === 'string' ? (memo[key]) : null);

@Injectable()
export class RunsService {
  private readonly store: CheckpointStore;
  /** HMAC key for page tokens, from the API keys' digests (the same on every replica with the same keys). */
  private readonly tokenKey: Buffer;

  constructor(
    @Inject(Client) private readonly client: Client,
    @Inject(Storage) private readonly storage: Storage,
    @Inject(ApiSettings) private readonly settings: ApiSettings,
  ) {
    this.store = new CheckpointStore(storage);
    const h = createHash('sha256').update('sophia-page-token');
    for (const k of settings.config.keys) h.update(k.digest);
    this.tokenKey = h.digest();
  }

  async create(body: CreateRunBody): Promise<z.infer<typeof RunCreated>> {
    const config = resolveRequestConfig(body, this.settings.config.runResources);
    const runId = body.runId ?? defaultRunId(new Date());
    // The storage must take a write before anything starts: a missing bucket or an unwritable folder is a 503 here.
    await assertStorageWritable(this.storage, runId);
    const temporal = this.settings.temporal;
    const input = pipelineInput(runId, config, await identifyStore(this.storage), temporal);
    // Posting a running run's id attaches to it only with the config it runs: another would be silently ignored.
    const differs = await runningConfigDifference(this.client, runId, config, temporal);
    if (differs) {
      throw new ApiError(409, 'body.runId', `run ${runId} is running with another config (${differs.join(', ')} differ): post its own config to attach, or choose another runId`);
    }
    // A new run must fit the deployment's limits; posting the id of an existing run starts nothing.
    if (!(await this.describe(runId).catch(() => undefined))) await assertRoomForRun(this.client, temporal, this.settings.config.limits, { line: body.modelLine, field: body.modelLine ? 'body.modelLine' : 'body' });
    let state: 'started' | 'attached' | 'finished';
    if (body.modelLine) {
      state = await this.startLineRun(input, body.modelLine);
    } else {
      state = (await startRun(this.client, temporal, input)).state;
    }
    return { runId, workflowId: pipelineWorkflowId(temporal.deployment, runId), state, links: { self: `/runs/${runId}`, events: `/runs/${runId}/events` } };
  }

  /** Starts the run through `modelLineRun` (which records it in the line) and waits until the pipeline exists. */
  private async startLineRun(input: ReturnType<typeof pipelineInput>, line: string): Promise<'started' | 'attached' | 'finished'> {
    const existing = await this.describe(input.runId).catch(() => undefined);
    if (existing) return existing.status === 'running' ? 'attached' : 'finished';
    const { configHash: _hash, ...pipeline } = input;
    const launcher: ModelLineRunInput = { pipeline, runIdPrefix: input.runId, line, from: undefined, freshData: false };
    await this.client.workflow.start('modelLineRun', {
      taskQueue: this.settings.temporal.taskQueues.cpu,
      workflowId: modelLineWorkflowId(this.settings.temporal.deployment, input.runId),
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [launcher],
      // Counted in its line until its pipeline runs (activities/run-room.ts).
      memo: { modelLine: line },
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (await this.describe(input.runId).catch(() => undefined)) return 'started';
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new ApiError(503, 'body.modelLine', 'the run was submitted but has not started within 30 s: is a CPU worker polling?');
  }

  async list(query: z.infer<typeof ListRunsQuery>): Promise<{ runs: RunSummary[]; nextPageToken: string | null }> {
    const filter = deploymentPipelinesQuery(this.settings.temporal.deployment, query.status ? `ExecutionStatus = '${STATUS_QUERY[query.status]}'` : undefined);
    const nextPageToken = query.pageToken !== undefined ? this.openToken(query.pageToken) : undefined;
    const response = await this.client.workflowService.listWorkflowExecutions({
      namespace: this.settings.temporal.connection.namespace,
      pageSize: query.pageSize,
      query: filter,
      ...(nextPageToken ? { nextPageToken } : {}),
    });
    const runs = (response.executions ?? []).map((e): RunSummary => {
      const workflowId = e.execution?.workflowId ?? '';
      const memo: Record<string, unknown> = {};
      for (const [k, p] of Object.entries(e.memo?.fields ?? {})) memo[k] = defaultPayloadConverter.fromPayload(p);
      const start = optionalTsToMs(e.startTime);
      const close = optionalTsToMs(e.closeTime);
      return {
        runId: runIdOfWorkflowId(this.settings.temporal.deployment, workflowId) ?? workflowId,
        workflowId,
        status: STATUS_BY_NUMBER[e.status ?? 0] ?? 'running',
        startTime: start !== undefined ? new Date(start).toISOString() : null,
        closeTime: close !== undefined ? new Date(close).toISOString() : null,
        name: memoString(memo, 'config'),
      };
    });
    const token = response.nextPageToken && response.nextPageToken.length > 0 ? this.sealToken(Buffer.from(response.nextPageToken)) : null;
    return { runs, nextPageToken: token };
  }

  /** Page tokens are Temporal's behind an HMAC: a token the API did not hand out is a 400, never a server error. */
  private sealToken(raw: Buffer): string {
    const mac = createHmac('sha256', this.tokenKey).update(raw).digest().subarray(0, 16);
    return Buffer.concat([mac, raw]).toString('base64url');
  }

  private openToken(token: string): Buffer {
    const bytes = Buffer.from(token, 'base64url');
    const raw = bytes.subarray(16);
    const mac = createHmac('sha256', this.tokenKey).update(raw).digest().subarray(0, 16);
    if (bytes.length <= 16 || !timingSafeEqual(mac, bytes.subarray(0, 16))) throw new ApiError(400, 'query.pageToken', 'pageToken is not a nextPageToken this API returned (start again without it)');
    return raw;
  }

  async describe(runId: string): Promise<RunSummary> {
    const handle = this.client.workflow.getHandle(pipelineWorkflowId(this.settings.temporal.deployment, runId));
    const d = await handle.describe().catch((err: unknown) => {
      if (err instanceof WorkflowNotFoundError) throw new ApiError(404, 'path.id', `no run ${runId}`);
      throw err;
    });
    const memo = d.memo;
    return {
      runId,
      workflowId: d.workflowId,
      status: statusOf(d.status.name),
      startTime: d.startTime.toISOString(),
      closeTime: d.closeTime ? d.closeTime.toISOString() : null,
      name: memoString(memo, 'config'),
    };
  }

  async detail(runId: string): Promise<z.infer<typeof RunDetail>> {
    const summary = await this.describe(runId);
    try {
      // A query waits for a worker to answer; don't let a run without workers hang the request. The gRPC deadline
      // (a little later, so that the message below wins) ends the query itself too: left open, it would outlive the
      // request and throw an uncaught "Channel has been shut down" when the connection closes.
      const progress = await withTimeout(
        this.client.withDeadline(Date.now() + PROGRESS_TIMEOUT_MS + 1000, () => runProgress(this.client, runId, this.settings.temporal)),
        PROGRESS_TIMEOUT_MS,
        `no worker answered the progress query within ${PROGRESS_TIMEOUT_MS / 1000} s: are CPU workers polling?`,
      );
      return { ...summary, progress: progress as unknown as Record<string, unknown>, progressError: null };
    } catch (err) {
      return { ...summary, progress: null, progressError: err instanceof Error ? err.message : String(err) };
    }
  }

  async metrics(runId: string, query: z.infer<typeof MetricsQuery>): Promise<{ runId: string; total: number; records: MetricRecord[] }> {
    await this.describe(runId);
    const all = (await readMetrics(this.storage, runId)).filter((r) => (!query.stage || r.stage === query.stage) && (!query.kind || r.kind === query.kind));
    return { runId, total: all.length, records: query.maxPoints ? downsample(all, query.maxPoints) : all };
  }

  /** All metric records (for the events stream; no existence check). */
  readMetrics(runId: string): Promise<MetricRecord[]> {
    return readMetrics(this.storage, runId);
  }

  async control(runId: string, action: z.infer<typeof ControlAction>): Promise<{ runId: string; action: typeof action; message: string }> {
    const summary = await this.describe(runId);
    if (action === 'resume' && summary.status !== 'running' && summary.status !== 'completed') return { runId, action, message: await this.resumeFailed(runId) };
    if (summary.status !== 'running') throw new ApiError(409, 'path.id', `run ${runId} is ${summary.status}: only a running run can be paused, stopped or cancelled, and only a running or failed one resumed`);
    const message = await controlRun(this.client, this.settings.temporal, runId, action);
    return { runId, action, message };
  }

  /**
   * A failed (cancelled, terminated) run continues as a new execution of the same id from its last good checkpoint,
   * keeping the stages it completed (`clients/resume.ts`); it counts as a new running run against the limits.
   */
  private async resumeFailed(runId: string): Promise<string> {
    const plan = await planResume(this.client, this.settings.temporal, runId);
    if (plan.input.storage !== this.storage.location) {
      throw new ApiError(409, 'path.id', `run ${runId} keeps its checkpoints in ${plan.input.storage}, this API serves ${this.storage.location}: resume it where that storage is configured`);
    }
    await assertRoomForRun(this.client, this.settings.temporal, this.settings.config.limits, { line: undefined, field: 'path.id' });
    await startResume(this.client, this.settings.temporal, plan);
    return `resumed as a new execution: kept ${plan.kept.join(', ') || 'no stage'}; ${plan.restartsAt ?? 'nothing'} restarts from its newest intact checkpoint (after ${plan.failure.type}: ${plan.failure.message})`;
  }

  async checkpoints(runId: string): Promise<z.infer<typeof CheckpointList>> {
    await this.describe(runId);
    // One walk over the run's objects finds every committed checkpoint (its manifest); each is then read once.
    const prefix = `runs/${runId}/`;
    const dirs: { stage: string; step: number; dir: string }[] = [];
    for await (const info of this.storage.list(prefix)) {
      const m = /^([^/]+)\/checkpoints\/(\d{8})\/manifest\.json$/.exec(info.key.slice(prefix.length));
      if (m) dirs.push({ stage: m[1]!, step: Number(m[2]), dir: info.key.slice(0, -'/manifest.json'.length) });
    }
    dirs.sort((a, b) => a.stage.localeCompare(b.stage) || a.step - b.step);
    const checkpoints: z.infer<typeof CheckpointList>['checkpoints'] = [];
    for (const { stage, dir } of dirs) {
      const m = await this.store.manifest(dir).catch((err: unknown) => {
        if (err instanceof CorruptCheckpointError || err instanceof CheckpointNotFoundError) return undefined; // invalid, or deleted meanwhile
        throw err;
      });
      if (m) checkpoints.push({ stage, step: m.step, key: m.key, createdAt: m.createdAt, totalBytes: m.totalBytes, metrics: m.metrics });
    }
    return { runId, checkpoints };
  }

  async report(runId: string): Promise<z.infer<typeof ReportResponse>> {
    await this.describe(runId);
    const prefix = `runs/${runId}/reports/`;
    const files: z.infer<typeof ReportResponse>['files'] = [];
    for (const info of await this.storage.listAll(prefix)) {
      const name = info.key.slice(prefix.length);
      const ext = /\.([a-z]+)$/.exec(name)?.[1] ?? '';
      if (name.includes('/') || !CONTENT_TYPES[ext]) continue;
      files.push({ name, contentType: CONTENT_TYPES[ext], size: info.size, url: `/runs/${runId}/report/files/${name}` });
    }
    if (files.length === 0) throw new ApiError(404, 'path.id', `run ${runId} has no report yet (it is written when the evaluation stage ends)`);
    const markdown = files.some((f) => f.name === 'report.md') ? new TextDecoder().decode(await this.storage.get(`${prefix}report.md`)) : null;
    const report = files.some((f) => f.name === 'report.json') ? await getJson<Record<string, unknown>>(this.storage, `${prefix}report.json`) : null;
    return { runId, markdown, report, files };
  }

  async reportFile(runId: string, name: string): Promise<{ bytes: Uint8Array; contentType: string }> {
    await this.describe(runId);
    const ext = /\.([a-z]+)$/.exec(name)?.[1] ?? '';
    try {
      return { bytes: await this.storage.get(`runs/${runId}/reports/${name}`), contentType: CONTENT_TYPES[ext] ?? 'application/octet-stream' };
    } catch (err) {
      if (err instanceof NotFoundError) throw new ApiError(404, 'path.name', `run ${runId} has no report file ${name}`);
      throw err;
    }
  }
}
