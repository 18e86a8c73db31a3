/**
 * Stage `sftWarmup`: SFT in chunks of `sft.chunkSteps` steps, one GPU activity per chunk.
 *
 * - The first chunk goes to the shared GPU queue; each later chunk goes to the queue of the worker that ran the
 *   previous one (it still holds the model in memory). If that worker is gone, the chunk times out waiting to
 *   start there and falls back to the shared queue, where any worker reloads the latest checkpoint.
 * - `pause` and `stop` cancel the running chunk; the activity commits a checkpoint of its current step before it
 *   ends, so nothing is lost. `pause` then waits for `resume`; `stop` ends the stage with that checkpoint.
 * - Every chunk reports progress to the pipeline; after `CHUNKS_PER_RUN` chunks (or when Temporal suggests it)
 *   the workflow continues as new, carrying its state, so its history stays small however long SFT runs.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  CancellationScope,
  TimeoutFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import type { SftChunkOutput, TrainingActivities } from '../../activities/training';
import { toActivityOptions } from '../../temporal.config';
import type { BestTracker } from '../../training/sft';
import { type StageInput, type StageOutput, type StageProgress, pauseSignal, resumeSignal, stageProgressQuery, stageProgressSignal, stopSignal } from '../types';

/** Chunks per workflow run before continue-as-new (a safety bound; Temporal's suggestion usually comes later). */
export const CHUNKS_PER_RUN = 100;

export interface SftCarry {
  step: number;
  checkpointKey: string | undefined;
  initialKey: string | undefined;
  bestKey: string | undefined;
  tracker: BestTracker | undefined;
  /** The queue of the worker holding the model, if any. */
  queue: string | undefined;
  worker: string | undefined;
  paused: boolean;
  stopRequested: boolean;
  done: boolean;
  stoppedEarly: boolean;
  metrics: Record<string, number>;
  chunksThisRun: number;
}

function isStartTimeout(err: unknown): boolean {
  return err instanceof ActivityFailure && err.cause instanceof TimeoutFailure && err.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
}

export async function sftWarmupStage(input: StageInput, carry?: SftCarry): Promise<StageOutput> {
  const settings = input.config.sft;
  const state: SftCarry = carry ?? {
    step: 0,
    checkpointKey: input.inputCheckpointKey,
    initialKey: undefined,
    bestKey: undefined,
    tracker: undefined,
    queue: undefined,
    worker: undefined,
    paused: false,
    stopRequested: input.stopped,
    done: false,
    stoppedEarly: false,
    metrics: {},
    chunksThisRun: 0,
  };
  let running: CancellationScope | undefined;
  let activity = 'starting';
  const progress = (): StageProgress => ({
    stage: 'sftWarmup',
    step: state.step,
    totalSteps: settings.steps,
    metrics: state.metrics,
    checkpointKey: state.checkpointKey,
    worker: state.worker,
    activity,
  });
  setHandler(stageProgressQuery, progress);
  setHandler(pauseSignal, () => {
    state.paused = true;
    running?.cancel();
  });
  setHandler(resumeSignal, () => {
    state.paused = false;
  });
  setHandler(stopSignal, () => {
    state.stopRequested = true;
    running?.cancel();
  });
  const parent = getExternalWorkflowHandle(input.parentWorkflowId);
  const report = (what: string) => {
    activity = what;
    return parent.signal(stageProgressSignal, progress());
  };

  const gpu = toActivityOptions(input.profiles.gpu);
  const shared = proxyActivities<TrainingActivities>({ ...gpu, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED });
  const cpu = proxyActivities<TrainingActivities>(toActivityOptions(input.profiles.cpu));
  const chunkInput = { runId: input.runId, config: input.config, configHash: input.configHash, storage: input.storage };
  const absorb = (out: SftChunkOutput) => {
    state.step = out.step;
    state.checkpointKey = out.checkpointKey;
    state.initialKey = out.initialCheckpointKey;
    state.bestKey = out.bestCheckpointKey;
    state.tracker = out.tracker;
    state.queue = out.workerQueue;
    state.worker = out.worker;
    state.done = out.done;
    state.stoppedEarly = out.stoppedEarly;
    state.metrics = out.metrics;
  };

  while (!state.done && !state.stopRequested) {
    if (state.paused) {
      await report('paused');
      await condition(() => !state.paused || state.stopRequested);
      continue;
    }
    const untilStep = Math.min(settings.steps, (Math.floor(state.step / settings.chunkSteps) + 1) * settings.chunkSteps);
    const acts = state.queue
      ? proxyActivities<TrainingActivities>({
          ...gpu,
          taskQueue: state.queue,
          scheduleToStartTimeout: input.profiles.pinnedScheduleToStartMs,
          cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        })
      : shared;
    await report(`training steps ${state.step + 1}–${untilStep}${state.queue ? '' : ' (any GPU worker)'}`);
    try {
      const out = await CancellationScope.cancellable(async () => {
        running = CancellationScope.current();
        return acts.runSftChunk({ ...chunkInput, untilStep });
      });
      absorb(out);
    } catch (err) {
      if (isCancellation(err) && (state.paused || state.stopRequested)) {
        // The chunk committed its current step before ending: continue (or stop) from there.
        const latest = await cpu.latestCheckpoint({ runId: input.runId, stage: 'sft', storage: input.storage });
        if (latest) {
          state.step = latest.step;
          state.checkpointKey = latest.key;
          state.tracker = latest.tracker;
        }
      } else if (state.queue && isStartTimeout(err)) {
        state.queue = undefined; // that worker is gone: any worker reloads from storage
      } else {
        throw err;
      }
    } finally {
      running = undefined;
    }
    state.chunksThisRun++;
    await report(state.done ? 'done' : 'chunk committed');
    if (!state.done && !state.stopRequested && (state.chunksThisRun >= CHUNKS_PER_RUN || workflowInfo().continueAsNewSuggested)) {
      await continueAsNew<typeof sftWarmupStage>(input, { ...state, chunksThisRun: 0 });
    }
  }
  // Normal end: the best checkpoint by validation loss. Stopped: the model as it is now (just committed).
  let checkpointKey = state.stopRequested ? state.checkpointKey : (state.bestKey ?? state.checkpointKey);
  if (!checkpointKey) {
    // Stopped before the first chunk committed anything: the newest of SFT or the initial weights, if any.
    const latest =
      (await cpu.latestCheckpoint({ runId: input.runId, stage: 'sft', storage: input.storage })) ??
      (await cpu.latestCheckpoint({ runId: input.runId, stage: 'init', storage: input.storage }));
    checkpointKey = latest?.key;
  }
  return {
    stage: 'sftWarmup',
    checkpointKey,
    artifacts: { ...input.artifacts, ...(state.initialKey ? { initial: state.initialKey } : {}) },
    metrics: { step: state.step, ...state.metrics, ...(state.stoppedEarly ? { stoppedEarly: 1 } : {}) },
    stopped: state.stopRequested,
  };
}
