/**
 * `trainingPipeline`: a run, stage by stage, each stage a child workflow (`stages/`), each stage's output
 * checkpoint the next one's input. Controls: `pause`, `resume`, `stop` signals (forwarded to the running
 * stage); watching: the `progress` query. A run can start at any stage from a given checkpoint, and a failed run can
 * be continued by a new execution of the same id (`input.resumed`: the stages it completed are not run again).
 */
import { CancellationScope, ParentClosePolicy, getExternalWorkflowHandle, isCancellation, setHandler, startChild, workflowInfo } from '@temporalio/workflow';
import { stageWorkflowId, trackingWorkflowId } from '../common/run-layout';
import { STAGE_NAMES } from '../config/stages';
import { STAGE_WORKFLOWS, TRAINING_STAGES, pipelineStages } from './stages';
import { type TrackingFinish, type trackRun, trackingFinishSignal } from './tracking';
import {
  type PipelineInput,
  type RunProgress,
  pauseSignal,
  progressQuery,
  resumeSignal,
  stageProgressSignal,
  stopSignal,
} from './types';

export async function trainingPipeline(input: PipelineInput): Promise<RunProgress> {
  const stages = pipelineStages(input.config, STAGE_NAMES);
  const progress: RunProgress = {
    runId: input.runId,
    status: 'running',
    stages,
    stageIndex: 0,
    current: undefined,
    checkpoints: {},
    results: {},
    reportKey: undefined,
    error: undefined,
  };
  let child: string | undefined;
  let paused = false;
  let stopRequested = false;
  const forward = async (signal: typeof pauseSignal | typeof resumeSignal | typeof stopSignal) => {
    if (child) await getExternalWorkflowHandle(child).signal(signal);
  };
  setHandler(progressQuery, () => progress);
  // Runs recorded before the `progress-by-query` patch: their stages signalled progress here. Newer stages answer
  // their own `stageProgress` query, which `runProgress` asks.
  setHandler(stageProgressSignal, (p) => {
    progress.current = p;
  });
  setHandler(pauseSignal, async () => {
    paused = true;
    if (progress.status === 'running') progress.status = 'paused';
    await forward(pauseSignal);
  });
  setHandler(resumeSignal, async () => {
    paused = false;
    if (progress.status === 'paused') progress.status = stopRequested ? 'stopping' : 'running';
    await forward(resumeSignal);
  });
  setHandler(stopSignal, async () => {
    stopRequested = true;
    progress.status = 'stopping';
    await forward(stopSignal);
  });
  const pipelineId = workflowInfo().workflowId;
  /** The stages in order; the artifacts of the last one. */
  const runStages = async (): Promise<Record<string, string>> => {
    let checkpointKey = input.config.startFrom?.checkpointKey;
    const from = input.config.startFrom;
    let artifacts: Record<string, string> = {
      ...(from?.rewardModelKey ? { rewardModel: from.rewardModelKey, rewardModelInitial: from.rewardModelKey } : {}),
      ...(from?.dataRunId ? { dataRunId: from.dataRunId } : {}),
    };
    // A resumed execution (`input.resumed`) takes the outputs of the stages the failed one completed instead of
    // running them again; the stage it failed in starts again and resumes from its newest intact checkpoint.
    const completed = new Map((input.resumed?.completed ?? []).map((out) => [out.stage, out]));
    if (input.resumed?.events.length) progress.events = [...input.resumed.events];
    for (const [index, stage] of stages.entries()) {
      progress.stageIndex = index;
      if (stopRequested && TRAINING_STAGES.has(stage)) continue;
      let out = completed.get(stage);
      if (!out) {
        const handle = await startChild(STAGE_WORKFLOWS[stage], {
          workflowId: stageWorkflowId(pipelineId, stage),
          taskQueue: input.profiles.cpu.taskQueue,
          parentClosePolicy: ParentClosePolicy.TERMINATE,
          args: [{ ...input, resumed: undefined, stage, parentWorkflowId: pipelineId, inputCheckpointKey: checkpointKey, artifacts, stopped: stopRequested }],
        });
        child = handle.workflowId;
        if (paused) await handle.signal(pauseSignal);
        if (stopRequested) await handle.signal(stopSignal);
        out = await handle.result();
        child = undefined;
      }
      if (out.events?.length) progress.events = [...(progress.events ?? []), ...out.events];
      checkpointKey = out.checkpointKey ?? checkpointKey;
      artifacts = out.artifacts;
      const produced = out.ownCheckpointKey ?? out.checkpointKey;
      if (produced) progress.checkpoints[stage] = produced;
      progress.results[stage] = out.metrics;
      if (out.stopped) stopRequested = true;
    }
    return artifacts;
  };
  // Experiment tracking runs beside the pipeline and outlives it (it sends the last metrics and the report).
  let tracking: string | undefined;
  if (input.config.tracking?.mlflow) {
    const resumes = (input.resumed?.events ?? []).filter((e) => e.kind === 'resumed').length;
    const handle = await startChild<typeof trackRun>('trackRun', {
      workflowId: trackingWorkflowId(pipelineId, resumes),
      taskQueue: input.profiles.cpu.taskQueue,
      parentClosePolicy: ParentClosePolicy.ABANDON,
      args: [{ runId: input.runId, config: input.config, storage: input.storage, storeId: input.storeId, profiles: input.profiles }],
    });
    tracking = handle.workflowId;
  }
  const finishTracking = async (finish: TrackingFinish) => {
    const id = tracking;
    if (id) await CancellationScope.nonCancellable(() => getExternalWorkflowHandle(id).signal(trackingFinishSignal, finish));
  };
  let artifacts: Record<string, string>;
  try {
    artifacts = await runStages();
  } catch (err) {
    await finishTracking({ status: isCancellation(err) ? 'cancelled' : 'failed' });
    throw err;
  }
  progress.stageIndex = stages.length;
  progress.reportKey = artifacts.report;
  progress.status = 'completed';
  // A model line's launcher ends the tracking once it recorded the run (the registry follows the line's record).
  if (!input.line) await finishTracking({ status: 'completed' });
  return progress;
}
