/**
 * `RunData.assertStorage`: a worker refuses a run whose store is another one than its own — by location, and (for runs
 * that recorded it) by the store's id, which tells apart stores that share a location string.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageConfigError } from '../common/errors';
import { LocalStorage } from '../storage/local';
import { identifyStore } from '../storage/store-id';
import { RunData } from './run-data';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sophia-run-data-'));
  dirs.push(dir);
  return dir;
}

async function refusal(check: Promise<void>): Promise<StorageConfigError> {
  const err: unknown = await check.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(StorageConfigError);
  expect((err as StorageConfigError).retryable).toBe(false);
  return err as StorageConfigError;
}

describe('RunData.assertStorage', () => {
  it('accepts the store the run was started on', async () => {
    const storage = new LocalStorage(tempDir());
    const store = await identifyStore(storage);
    await new RunData(storage).assertStorage({ runId: 'r1', storage: store.location, storeId: store.id });
  });

  it('refuses another location', async () => {
    const data = new RunData(new LocalStorage(tempDir()));
    const err = await refusal(data.assertStorage({ runId: 'r1', storage: 'local:/elsewhere' }));
    expect(err.message).toMatch(/this worker uses storage local:.* but the run's data is in local:\/elsewhere/);
  });

  it('refuses a store wiped and created again at the same location, naming both ids, both locations and the fix', async () => {
    const root = tempDir();
    const worker = new RunData(new LocalStorage(root));
    const before = await identifyStore(new LocalStorage(root));
    await worker.assertStorage({ runId: 'r1', storage: before.location, storeId: before.id });
    // The folder is replaced by a fresh one that a new client gave its own id.
    rmSync(root, { recursive: true });
    mkdirSync(root);
    const after = await identifyStore(new LocalStorage(root));
    expect(after.location).toBe(before.location);
    const err = await refusal(worker.assertStorage({ runId: 'r1', storage: before.location, storeId: before.id }));
    expect(err.message).toContain(`run r1 was started on store ${before.id} at ${before.location}`);
    expect(err.message).toContain(`this worker's storage ${before.location} is store ${after.id}`);
    expect(err.message).toMatch(/same location names two different stores/);
    expect(err.message).toMatch(/Run this worker on the store the run was started with.*start the run again under a new run id/);
    // A run started since then is the new store's, and is accepted.
    await worker.assertStorage({ runId: 'r2', storage: after.location, storeId: after.id });
  });

  it('refuses a store without a marker for a run that recorded an id (another machine\'s folder at the same path)', async () => {
    const root = tempDir();
    const err = await refusal(new RunData(new LocalStorage(root)).assertStorage({ runId: 'r1', storage: `local:${root}`, storeId: 'ab'.repeat(16) }));
    expect(err.message).toMatch(/is a store without an id \(no marker\)/);
  });

  it('checks only the location for runs started before stores had ids', async () => {
    const storage = new LocalStorage(tempDir());
    await identifyStore(storage);
    await new RunData(storage).assertStorage({ runId: 'old', storage: storage.location });
  });
});
