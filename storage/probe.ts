/**
 * Pre-flight check of a run's storage: write a small object under the run's prefix and delete it again, so a store
 * that cannot be written (a missing bucket, no permission, a read-only folder) is refused before a run starts, with
 * the adapter's non-retryable `StorageConfigError`, instead of an activity retrying its first write for minutes. (A
 * read alone is not enough: S3 answers a HEAD in a missing bucket with a plain 404, as for a missing key. Some
 * S3-compatible servers, SeaweedFS among them, create a missing bucket on the first write instead.)
 */
import { randomBytes } from 'node:crypto';
import { runPrefix } from './keys';
import type { Storage } from './types';

export async function probeStorage(storage: Storage, runId: string): Promise<void> {
  const key = `${runPrefix(runId)}/probe-${randomBytes(6).toString('hex')}`;
  await storage.put(key, new TextEncoder().encode('sophia storage probe\n'));
  await storage.delete(key);
}
