/**
 * The workflow side of resumable training in chunks, shared by the supervised stages (SFT warmup, reward model):
 *
 * - The first chunk goes to the shared GPU queue; each later chunk goes to the queue of the worker that ran the
 *   previous one (it still holds the model in memory). If that worker is gone, the chunk times out waiting to
 *   start there and falls back to the shared queue, where any worker reloads the latest checkpoint.
 * - `pause` and `stop` cancel the running chunk; the activity commits a checkpoint of its current step before it
 *   ends, so nothing is lost. `pause` then waits for `resume`; `stop` ends the loop with that checkpoint.
 * - Every chunk updates the stage's progress (its `stageProgress` query); after `CHUNKS_PER_RUN` chunks (or when
 *   Temporal suggests it) the stage continues as new with its carried state, so its history stays small however
 *   long training runs.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  type ActivityOptions,
  CancellationScope,
  TimeoutFailure,
  condition,
  isCancellation,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { TimeoutType } from '@temporalio/common';
import type { RunEvent } from '../../activities/checkpoint-recovery';
import type { ChunkOutput } from '../../activities/chunk';
import type { StageName } from '../../config/stages';
import { toActivityOptions } from '../../temporal.config';
import { type GpuActivities, cpuActivities, gpuActivities } from '../proxies';
import type { BestTracker } from '../../training/sft';
import { type StageInput, type StageProgress, pauseSignal, resumeSignal, stageProgressQuery, stopSignal } from '../types';
import { tellPipeline } from './progress';

/** Chunks per workflow run before continue-as-new (a safety bound; Temporal's suggestion usually comes later). */
export const CHUNKS_PER_RUN = 100;

export interface ChunkCarry {
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
  /** Corrupt checkpoints quarantined so far (absent in carries of older histories). */
  events?: RunEvent[];
}

