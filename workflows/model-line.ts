/**
 * `modelLineRun`: what a retraining schedule (or `POST /runs` with a model line) starts. It names the run
 * (`{prefix}-{yyyymmdd-hhmmss}` of its start time, so every scheduled run gets its own id and storage), resolves
 * the line's latest checkpoint to start from, runs `trainingPipeline` as a child (`{deployment}-{runId}`: an ordinary
 * run, listed and controlled like any other), and records the run as the line's latest once it completed.
 * Waiting for the child is what makes the schedule's overlap policy apply to training runs.
 */
import { ParentClosePolicy, executeChild, workflowInfo } from '@temporalio/workflow';
import type { LineStart } from '../activities/model-lines';
import { pipelineWorkflowId, scheduledRunId } from '../common/run-layout';
import { DEFAULT_TEMPORAL_CONFIG } from '../temporal.config';
import { cpuActivities } from './proxies';
import type { trainingPipeline } from './pipeline';
import type { PipelineInput, RunProgress } from './types';

export interface ModelLineRunInput {
  /** The pipeline input; `runId` is filled in here unless given. */
  pipeline: Omit<PipelineInput, 'runId' | 'configHash'> & { runId?: string };
  /** Run ids are `{runIdPrefix}-{yyyymmdd-hhmmss}` (UTC nominal start time) when `pipeline.runId` is absent. */
  runIdPrefix: string;
  /** Record completed runs under this line. */
  line: string | undefined;
  /** Start from the latest checkpoint of a line (from scratch while it has none). */
  from: LineStart | undefined;
  freshData: boolean;
}

export interface ModelLineRunResult {
  runId: string;
  status: RunProgress['status'];
  startedFromRun: string | undefined;
  recorded: boolean;
}

export async function modelLineRun(input: ModelLineRunInput): Promise<ModelLineRunResult> {
  const { pipeline } = input;
  const acts = cpuActivities(pipeline.profiles);
  const info = workflowInfo();
  const runId = pipeline.runId ?? scheduledRunId(input.runIdPrefix, info.workflowId, info.runStartTime);
  const prepared = await acts.prepareLineRun({ runId, config: pipeline.config, storage: pipeline.storage, storeId: pipeline.storeId, from: input.from, freshData: input.freshData });
  const result = await executeChild<typeof trainingPipeline>('trainingPipeline', {
    // Inputs from before deployments had names carry none: theirs was the default one.
    workflowId: pipelineWorkflowId(pipeline.deployment ?? DEFAULT_TEMPORAL_CONFIG.deployment, runId),
    taskQueue: pipeline.profiles.cpu.taskQueue,
    // The run outlives its launcher: cancelling or losing this workflow never kills training.
    parentClosePolicy: ParentClosePolicy.ABANDON,
    memo: { storage: pipeline.storage, config: prepared.config.name ?? 'custom', ...(input.line ? { modelLine: input.line } : {}) },
    args: [{ ...pipeline, runId, config: prepared.config, configHash: prepared.configHash }],
  });
  let recorded = false;
  if (input.line && result.status === 'completed') {
    const out = await acts.recordLineRun({
      storage: pipeline.storage,
      storeId: pipeline.storeId,
      line: input.line,
      runId,
      checkpoints: result.checkpoints,
      rewardModelKey: prepared.config.startFrom?.rewardModelKey,
      metrics: result.results.evaluation ?? {},
    });
    recorded = out.policyKey !== undefined;
  }
  return { runId, status: result.status, startedFromRun: prepared.startedFromRun, recorded };
}
