/**
 * The API's pre-flight check of its storage, before a request starts anything (POST /runs, POST /schedules, a
 * schedule's trigger or backfill), as `sophia run` does: a probe object is written and deleted under the run
 * (`storage/probe.ts`), so a store that cannot be written (a missing bucket, wrong S3 credentials, a folder that is
 * not one, a full disk) is refused at once instead of starting a run that fails in its first activity.
 *
 * The answer is a 503 with the storage's own message (what failed, and the fix): the request is fine and the client
 * cannot fix it; the deployment's storage is unavailable until its operator does, and then the same request succeeds.
 * (Not a 500: the API's 500s hide their message behind a log id, and this one is the point. Not a 400, which the
 * storage's "config" category would give: the configuration at fault is the server's, not the request's.)
 */
import { SophiaError } from '../../common/errors';
import { probeStorage } from '../../storage/probe';
import type { Storage } from '../../storage/types';
import { ApiError } from '../common/errors';

/** Writes and deletes a probe object under `runId`; a storage error is a 503 on field `storage`. */
export async function assertStorageWritable(storage: Storage, runId: string): Promise<void> {
  try {
    await probeStorage(storage, runId);
  } catch (err) {
    if (err instanceof SophiaError && (err.category === 'config' || err.category === 'unavailable')) {
      throw new ApiError(503, 'storage', `the storage ${storage.location} cannot be written, so nothing was started: ${err.message}`);
    }
    throw err;
  }
}
