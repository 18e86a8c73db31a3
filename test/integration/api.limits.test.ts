/**
 * The deployment's limits on what requests can start (issue 20), against the real stack through the API:
 *  1. a run config may not name a judge's endpoint or key variable (400 on the field);
 *  2. schedules firing more often than SOPHIA_API_MIN_SCHEDULE_INTERVAL, by `every` or by cron, are 422s; so is a
 *     backfill whose window holds more runs than SOPHIA_API_MAX_BACKFILL_RUNS;
 *  3. with SOPHIA_API_MAX_RUNNING_RUNS=2 and SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE=1: a second run of a line, a
 *     third run, and a schedule trigger are 409s that say which limit; runs are long (ci with 400 SFT steps) and
 *     cancelled at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './api-harness';

const LONG = { preset: 'ci', overrides: { sft: { steps: 400, chunkSteps: 50 } } };

describe('API limits', () => {
  let h: ApiHarness;
  const started: string[] = [];

  beforeAll(async () => {
    h = await startApiHarness({
      workers: true,
      storage: 'local',
      env: { SOPHIA_API_MAX_RUNNING_RUNS: '2', SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE: '1', SOPHIA_API_MAX_BACKFILL_RUNS: '5' },
    });
  }, 120_000);

  afterAll(async () => {
    if (!h) return;
    for (const runId of started) await h.call('POST', `/runs/${runId}/cancel`).catch(() => undefined);
    for await (const wf of h.client.workflow.list({ query: `ExecutionStatus = 'Running'` })) {
      await h.client.workflow.getHandle(wf.workflowId, wf.runId).terminate('limits test finished').catch(() => undefined);
    }
    await h.close();
  }, 120_000);

  it('refuses a run config that names a judge endpoint or key variable, naming the field', async () => {
    const res = await h.call('POST', '/runs', {
      preset: 'tiny',
      overrides: { rewardModel: { annotator: { kind: 'openai', baseUrl: 'http://127.0.0.1:9/v1', model: 'm', apiKeyEnv: 'SOPHIA_S3_SECRET_ACCESS_KEY' } } },
    });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ field: 'body.overrides.rewardModel.annotator.kind' });
    const fields = (res.json as { issues: { field: string; message: string }[] }).issues.map((i) => i.field);
    expect(fields).toEqual(expect.arrayContaining(['body.overrides.rewardModel.annotator.baseUrl', 'body.overrides.rewardModel.annotator.apiKeyEnv']));
    expect((res.json as { message: string }).message).toMatch(/configure the judge on the workers \(SOPHIA_JUDGES/);
  });

  it('refuses schedules that fire more often than the minimum interval, and oversized backfills (422)', async () => {
    const every = await h.call('POST', '/schedules', { id: `fast-${h.suffix}`, every: '1s', overlap: 'allow_all', preset: 'ci' });
    expect(every.status).toBe(422);
    expect(every.json).toMatchObject({ statusCode: 422, field: 'body.every', message: expect.stringMatching(/SOPHIA_API_MIN_SCHEDULE_INTERVAL/) as unknown });
    const cron = await h.call('POST', '/schedules', { id: `fast-${h.suffix}`, cron: '*/5 * * * *', preset: 'ci' });
    expect(cron.status).toBe(422);
    expect(cron.json).toMatchObject({ field: 'body.cron', message: expect.stringMatching(/fires as often as every 5m/) as unknown });
    expect((await h.call('GET', `/schedules/fast-${h.suffix}`)).status).toBe(404);

    const id = `nightly-${h.suffix}`;
    expect((await h.call('POST', '/schedules', { id, cron: '0 3 * * *', preset: 'ci', paused: true })).status).toBe(201);
    const backfill = await h.call('POST', `/schedules/${id}/backfill`, { start: '2026-01-01T00:00:00Z', end: '2026-02-01T00:00:00Z', overlap: 'allow_all' });
    expect(backfill.status).toBe(422);
    expect(backfill.json).toMatchObject({ field: 'body.end', message: expect.stringMatching(/more than 5 runs.*SOPHIA_API_MAX_BACKFILL_RUNS/) as unknown });
    expect(((await h.call('GET', `/schedules/${id}`)).json as { recentRuns: unknown[] }).recentRuns).toEqual([]);
    expect((await h.call('DELETE', `/schedules/${id}`)).status).toBe(204);
  });

  it('refuses runs beyond the running limits per model line and per deployment (409), for POST /runs and schedule triggers', async () => {
    const line = `line-${h.suffix}`;
    const first = await h.call('POST', '/runs', { ...LONG, runId: `lim-a-${h.suffix}`, modelLine: line });
    expect(first.status).toBe(201);
    started.push(`lim-a-${h.suffix}`);
    // Posting the running run's id again attaches to it: no new run, so no limit applies.
    expect((await h.call('POST', '/runs', { ...LONG, runId: `lim-a-${h.suffix}`, modelLine: line })).status).toBe(201);

    const sameLine = await h.call('POST', '/runs', { ...LONG, runId: `lim-b-${h.suffix}`, modelLine: line });
    expect(sameLine.status).toBe(409);
    expect(sameLine.json).toMatchObject({ field: 'body.modelLine', message: expect.stringMatching(new RegExp(`1 runs of model line ${line} are running.*SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE=1`)) as unknown });

    expect((await h.call('POST', '/runs', { ...LONG, runId: `lim-c-${h.suffix}` })).status).toBe(201);
    started.push(`lim-c-${h.suffix}`);
    const third = await h.call('POST', '/runs', { ...LONG, runId: `lim-d-${h.suffix}` });
    expect(third.status).toBe(409);
    expect(third.json).toMatchObject({ statusCode: 409, field: 'body', message: expect.stringMatching(/2 runs are running.*SOPHIA_API_MAX_RUNNING_RUNS=2/) as unknown });
    expect((await h.call('GET', `/runs/lim-d-${h.suffix}`)).status).toBe(404);

    const id = `retrain-${h.suffix}`;
    expect((await h.call('POST', '/schedules', { id, cron: '0 3 * * *', preset: 'ci', startFrom: { modelLine: line, stage: 'sftWarmup' }, paused: true })).status).toBe(201);
    const trigger = await h.call('POST', `/schedules/${id}/trigger`);
    expect(trigger.status).toBe(409);
    expect(trigger.json).toMatchObject({ field: 'path.id', message: expect.stringMatching(/SOPHIA_API_MAX_RUNNING_RUNS=2/) as unknown });
    expect((await h.call('DELETE', `/schedules/${id}`)).status).toBe(204);

    for (const runId of started) expect((await h.call('POST', `/runs/${runId}/cancel`)).status).toBe(202);
  }, 180_000);
});
