/**
 * The API checks its storage before it starts anything (issue 20, item 10), as `sophia run` does: with a store that
 * cannot be written, POST /runs, POST /schedules and a schedule's trigger are 503s that say why and name the fix, and
 * no workflow or schedule is created (a run would only have failed in its first activity, after retrying it).
 *
 * The store is a real local folder that stops being one: the API's storage root is replaced by a file (ENOTDIR for
 * every write, whoever runs the test).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStorage } from '../../storage/local';
import { type ApiHarness, startApiHarness } from './api-harness';

describe('API pre-flight storage check', () => {
  let h: ApiHarness;

  beforeAll(async () => {
    h = await startApiHarness({ workers: false, storage: 'local' });
  }, 120_000);

  afterAll(async () => {
    if (h) await h.close();
  }, 120_000);

  it('answers 503 naming the storage and the fix, and starts nothing, when the storage cannot be written', async () => {
    const id = `nostore-${h.suffix}`;
    // A schedule made while the store was fine, to trigger once it is not.
    expect((await h.call('POST', '/schedules', { id: `ok-${h.suffix}`, cron: '0 3 * * *', preset: 'ci', paused: true })).status).toBe(201);
    const root = (h.storage as LocalStorage).root;
    rmSync(root, { recursive: true, force: true });
    writeFileSync(root, 'a file where the storage folder was');

    const run = await h.call('POST', '/runs', { preset: 'ci', runId: id });
    expect(run.status, run.text).toBe(503);
    expect(run.json).toMatchObject({ statusCode: 503, field: 'storage' });
    const message = (run.json as { message: string }).message;
    expect(message).toContain(`the storage ${h.storage.location} cannot be written`);
    expect(message).toMatch(new RegExp(`cannot write runs/${id}/probe-[0-9a-f]+ under .* \\(ENOTDIR\\).*SOPHIA_STORAGE`));
    expect((await h.call('GET', `/runs/${id}`)).status).toBe(404);

    const schedule = await h.call('POST', '/schedules', { id, cron: '0 3 * * *', preset: 'ci', paused: true });
    expect(schedule.status).toBe(503);
    expect(schedule.json).toMatchObject({ field: 'storage', message: expect.stringContaining('cannot be written') as unknown });
    expect((await h.call('GET', `/schedules/${id}`)).status).toBe(404);

    const trigger = await h.call('POST', `/schedules/ok-${h.suffix}/trigger`, {});
    expect(trigger.status).toBe(503);
    expect(((await h.call('GET', `/schedules/ok-${h.suffix}`)).json as { recentRuns: unknown[] }).recentRuns).toEqual([]);
    expect((await h.call('DELETE', `/schedules/ok-${h.suffix}`)).status).toBe(204);
  });
});
