/**
 * The deployment's limit on runs running at once, and per model line, checked before `POST /runs` starts a run and
 * before a schedule is triggered or backfilled (`RunLimits` in `api/config.ts`); each firing of a schedule checks
 * them again before it starts training (`workflows/model-line.ts`). What counts, and why it is a check and not a
 * lock: `activities/run-room.ts`. Only the deployment's own runs count (`SOPHIA_DEPLOYMENT`; other deployments on
 * the namespace have their own limits).
 */
import type { Client } from '@temporalio/client';
import { countRunning, overLimit } from '../../activities/run-room';
import type { TemporalConfig } from '../../temporal.config';
import type { RunLimits } from '../config';
import { ApiError } from '../common/errors';

/** Refuses (409, on `field`) a new run while the deployment or its model line is at its limit. */
export async function assertRoomForRun(client: Client, temporal: Pick<TemporalConfig, 'deployment'>, limits: RunLimits, request: { line: string | undefined; field: string }): Promise<void> {
  const count = await countRunning(client, temporal.deployment, request.line);
  const refused = overLimit(limits, count, request.line);
  if (refused) throw new ApiError(409, request.field, `${refused}: wait for one to finish, or cancel one`);
}
