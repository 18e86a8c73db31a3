/**
 * `modelLineRun`: what a retraining schedule (or `POST /runs` with a model line) starts. It names the run
 * (`{prefix}-{yyyymmdd-hhmmss}` of its start time, so every scheduled run gets its own id and storage), resolves
 * the line's latest checkpoint to start from, runs `trainingPipeline` as a child (`{deployment}-{runId}`: an ordinary
 * run, listed and controlled like any other), and records the run as the line's latest once it completed.
 * Waiting for the child is what makes the schedule's overlap policy apply to training runs.
 *
 * A schedule's firing first checks the deployment's limits on runs running at once (`limits`, recorded in the
 * schedule's action when it was created: docs/security.md): over a limit it starts no training and ends `skipped`,
 * saying why in its result, its `skipped` memo (the schedule's `recentRuns` in the API) and the worker's log.
 * Overlap policies then cannot pile runs up: `allow_all` and backfills are bounded like `POST /runs`.
 */
import { ParentClosePolicy, executeChild, getExternalWorkflowHandle, log, patched, upsertMemo, workflowInfo } from '@temporalio/workflow';
import type { LineStart } from '../activities/model-lines';
import type { RunningLimits } from '../activities/run-room';
import { pipelineWorkflowId, scheduledRunId, trackingWorkflowId } from '../common/run-layout';
import { DEFAULT_TEMPORAL_CONFIG } from '../temporal.config';
import { cpuActivities } from './proxies';
import type { trainingPipeline } from './pipeline';
import { trackingFinishSignal } from './tracking';
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
  /**
   * Check the deployment's running-run limits before starting (a schedule's firings; the API checked its own runs
   * already). Absent in schedules created before firings were checked: those start their run unchecked.
   */
  limits?: RunningLimits;
}

export interface ModelLineRunResult {
  runId: string;
  /** `skipped`: over the running-run limits, no run was started (`skipped` says why). */
  status: RunProgress['status'] | 'skipped';
  startedFromRun: string | undefined;
  recorded: boolean;
  skipped?: string;
}

export async function modelLineRun(input: ModelLineRunInput): Promise<ModelLineRunResult> {
  const { pipeline } = input;
  const acts = cpuActivities(pipeline.profiles);
  const info = workflowInfo();
  const runId = pipeline.runId ?? scheduledRunId(input.runIdPrefix, info.workflowId, info.runStartTime);
  // Inputs from before deployments had names carry none: theirs was the default one.
  const deployment = pipeline.deployment ?? DEFAULT_TEMPORAL_CONFIG.deployment;
  // `patched`: a launcher a worker without this check began (from a schedule that carries limits) replays without it.
  if (input.limits && patched('line-run-limits')) {
    const { refused } = await acts.checkRunRoom({ deployment, limits: input.limits, line: input.line });
    if (refused) {
      const skipped = `run ${runId} was not started: ${refused}`;
      log.warn('scheduled run skipped', { runId, reason: refused });
      upsertMemo({ skipped });
      return { runId, status: 'skipped', startedFromRun: undefined, recorded: false, skipped };
    }
  }
  const prepared = await acts.prepareLineRun({ runId, config: pipeline.config, storage: pipeline.storage, storeId: pipeline.storeId, from: input.from, freshData: input.freshData });
  const result = await executeChild<typeof trainingPipeline>('trainingPipeline', {
    workflowId: pipelineWorkflowId(deployment, runId),
    taskQueue: pipeline.profiles.cpu.taskQueue,
    // The run outlives its launcher: cancelling or losing this workflow never kills training.
    parentClosePolicy: ParentClosePolicy.ABANDON,
    memo: { storage: pipeline.storage, config: prepared.config.name ?? 'custom', ...(input.line ? { modelLine: input.line } : {}) },
    args: [{ ...pipeline, runId, config: prepared.config, configHash: prepared.configHash, line: input.line }],
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
    // The run's experiment tracking ends now that the line names the run: its registry entry follows the record.
    if (prepared.config.tracking?.mlflow) {
      await getExternalWorkflowHandle(trackingWorkflowId(pipelineWorkflowId(deployment, runId))).signal(trackingFinishSignal, { status: 'completed', line: input.line });
    }
  }
  return { runId, status: result.status, startedFromRun: prepared.startedFromRun, recorded };
}
