/**
 * How a stage tells the world what it is doing. Since the `progress-by-query` patch a stage only answers its
 * `stageProgress` query, and clients (`runProgress`) ask the running stage directly. Before it, every report was
 * also a signal to the pipeline, which the stage awaited: one more server round trip and workflow task on each
 * side per report, on the critical path between activities (about a third of a `ci` run's workflow tasks).
 * Histories recorded before the patch still replay: there, `tellPipeline` sends the signal as it did.
 */
import { getExternalWorkflowHandle, patched, setHandler } from '@temporalio/workflow';
import { type StageInput, type StageProgress, stageProgressQuery, stageProgressSignal } from '../types';

const PROGRESS_BY_QUERY = 'progress-by-query';

/** In histories from before `progress-by-query`: signals the pipeline, as those runs did. Otherwise nothing. */
export async function tellPipeline(input: StageInput, progress: StageProgress): Promise<void> {
  if (patched(PROGRESS_BY_QUERY)) return;
  await getExternalWorkflowHandle(input.parentWorkflowId).signal(stageProgressSignal, progress);
}

/**
 * Progress of a stage without steps (data preparation, evaluation): answers `stageProgress` with the current
 * activity; `say` updates it (and, in old histories, tells the pipeline).
 */
export function simpleStageProgress(input: StageInput, base: Omit<StageProgress, 'activity'>): (activity: string) => Promise<void> {
  let current: StageProgress = { ...base, activity: 'starting' };
  setHandler(stageProgressQuery, () => current);
  return (activity: string) => {
    current = { ...current, activity };
    return tellPipeline(input, current);
  };
}
