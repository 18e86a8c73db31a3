/**
 * Pre-flight check of a run's storage: write a small object under the run's prefix and delete it again, so a store
 * that cannot be written (a missing bucket, no permission, a read-only folder, a full disk) is refused before a run
 * starts, with the adapter's error (non-retryable `StorageConfigError`, or `StorageFullError`), instead of an activity
 * retrying its first write for minutes. `sophia run` and the API (`api/runs/storage-check.ts`) call it. (A read alone
 * is not enough: S3 answers a HEAD in a missing bucket with a plain 404, as for a missing key. A write alone is not
 * either: SeaweedFS creates a missing bucket on the first PUT; the S3 adapter checks its bucket before its first
 * request, so the probe's write is refused there and creates nothing.)
 */
import { randomBytes } from 'node:crypto';
import { runPrefix } from './keys';
import type { Storage } from './types';

export async function probeStorage(storage: Storage, runId: string): Promise<void> {
  const key = `${runPrefix(runId)}/probe-${randomBytes(6).toString('hex')}`;
  await storage.put(key, new TextEncoder().encode('sophia storage probe\n'));
  await storage.delete(key);
}
