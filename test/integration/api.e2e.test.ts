/**
 * The API end to end on the real stack (Temporal dev server, S3 server, in-process workers):
 *  1. auth: no key / unknown key → 401, read-only key on a write route → 403, with JSON errors;
 *  2. a `ci` run started over HTTP (in a model line) and followed over Server-Sent Events to completion, paused
 *     and resumed while the stream is open (the stream shows the pause): metrics of every training stage
 *     arrive, then `end`; metrics, checkpoints and the report are readable; the line records the run as its latest;
 *  3. control over HTTP: pause (the run waits), resume, stop (it evaluates and finishes early); stop during
 *     Trust-GRPO (the policy is committed at its step, evaluated, and the run completes); a cancelled run resumed
 *     (a new execution: completed stages kept, SFT from its last checkpoint, the run completes);
 *  4. a retraining schedule: create, trigger → the scheduled run starts from the line's latest checkpoint;
 *     delete → 404.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson } from '../../storage/json';
import type { ModelLineRecord } from '../../storage/model-lines';
import type { PipelineInput } from '../../workflows/types';
import { type ApiHarness, startApiHarness } from './api-harness';
import { waitFor } from './stack';

interface SseEvent {
  event: string;
  id: string | undefined;
  data: unknown;
}

/** Reads a text/event-stream response until `end` (or the timeout), returning every event; `seen` gets them as they come. */
async function followEvents(url: string, key: string, timeoutMs: number, seen: SseEvent[] = []): Promise<SseEvent[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const res = await fetch(url, { headers: { authorization: `Bearer ${key}` }, signal: abort.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: SseEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const lines = block.split('\n').filter((l) => !l.startsWith(':'));
        if (lines.length === 0) continue;
        const field = (name: string) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
        const event: SseEvent = { event: field('event') ?? 'message', id: field('id'), data: JSON.parse(field('data') ?? 'null') as unknown };
        events.push(event);
        seen.push(event);
      }
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}

type Progress = { status: string; error?: string; stages: string[]; stageIndex: number; current?: { stage: string; step: number }; results: Record<string, Record<string, number>>; checkpoints: Record<string, string> };
type Detail = { status: string; progress: Progress | null; progressError: string | null };

describe('the API on the real stack', () => {
  let h: ApiHarness;
  const line = () => `prod-${h.suffix}`;
  let lineRunId: string;

  beforeAll(async () => {
    h = await startApiHarness({ workers: true, storage: 's3' });
  });

  afterAll(async () => {
    await h?.close();
  });

  it('refuses requests without a valid key, and write routes to a read-only key', async () => {
    const none = await h.call('GET', '/runs', undefined, null);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.json).toMatchObject({ statusCode: 401, field: 'authorization' });
    const wrong = await h.call('GET', '/runs', undefined, 'not-a-key-at-all-0000');
    expect(wrong.status).toBe(401);
    expect(wrong.json).toMatchObject({ field: 'authorization', message: 'unknown API key' });
    const readOnly = await h.call('POST', '/runs', { preset: 'ci' }, h.keys.viewer);
    expect(readOnly.status).toBe(403);
    expect(readOnly.json).toMatchObject({ statusCode: 403, field: 'authorization' });
    expect((await h.call('GET', '/runs', undefined, h.keys.viewer)).status).toBe(200);
    const schedule = await h.call('DELETE', '/schedules/anything', undefined, h.keys.viewer);
    expect(schedule.status).toBe(403);
    // Health needs no key; errors never carry stack traces.
    expect((await h.call('GET', '/health', undefined, null)).json).toMatchObject({ status: 'ok' });
    const bad = await h.call('POST', '/runs', { preset: 'ci', overrides: { sft: { steps: -1 } } });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ field: 'body.overrides.sft.steps' });
    expect(bad.text).not.toMatch(/\n\s+at /);
  });

  it('starts a ci run over HTTP, pauses and resumes it, and follows it over SSE to the end', async () => {
    lineRunId = `api-ci-${h.suffix}`;
    const created = await h.call('POST', '/runs', { preset: 'ci', runId: lineRunId, modelLine: line() });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ runId: lineRunId, workflowId: `sophia-${lineRunId}`, state: 'started' });
    const seen: SseEvent[] = [];
    const following = followEvents(`${h.url}/runs/${lineRunId}/events`, h.keys.viewer, 600_000, seen);
    // While the stream is open: pause the run during SFT, see it paused, resume it.
    await waitFor('SFT to train', async () => {
      const d = (await h.call('GET', `/runs/${lineRunId}`)).json as Detail;
      return d.progress?.current?.stage === 'sftWarmup' && d.progress.current.step > 0 ? true : undefined;
    });
    expect((await h.call('POST', `/runs/${lineRunId}/pause`)).status).toBe(202);
    await waitFor('the run to pause', async () => (((await h.call('GET', `/runs/${lineRunId}`)).json as Detail).progress?.status === 'paused' ? true : undefined));
    // Until the stream (polling every 300 ms) has shown it — on a loaded machine one poll can take longer than a
    // fixed wait — and no longer: the cancelled chunk is then usually still committing when the resume arrives (the
    // race that once failed the run).
    const pausedInStream = () => seen.some((e) => e.event === 'progress' && (e.data as Detail).progress?.status === 'paused');
    await waitFor('the stream to show the pause', () => Promise.resolve(pausedInStream() ? true : undefined), 60_000);
    expect((await h.call('POST', `/runs/${lineRunId}/resume`)).status).toBe(202);
    const events = await following;
    // The stream showed the pause as it happened.
    expect(events.some((e) => e.event === 'progress' && (e.data as Detail).progress?.status === 'paused')).toBe(true);
    const last = events.at(-1)!;
    expect(last.event).toBe('end');
    expect((last.data as Detail).status, JSON.stringify((last.data as Detail).progress?.error ?? (last.data as Detail).progressError)).toBe('completed');
    expect((last.data as Detail).progress?.status).toBe('completed');
    const records = events.filter((e) => e.event === 'metrics').flatMap((e) => (e.data as { records: { stage: string; kind: string }[] }).records);
    const stages = new Set(records.map((r) => r.stage));
    for (const stage of ['sft', 'grpo']) expect(stages).toContain(stage);
    expect(records.some((r) => r.stage === 'grpo' && 'gamma' in r && 'thinkingReward' in r)).toBe(true);
    // More than one metrics event: they arrived while the run trained, not all at the end.
    expect(events.filter((e) => e.event === 'metrics').length).toBeGreaterThan(1);
    expect(events.filter((e) => e.event === 'progress').length).toBeGreaterThan(2);

    const metrics = await h.call('GET', `/runs/${lineRunId}/metrics?stage=sft&kind=step&maxPoints=10`);
    expect(metrics.status).toBe(200);
    const m = metrics.json as { total: number; records: { step: number }[] };
    expect(m.total).toBe(150);
    expect(m.records).toHaveLength(10);
    expect(m.records[0]!.step).toBe(1);
    expect(m.records.at(-1)!.step).toBe(150);

    const checkpoints = (await h.call('GET', `/runs/${lineRunId}/checkpoints`)).json as { checkpoints: { stage: string; key: string }[] };
    expect(checkpoints.checkpoints.length).toBeGreaterThan(2);
    const report = await h.call('GET', `/runs/${lineRunId}/report`);
    expect(report.status).toBe(200);
    const files = (report.json as { files: { name: string; url: string }[] }).files;
    const png = files.find((f) => f.name.endsWith('.png'))!;
    const image = await fetch(`${h.url}${png.url}`, { headers: { authorization: `Bearer ${h.keys.viewer}` } });
    expect(image.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await image.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');

    // Listing filters by status and pages; Prometheus metrics count runs and requests.
    const completed = (await h.call('GET', '/runs?status=completed')).json as { runs: { runId: string; status: string }[] };
    expect(completed.runs.map((r) => r.runId)).toContain(lineRunId);
    expect(completed.runs.every((r) => r.status === 'completed')).toBe(true);
    expect(((await h.call('GET', '/runs?status=failed')).json as { runs: unknown[] }).runs).toEqual([]);
    const prom = await h.call('GET', '/metrics', undefined, h.keys.viewer);
    expect(prom.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(prom.text).toMatch(/^sophia_runs\{status="completed"\} [1-9]/m);
    expect(prom.text).toMatch(/^sophia_api_requests_total\{method="GET",route="\/runs\/:id\/events",status="200"\} 1$/m);

    // The model line now points at this run's final policy.
    const latest = await waitFor('the line record', () => getJson<ModelLineRecord>(h.storage, `lines/${line()}/latest.json`));
    const final = (last.data as Detail).progress!.checkpoints;
    expect(latest).toMatchObject({ runId: lineRunId, policyKey: final.trustGrpo, rewardModelKey: final.rewardModel });
  });

  it('pauses, resumes and stops a run over HTTP', async () => {
    const runId = `api-ctl-${h.suffix}`;
    expect((await h.call('POST', '/runs', { preset: 'ci', runId, overrides: { sft: { steps: 400, chunkSteps: 50 } } })).status).toBe(201);
    await waitFor('SFT to train', async () => {
      const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
      return d.progress?.current?.stage === 'sftWarmup' && d.progress.current.step > 0 ? true : undefined;
    });
    const paused = await h.call('POST', `/runs/${runId}/pause`, undefined, h.keys.admin);
    expect(paused.status).toBe(202);
    const atPause = await waitFor('the run to pause', async () => {
      const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
      return d.progress?.status === 'paused' ? d.progress : undefined;
    });
    await new Promise((r) => setTimeout(r, 3000));
    const stillPaused = ((await h.call('GET', `/runs/${runId}`)).json as Detail).progress!;
    expect(stillPaused.status).toBe('paused');
    expect(stillPaused.stageIndex).toBe(atPause.stageIndex);
    expect((await h.call('POST', `/runs/${runId}/resume`)).status).toBe(202);
    await waitFor('the run to resume', async () => (((await h.call('GET', `/runs/${runId}`)).json as Detail).progress?.status === 'running' ? true : undefined));
    expect((await h.call('POST', `/runs/${runId}/stop`)).status).toBe(202);
    const done = await waitFor(
      'the stopped run to finish',
      async () => {
        const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
        return d.status === 'completed' ? d : undefined;
      },
      300_000,
    );
    // Stopped during SFT: it evaluated, skipped the later training stages, and trained fewer than 400 steps.
    expect(done.progress!.results.evaluation).toBeDefined();
    expect(done.progress!.results.trustGrpo).toBeUndefined();
    expect(done.progress!.results.sftWarmup!.step).toBeLessThan(400);
    // A finished run can't be controlled: 409 naming the id.
    const late = await h.call('POST', `/runs/${runId}/pause`);
    expect(late.status).toBe(409);
    expect(late.json).toMatchObject({ field: 'path.id' });
  });

  it('resumes a cancelled run over HTTP from its last checkpoint: completed stages kept, SFT goes on, the run completes', async () => {
    const runId = `api-resume-${h.suffix}`;
    const overrides = { stages: ['prepareData', 'sftWarmup', 'evaluation'], sft: { steps: 200, evalEvery: 25, chunkSteps: 50 }, rl: { variant: 'grpo' }, evaluation: { k: 0 } };
    expect(await h.call('POST', '/runs', { preset: 'ci', runId, overrides })).toMatchObject({ status: 201 });
    await waitFor('SFT past its first checkpoint', async () => {
      const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
      return d.progress?.current?.stage === 'sftWarmup' && d.progress.current.step >= 60 ? true : undefined;
    });
    expect((await h.call('POST', `/runs/${runId}/cancel`)).status).toBe(202);
    await waitFor('the run to be cancelled', async () => (((await h.call('GET', `/runs/${runId}`)).json as Detail).status === 'cancelled' ? true : undefined));
    const before = ((await h.call('GET', `/runs/${runId}/metrics`)).json as { records: { stage: string; kind: string; step: number; time: string }[] }).records;
    const firstSteps = before.filter((r) => r.stage === 'sft' && r.kind === 'step' && r.step <= 50);
    expect(firstSteps).toHaveLength(50);

    const resumed = await h.call('POST', `/runs/${runId}/resume`);
    expect(resumed.status).toBe(202);
    expect(resumed.json).toMatchObject({ action: 'resume' });
    expect((resumed.json as { message: string }).message).toMatch(/^resumed as a new execution: kept prepareData; sftWarmup restarts/);
    const done = await waitFor(
      'the resumed run to finish',
      async () => {
        const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
        return d.status === 'completed' || d.status === 'failed' ? d : undefined;
      },
      300_000,
    );
    expect(done.status).toBe('completed');
    expect(done.progress!.results.sftWarmup!.step).toBe(200);
    expect(done.progress!.results.evaluation).toBeDefined();
    expect((done.progress as Progress & { events?: unknown[] }).events).toEqual([expect.objectContaining({ kind: 'resumed', stage: 'sftWarmup' })]);
    // Training went on from a checkpoint: the first 50 steps were not trained (nor logged) again.
    const after = ((await h.call('GET', `/runs/${runId}/metrics`)).json as { records: { stage: string; kind: string; step: number; time: string }[] }).records;
    expect(after.filter((r) => r.stage === 'sft' && r.kind === 'step' && r.step <= 50)).toEqual(firstSteps);
    // A completed run has nothing to resume.
    const again = await h.call('POST', `/runs/${runId}/resume`);
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({ field: 'path.id' });
  }, 600_000);

  it('stops a run during Trust-GRPO over HTTP: the policy is committed, evaluated, the run completes', async () => {
    const runId = `api-rlstop-${h.suffix}`;
    const overrides = {
      stages: ['prepareData', 'sftWarmup', 'trustGrpo', 'evaluation'],
      sft: { steps: 20, evalEvery: 10, chunkSteps: 20 },
      rl: { variant: 'grpo', steps: 60, checkpointEvery: 100, evalEvery: 0 },
      evaluation: { k: 0 },
    };
    expect((await h.call('POST', '/runs', { preset: 'ci', runId, overrides })).status).toBe(201);
    await waitFor(
      'RL to reach step 1',
      async () => {
        const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
        return d.progress?.current?.stage === 'trustGrpo' && d.progress.current.step >= 1 ? true : undefined;
      },
      300_000,
    );
    expect((await h.call('POST', `/runs/${runId}/stop`)).status).toBe(202);
    const done = await waitFor(
      'the stopped run to finish',
      async () => {
        const d = (await h.call('GET', `/runs/${runId}`)).json as Detail;
        return d.status === 'completed' || d.status === 'failed' ? d : undefined;
      },
      300_000,
    );
    expect(done.status).toBe('completed');
    const stoppedAt = done.progress!.results.trustGrpo!.step!;
    expect(stoppedAt).toBeGreaterThanOrEqual(1);
    expect(stoppedAt).toBeLessThan(60);
    // The committed policy is the one at the stop's step (no periodic checkpoint before step 60), and it was evaluated.
    expect(done.progress!.checkpoints.trustGrpo).toBe(`runs/${runId}/grpo/checkpoints/${String(stoppedAt).padStart(8, '0')}`);
    expect(done.progress!.results.evaluation).toBeDefined();
    const checkpoints = (await h.call('GET', `/runs/${runId}/checkpoints`)).json as Record<string, unknown>;
    expect(JSON.stringify(checkpoints)).toContain(`grpo/checkpoints/${String(stoppedAt).padStart(8, '0')}`);
  }, 600_000);

  it('creates, triggers and deletes a retraining schedule; its run starts from the line', async () => {
    const id = `nightly-${h.suffix}`;
    const created = await h.call('POST', '/schedules', { id, cron: '0 3 * * *', preset: 'ci', startFrom: { modelLine: line(), stage: 'sftWarmup' } });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ id, cron: ['0 3 * * *'], overlap: 'skip', modelLine: line(), paused: false });
    expect((created.json as { nextRunTimes: string[] }).nextRunTimes[0]).toMatch(/T03:00:00/);
    expect((await h.call('POST', '/schedules', { id, every: '1h', preset: 'ci' })).status).toBe(409);
    expect((await h.call('GET', '/schedules')).json).toMatchObject({ schedules: expect.arrayContaining([expect.objectContaining({ id })]) as unknown });

    expect((await h.call('POST', `/schedules/${id}/trigger`)).status).toBe(202);
    const runId = await waitFor('the scheduled run to appear', async () => {
      const s = (await h.call('GET', `/schedules/${id}`)).json as { recentRuns: { runId: string }[] };
      return s.recentRuns[0]?.runId;
    });
    expect(runId).toMatch(new RegExp(`^${id}-\\d{8}-\\d{6}$`));
    const run = await waitFor('the scheduled run to start', async () => {
      const r = await h.call('GET', `/runs/${runId}`);
      return r.status === 200 ? (r.json as Detail) : undefined;
    });
    expect(run.status).toBe('running');
    // It starts from the line's latest policy (the run above), on its own freshly seeded data.
    const latest = await getJson<ModelLineRecord>(h.storage, `lines/${line()}/latest.json`);
    const history = await h.client.workflow.getHandle(`sophia-${runId}`).fetchHistory();
    const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    const input = JSON.parse(Buffer.from(payload!.data!).toString()) as PipelineInput;
    expect(input.runId).toBe(runId);
    expect(input.config.startFrom).toMatchObject({ stage: 'sftWarmup', checkpointKey: latest.policyKey });
    expect(input.config.seed).not.toBe(1);
    expect((await h.call('POST', `/runs/${runId}/cancel`)).status).toBe(202);
    // Wait until it has closed: the listing orders open runs before closed ones, so a run closing between two page
    // requests would otherwise move and show up on both pages.
    await waitFor('the cancelled run to close', async () => {
      const r = (await h.call('GET', `/runs/${runId}`)).json as Detail;
      return r.status !== 'running' ? true : undefined;
    });

    expect((await h.call('POST', `/schedules/${id}/pause`, { note: 'maintenance' })).json).toMatchObject({ action: 'pause' });
    expect((await h.call('GET', `/schedules/${id}`)).json).toMatchObject({ paused: true, note: 'maintenance' });
    // Three runs exist now: pages of one, newest first, each page a different run.
    const first = (await h.call('GET', '/runs?pageSize=1')).json as { runs: { runId: string }[]; nextPageToken: string | null };
    expect(first.runs.map((r) => r.runId)).toEqual([runId]);
    const second = (await h.call('GET', `/runs?pageSize=1&pageToken=${first.nextPageToken!}`)).json as { runs: { runId: string }[] };
    expect(second.runs).toHaveLength(1);
    expect(second.runs[0]!.runId).not.toBe(runId);
    expect((await h.call('GET', '/runs?pageSize=1&pageToken=forged')).json).toMatchObject({ statusCode: 400, field: 'query.pageToken' });

    expect((await h.call('DELETE', `/schedules/${id}`)).status).toBe(204);
    const gone = await h.call('GET', `/schedules/${id}`);
    expect(gone.status).toBe(404);
    expect(gone.json).toMatchObject({ field: 'path.id' });
  });
});
