/**
 * The deployment's limit on runs running at once, and per model line, checked before `POST /runs` starts a run and
 * before a schedule is triggered or backfilled (`RunLimits` in `api/config.ts`). Running runs are counted with
 * Temporal's visibility API: the deployment's open `trainingPipeline` workflows (`SOPHIA_DEPLOYMENT`; other deployments
 * on the namespace have their own limits), whoever started them (the CLI, the API, a schedule); a run's model line is the `modelLine` memo its launcher (`modelLineRun`) gives it.
 *
 * A check, not a lock: two requests at the same moment may both pass it. It bounds what requests can start, which
 * is what it is for; the workers' own slots bound what runs at once on a machine.
 */
import type { Client } from '@temporalio/client';
import { deploymentPipelinesQuery } from '../../common/run-layout';
import type { TemporalConfig } from '../../temporal.config';
import type { RunLimits } from '../config';
import { ApiError } from '../common/errors';

/** The deployment's running pipelines: all of them, and those of `line`. */
export async function countRunning(client: Client, deployment: string, line: string | undefined): Promise<{ total: number; inLine: number }> {
  let total = 0;
  let inLine = 0;
  for await (const wf of client.workflow.list({ query: deploymentPipelinesQuery(deployment, `ExecutionStatus = 'Running'`) })) {
    total++;
    if (line !== undefined && wf.memo?.modelLine === line) inLine++;
  }
  return { total, inLine };
}

/** Refuses (409, on `field`) a new run while the deployment or its model line is at its limit. */
export async function assertRoomForRun(client: Client, temporal: Pick<TemporalConfig, 'deployment'>, limits: RunLimits, request: { line: string | undefined; field: string }): Promise<void> {
  const { total, inLine } = await countRunning(client, temporal.deployment, request.line);
  if (total >= limits.maxRunningRuns) {
    throw new ApiError(409, request.field, `${total} runs are running, the most this deployment allows at once (SOPHIA_API_MAX_RUNNING_RUNS=${limits.maxRunningRuns}): wait for one to finish, or cancel one`);
  }
  if (request.line !== undefined && inLine >= limits.maxRunningRunsPerLine) {
    throw new ApiError(409, request.field, `${inLine} runs of model line ${request.line} are running, the most a line may have at once (SOPHIA_API_MAX_RUNNING_RUNS_PER_LINE=${limits.maxRunningRunsPerLine}): wait for one to finish, or cancel one`);
  }
}
