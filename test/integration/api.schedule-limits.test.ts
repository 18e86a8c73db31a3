/**
 * Scheduled runs count against the deployment's running-run limits (issue 20 item 3): with
 * SOPHIA_API_MAX_RUNNING_RUNS=1, the runs a schedule fires on its own (every 2 s with `allow_all`) and those a
 * backfill fires all at once never make more than 1 pipeline run at a time; the firings over the limit start no
 * training and say why (`recentRuns[].skipped` of GET /schedules/:id, the launcher's result).
 *
 * Real stack: the harness's private Temporal dev server and the API; a CPU worker only (it runs the launchers and
 * the pipelines' workflows): with no GPU worker, a started pipeline stays running (its SFT chunk waits for one), so
 * "running" lasts as long as the test needs. Running pipelines are counted through visibility, every 100 ms.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { type NativeConnection } from '@temporalio/worker';
import { connectWorker } from '../../clients/temporal';
import { launcherWorkflowId } from '../../common/run-layout';
import { WorkerSet } from '../../workers/worker';
import { type ApiHarness, startApiHarness } from './api-harness';

const RUNNING = `WorkflowType = 'trainingPipeline' AND ExecutionStatus = 'Running'`;

async function count(client: Client, query: string): Promise<number> {
  let n = 0;
  for await (const _ of client.workflow.list({ query })) n++;
  return n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts running pipelines every 100 ms until `done` says stop (or more than 1 run); returns the most seen at once. */
async function watchRunning(client: Client, done: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  let most = 0;
  const deadline = Date.now() + timeoutMs;
  while (most <= 1 && !(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms (most pipelines running at once: ${most})`);
    most = Math.max(most, await count(client, RUNNING));
    await sleep(100);
  }
  return Math.max(most, await count(client, RUNNING));
}

interface RecentRun {
  runId: string;
  skipped: string | null;
}

describe('scheduled runs and the running-run limit', () => {
  let h: ApiHarness;
  let connection: NativeConnection;
  let workers: WorkerSet;
  let running: Promise<void>;

  beforeAll(async () => {
    h = await startApiHarness({ workers: false, storage: 'local', env: { SOPHIA_API_MIN_SCHEDULE_INTERVAL: '2s', SOPHIA_API_MAX_RUNNING_RUNS: '1' } });
    connection = await connectWorker(h.temporal);
    workers = await WorkerSet.create({ kinds: ['cpu'], connection, config: h.temporal, storage: h.storage });
    running = workers.run();
  }, 180_000);

  afterAll(async () => {
    if (!h) return;
    for await (const wf of h.client.workflow.list({ query: `ExecutionStatus = 'Running'` })) {
      await h.client.workflow.getHandle(wf.workflowId, wf.runId).terminate('schedule limits test finished').catch(() => undefined);
    }
    workers?.shutdown();
    await running;
    await connection?.close();
    await h.close();
  }, 120_000);

  /** The launchers (`modelLineRun`) schedule `id` started. */
  const launchersOf = (id: string) => `WorkflowType = 'modelLineRun' AND WorkflowId STARTS_WITH '${launcherWorkflowId(h.temporal.deployment, id)}'`;

  /** Terminates every running pipeline (and its launcher), and waits until visibility shows none. */
  async function endRunning(): Promise<void> {
    for await (const wf of h.client.workflow.list({ query: `ExecutionStatus = 'Running'` })) {
      await h.client.workflow.getHandle(wf.workflowId, wf.runId).terminate('next case').catch(() => undefined);
    }
    while ((await count(h.client, `ExecutionStatus = 'Running'`)) > 0) await sleep(100);
  }

  it('a schedule firing every 2 s with allow_all runs one pipeline at a time; the other firings are skipped, saying why', async () => {
    const id = `every-${h.suffix}`;
    const created = await h.call('POST', '/schedules', { id, every: '2s', overlap: 'allow_all', preset: 'ci' });
    expect(created.status, created.text).toBe(201);
    const launchers = launchersOf(id);
    const fired = () => count(h.client, `${launchers} AND ExecutionStatus != 'Running'`).then((n) => n >= 5);
    const most = await watchRunning(h.client, fired, 60_000);
    expect((await h.call('POST', `/schedules/${id}/pause`)).status).toBe(202);
    expect(most).toBe(1);
    // Firings in flight when it paused finish deciding.
    while ((await count(h.client, `${launchers} AND ExecutionStatus = 'Running'`)) > 1) await sleep(100);

    expect(await count(h.client, `WorkflowType = 'trainingPipeline'`)).toBe(1);
    const view = (await h.call('GET', `/schedules/${id}`)).json as { recentRuns: RecentRun[] };
    const skipped = view.recentRuns.filter((r) => r.skipped !== null);
    expect(view.recentRuns.length).toBeGreaterThanOrEqual(6);
    expect(skipped.length).toBe(view.recentRuns.length - 1);
    for (const r of skipped) expect(r.skipped).toMatch(/1 runs are running, the most this deployment allows at once \(SOPHIA_API_MAX_RUNNING_RUNS=1\)/);
    const started = view.recentRuns.find((r) => r.skipped === null)!;
    expect((await h.call('GET', `/runs/${started.runId}`)).status).toBe(200);
    expect((await h.call('GET', `/runs/${skipped[0]!.runId}`)).status).toBe(404);
    expect((await h.call('DELETE', `/schedules/${id}`)).status).toBe(204);
    await endRunning();
  }, 180_000);

  it('a backfill with allow_all, whose firings all start at once, starts one pipeline and skips the rest', async () => {
    await endRunning();
    const id = `backfill-${h.suffix}`;
    expect((await h.call('POST', '/schedules', { id, cron: '0 3 * * *', overlap: 'allow_all', preset: 'ci', paused: true })).status).toBe(201);
    const backfill = await h.call('POST', `/schedules/${id}/backfill`, { start: '2026-01-01T00:00:00Z', end: '2026-01-05T12:00:00Z', overlap: 'allow_all' });
    expect(backfill.status, backfill.text).toBe(202);
    // Decided: each of the 5 firings skipped (its launcher closed) or started its pipeline.
    const decided = async () => (await count(h.client, `${launchersOf(id)} AND ExecutionStatus != 'Running'`)) + (await count(h.client, RUNNING)) >= 5;
    const most = await watchRunning(h.client, decided, 60_000);
    expect(most).toBe(1);
    expect(await count(h.client, `WorkflowType = 'trainingPipeline' AND ExecutionStatus = 'Running'`)).toBe(1);
    const view = (await h.call('GET', `/schedules/${id}`)).json as { recentRuns: RecentRun[] };
    expect(view.recentRuns).toHaveLength(5);
    expect(view.recentRuns.filter((r) => r.skipped !== null)).toHaveLength(4);
    expect((await h.call('DELETE', `/schedules/${id}`)).status).toBe(204);
    await endRunning();
  }, 180_000);
});
