import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll } from 'vitest';
import { LocalStorage } from './local';
import { describeStorageContract } from './storage.contract';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describeStorageContract('LocalStorage (temp directory)', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'sophia-storage-'));
  dirs.push(dir);
  return new LocalStorage(dir);
});
