/**
 * The pre-flight probe refuses a store that cannot be written, non-retryably and naming the fix, and leaves nothing
 * behind in one that can.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageConfigError } from '../common/errors';
import { LocalStorage } from './local';
import { probeStorage } from './probe';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('probeStorage', () => {
  it('writes and deletes under the run, leaving no object', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-probe-'));
    dirs.push(dir);
    const storage = new LocalStorage(dir);
    await probeStorage(storage, 'run-1');
    const left: string[] = [];
    for await (const info of storage.list('runs/')) left.push(info.key);
    expect(left).toEqual([]);
    expect(readdirSync(dir).filter((f) => f !== 'runs' && !f.startsWith('.'))).toEqual([]);
  });

  it('refuses a folder that cannot be created, as a non-retryable config error naming the fix', async () => {
    // A file where the folder should be: it cannot be created, whoever runs the test (root included).
    const dir = mkdtempSync(path.join(tmpdir(), 'sophia-probe-'));
    dirs.push(dir);
    writeFileSync(path.join(dir, 'a-file'), 'not a folder');
    const storage = new LocalStorage(path.join(dir, 'a-file', 'storage'));
    const err: unknown = await probeStorage(storage, 'run-1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageConfigError);
    expect((err as StorageConfigError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/cannot write runs\/run-1\/probe-[0-9a-f]+ under .*a-file\/storage \(ENOTDIR\).*--storage DIR or SOPHIA_STORAGE/);
  });
});