export function freshCarry(input: StageInput): ChunkCarry {
  return {
    step: 0,
    checkpointKey: undefined,
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
}

export function isStartTimeout(err: unknown): boolean {
  return err instanceof ActivityFailure && err.cause instanceof TimeoutFailure && err.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
}

/** Stage controls and progress reporting over a carried state (signals, the `stageProgress` query). */
export class StageControl {
  /** The running cancellable activity scope, if any: pause and stop cancel it. */
  running: CancellationScope | undefined;
  /**
   * Whether pause or stop cancelled the running chunk. Kept apart from `state.paused`: a resume can arrive before
   * the cancelled chunk has finished committing, and its cancellation must still be taken as the pause it was.
   */
  cancelledRunning = false;
  activity = 'starting';

  constructor(
    readonly input: StageInput,
    readonly stage: StageName,
    readonly state: {
      step: number;
      paused: boolean;
      stopRequested: boolean;
      metrics: Record<string, number>;
      checkpointKey: string | undefined;
      worker: string | undefined;
      events?: RunEvent[];
    },
    readonly totalSteps: number,
  ) {
    setHandler(stageProgressQuery, () => this.progress());
    setHandler(pauseSignal, () => {
      this.state.paused = true;
      this.cancelRunning();
    });
    setHandler(resumeSignal, () => {
      this.state.paused = false;
    });
    setHandler(stopSignal, () => {
      this.state.stopRequested = true;
      this.cancelRunning();
    });
  }

  private cancelRunning(): void {
    if (!this.running) return;
    this.cancelledRunning = true;
    this.running.cancel();
  }

  progress(): StageProgress {
    const s = this.state;
    return {
      stage: this.stage,
      step: s.step,
      totalSteps: this.totalSteps,
      metrics: s.metrics,
      checkpointKey: s.checkpointKey,
      worker: s.worker,
      activity: this.activity,
      ...(s.events?.length ? { events: s.events } : {}),
    };
  }

  /** Keeps events an activity reported (quarantined checkpoints) for the stage's progress and output. */
  record(events: RunEvent[] | undefined): void {
    if (events?.length) this.state.events = [...(this.state.events ?? []), ...events];
  }

  /** Records what the stage is doing now (the `stageProgress` query answers it). */
  report(what: string): Promise<void> {
    this.activity = what;
    return tellPipeline(this.input, this.progress());
  }

  /** Waits while paused (unless a stop comes). */
  async waitWhilePaused(): Promise<void> {
    if (!this.state.paused) return;
    await this.report('paused');
    await condition(() => !this.state.paused || this.state.stopRequested);
  }

  /** GPU activity options: on the given worker's own queue (with the start timeout that detects a lost worker), else shared. */
  gpuOptions(queue: string | undefined, cancellable: boolean): ActivityOptions {
    const gpu = toActivityOptions(this.input.profiles.gpu);
    return {
      ...gpu,
      ...(queue ? { taskQueue: queue, scheduleToStartTimeout: this.input.profiles.pinnedScheduleToStartMs } : {}),
      ...(cancellable ? { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED } : {}),
    };
  }
}

export interface ChunkedTraining {
  control: StageControl;
  state: ChunkCarry;
  /** Storage stage name of the checkpoints (`sft`, `rm`). */
  storageStage: string;
  totalSteps: number;
  chunkSteps: number;
  /** Runs one chunk up to `untilStep` with activities bound to the chosen queue. */
  chunk(acts: GpuActivities, untilStep: number): Promise<ChunkOutput>;
  /** Continues the stage as new with the carried state. */
  continueAsNew(state: ChunkCarry): Promise<never>;
}

/** The chunk loop; returns when training is done, stopped, or stopped early. */
export async function trainInChunks(t: ChunkedTraining): Promise<void> {
  const { control, state } = t;
  const cpu = cpuActivities(control.input.profiles);
  const absorb = (out: ChunkOutput) => {
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
    control.record(out.events);
  };
  while (!state.done && !state.stopRequested) {
    if (state.paused) {
      await control.waitWhilePaused();
      continue;
    }
    const untilStep = Math.min(t.totalSteps, (Math.floor(state.step / t.chunkSteps) + 1) * t.chunkSteps);
    const acts = gpuActivities(control.gpuOptions(state.queue, true));
    await control.report(`training steps ${state.step + 1}–${untilStep}${state.queue ? '' : ' (any GPU worker)'}`);
    try {
      const out = await CancellationScope.cancellable(async () => {
        control.running = CancellationScope.current();
        return t.chunk(acts, untilStep);
      });
      absorb(out);
    } catch (err) {
      if (isCancellation(err) && (control.cancelledRunning || state.paused || state.stopRequested)) {
        // The chunk committed its current step before ending: continue (or stop) from there.
        const latest = await cpu.latestCheckpoint({ runId: control.input.runId, stage: t.storageStage, storage: control.input.storage, storeId: control.input.storeId });
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
      control.running = undefined;
      control.cancelledRunning = false;
    }
    state.chunksThisRun++;
    await control.report(state.done ? 'done' : 'chunk committed');
    if (!state.done && !state.stopRequested && (state.chunksThisRun >= CHUNKS_PER_RUN || workflowInfo().continueAsNewSuggested)) {
      await t.continueAsNew({ ...state, chunksThisRun: 0 });
    }
  }
}

/** The stage's output checkpoint: the best by validation loss, or (stopped) the model as it is now. */
export async function finalCheckpoint(t: ChunkedTraining, initStage: string): Promise<string | undefined> {
  const { state, control } = t;
  const key = state.stopRequested ? state.checkpointKey : (state.bestKey ?? state.checkpointKey);
  if (key) return key;
  // Stopped before the first chunk committed anything: the newest of the stage or its initial weights, if any.
  const cpu = cpuActivities(control.input.profiles);
  const where = { runId: control.input.runId, storage: control.input.storage, storeId: control.input.storeId };
  const latest = (await cpu.latestCheckpoint({ ...where, stage: t.storageStage })) ?? (await cpu.latestCheckpoint({ ...where, stage: initStage }));
  return latest?.key;
}
