/**
 * The local adapter on a real full file system (a small tmpfs; needs root to mount, skipped elsewhere): a write
 * that meets ENOSPC is a retryable `StorageFullError` that says the disk is full, leaves no temp file behind, and
 * the same write succeeds once space is freed.
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StorageFullError } from '../common/errors';
import { LocalStorage } from './local';
import { canMountSmallDisk, mountSmallDisk, type SmallDisk } from './testing/small-disk';

const disks: SmallDisk[] = [];
afterEach(() => {
  for (const d of disks.splice(0)) d.unmount();
});

describe.skipIf(!canMountSmallDisk())('LocalStorage on a full disk (tmpfs; root only)', () => {
  it('reports ENOSPC as a retryable StorageFullError, cleans its temp file, and writes once space is freed', async () => {
    const disk = mountSmallDisk(1 << 20);
    disks.push(disk);
    const storage = new LocalStorage(disk.dir);
    await storage.put('runs/r/a', new Uint8Array(16)); // the folders exist: only the bytes need space
    disk.fill();
    const body = new Uint8Array(256 << 10).fill(7);
    const err: unknown = await storage.put('runs/r/b', body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageFullError);
    expect((err as StorageFullError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/cannot write runs\/r\/b under .*: the disk is full \(ENOSPC\)\. Free space on that disk/);
    expect(readdirSync(path.join(disk.dir, '.sophia-tmp'))).toEqual([]);
    disk.free();
    await storage.put('runs/r/b', body);
    expect(await storage.get('runs/r/b')).toEqual(Buffer.from(body));
  });
});
