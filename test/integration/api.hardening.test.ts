/**
 * The API's smaller holes (issue 20), on the real stack with in-process workers:
 *  - keys that address a prototype (`__proto__`, `constructor`, `prototype`) anywhere in a body are a 400 naming
 *    the field (a `__proto__` override used to be merged into the config's prototype and ignored);
 *  - unauthenticated `GET /health` says only up/down; where Temporal and the storage are is behind a key;
 *  - a body that is not JSON is a 415 naming `headers.content-type` (it was a 400 about a missing body);
 *  - posting a running run's id with another config is a 409 naming the fields that differ (it said "attached");
 *  - a failed run shows its innermost cause (type, message, stage, activity), not "Child Workflow execution failed".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelineInput, runProgress, startRun } from '../../clients/runs';
import { pipelineWorkflowId } from '../../common/run-layout';
import { resolveRunConfig } from '../../config/run-config';
import { type ApiHarness, startApiHarness } from './api-harness';
import { waitFor } from './stack';

describe('API hardening', () => {
  let h: ApiHarness;

  beforeAll(async () => {
    h = await startApiHarness({ workers: true, storage: 'local' });
  });

  afterAll(async () => {
    await h?.close();
  });

  /** POST with a raw body and content type (h.call always sends JSON). */
  async function post(route: string, body: string, contentType: string | undefined) {
    const headers: Record<string, string> = { authorization: `Bearer ${h.keys.admin}` };
    if (contentType !== undefined) headers['content-type'] = contentType;
    const res = await fetch(`${h.url}${route}`, { method: 'POST', headers, body });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  it('refuses __proto__, constructor and prototype keys anywhere in a body, naming the field', async () => {
    const proto = await post('/runs', `{"preset":"ci","runId":"proto-${h.suffix}","overrides":{"__proto__":{"sft":{"steps":3}}}}`, 'application/json');
    expect(proto.status).toBe(400);
    expect(proto.json).toMatchObject({ statusCode: 400, field: 'body.overrides.__proto__' });
    const ctor = await h.call('POST', '/runs', { config: { extends: 'ci', sft: { constructor: { name: 'x' } } } });
    expect(ctor.status).toBe(400);
    expect(ctor.json).toMatchObject({ field: 'body.config.sft.constructor' });
    const schedule = await post('/schedules', `{"id":"s-${h.suffix}","every":"1h","preset":"ci","overrides":{"rl":{"prototype":1}}}`, 'application/json');
    expect(schedule.status).toBe(400);
    expect(schedule.json).toMatchObject({ field: 'body.overrides.rl.prototype' });
    // None of them started a run.
    expect((await h.call('GET', `/runs/proto-${h.suffix}`)).status).toBe(404);
  });

  it('says only up or down on /health without a key; the details need one', async () => {
    const open = await h.call('GET', '/health', undefined, null);
    expect(open.status).toBe(200);
    expect(open.json).toEqual({ status: 'ok', temporal: 'up', storage: 'up' });
    expect(open.text).not.toContain(h.temporal.connection.address);
    expect(open.text).not.toContain(h.storage.location);
    expect((await h.call('GET', '/health/details', undefined, null)).status).toBe(401);
    const details = await h.call('GET', '/health/details', undefined, h.keys.viewer);
    expect(details.status).toBe(200);
    expect(details.json).toMatchObject({ status: 'ok', temporal: { up: true, address: h.temporal.connection.address }, storage: { up: true, location: h.storage.location } });
  });

  it('answers 415 to a body that is not JSON, and lets bodiless POSTs through', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', undefined]) {
      const r = await post('/runs', '{"preset":"ci"}', type);
      expect(r.status, String(type)).toBe(415);
      expect(r.json).toMatchObject({ statusCode: 415, error: 'Unsupported Media Type', field: 'headers.content-type' });
    }
    // A browser's POST without a body (Content-Length: 0, no type) is not a 415: here the run does not exist.
    const control = await fetch(`${h.url}/runs/nothing-${h.suffix}/pause`, { method: 'POST', headers: { authorization: `Bearer ${h.keys.admin}` } });
    expect(control.status).toBe(404);
  });

  it('attaches to a running run only with its own config: another is a 409 naming the fields that differ', async () => {
    const runId = `attach-${h.suffix}`;
    try {
      expect((await h.call('POST', '/runs', { preset: 'ci', runId })).json).toMatchObject({ state: 'started' });
      const same = await h.call('POST', '/runs', { preset: 'ci', runId });
      expect(same.status).toBe(201);
      expect(same.json).toMatchObject({ state: 'attached' });
      const other = await h.call('POST', '/runs', { preset: 'ci', runId, overrides: { sft: { steps: 60 }, seed: 99 } });
      expect(other.status).toBe(409);
      expect(other.json).toMatchObject({ statusCode: 409, field: 'body.runId' });
      expect((other.json as { message: string }).message).toMatch(/seed, sft differ/);
    } finally {
      await h.client.workflow.getHandle(pipelineWorkflowId(h.temporal.deployment, runId)).terminate('test over').catch(() => undefined);
    }
  });

  it('shows a failed run\'s innermost cause in GET /runs/:id and runProgress', async () => {
    const runId = `fails-${h.suffix}`;
    // Workers refuse a run whose data is in storage they do not use: a StorageConfigError (non-retryable) in the
    // first stage's activity, two levels below the pipeline.
    const input = pipelineInput(runId, resolveRunConfig('ci', 'ci'), 'local:/nowhere/sophia-test', h.temporal);
    await startRun(h.client, h.temporal, input);
    const detail = await waitFor('the run to fail', async () => {
      const d = (await h.call('GET', `/runs/${runId}`)).json as { status: string; progress: Record<string, unknown> | null };
      return d.status === 'failed' ? d : undefined;
    });
    const progress = detail.progress as { error: string; failure: Record<string, unknown> };
    expect(progress.error).toMatch(/this worker uses storage .* but the run's data is in local:\/nowhere/);
    expect(progress.error).not.toMatch(/Child Workflow execution failed/);
    expect(progress.failure).toMatchObject({ type: 'StorageConfigError', stage: 'prepareData', activity: 'prepareData' });
    const direct = await runProgress(h.client, runId);
    expect(direct.failure?.message).toBe(progress.error);
  });
});
