/**
 * A run's real wall times, from Temporal's own records: the pipeline workflow's start, and each stage workflow's
 * first start and close. A stage that continued as new (SFT and RL do, every few chunks) is a chain of runs: its
 * start is the first run's (`firstRunId`), its end the last run's close. A stage still running (the evaluation
 * stage that asks, while it writes the report) ends "now". Stages the pipeline did not run have no workflow and
 * are left out.
 */
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { stageWorkflowId } from '../common/run-layout';
import { STAGE_NAMES } from '../config/stages';
import type { RunTimes, StageTime } from '../report/run-report';

/** Start (of the first run of its chain) and close (of its latest run) of one workflow, or undefined if it does not exist. */
async function workflowSpan(client: Client, workflowId: string): Promise<{ start: Date; close: Date | undefined } | undefined> {
  const latest = await client.workflow
    .getHandle(workflowId)
    .describe()
    .catch((err: unknown) => {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw err;
    });
  if (!latest) return undefined;
  const firstRunId = latest.raw.workflowExecutionInfo?.firstRunId;
  const first = firstRunId && firstRunId !== latest.runId ? await client.workflow.getHandle(workflowId, firstRunId).describe() : latest;
  return { start: first.startTime, close: latest.closeTime };
}

/** Wall times of the pipeline `pipelineId` and of its stages, in pipeline order, up to `now`. */
export async function runTimes(client: Client, pipelineId: string, now: Date): Promise<RunTimes> {
  const pipeline = await workflowSpan(client, pipelineId);
  if (!pipeline) throw new WorkflowNotFoundError(`no pipeline workflow ${pipelineId}`, pipelineId, undefined);
  const stages: StageTime[] = [];
  for (const stage of STAGE_NAMES) {
    const span = await workflowSpan(client, stageWorkflowId(pipelineId, stage));
    if (!span) continue;
    const end = span.close ?? now;
    stages.push({ stage, startedAt: span.start.toISOString(), endedAt: span.close?.toISOString(), seconds: (end.getTime() - span.start.getTime()) / 1000 });
  }
  return { totalSeconds: (now.getTime() - pipeline.start.getTime()) / 1000, stages };
}
