/**
 * `trackRun`: a run's experiment tracking, beside its pipeline (which starts it, abandoned on close, at
 * `trackingWorkflowId`). Every `tracking.mlflow.syncSeconds` it has the `syncTracking` activity send what the run
 * stored since the last sync (one attempt: a server that is away is a gap, filled by a later sync). The `finish`
 * signal (the pipeline's status at its end; a model line's launcher sends it after recording the run, with the line)
 * starts the final sync: the rest, the report, the run's end and a line's registry entry, retried until the server
 * answers, for up to a week. Training never waits for MLflow.
 */
import { ActivityFailure, condition, continueAsNew, defineSignal, log, setHandler } from '@temporalio/workflow';
import type { FinalStatus } from '../tracking/sync';
import { cpuActivities } from './proxies';
import type { PipelineInput } from './types';

export interface TrackRunInput extends Pick<PipelineInput, 'runId' | 'config' | 'storage' | 'storeId' | 'profiles'> {
  /** Set by a continued execution that already got its `finish` signal. */
  finish?: TrackingFinish | undefined;
}

export interface TrackingFinish {
  status: FinalStatus;
  /** The model line the run was recorded under (its registry entry is made then). */
  line?: string | undefined;
}

export const trackingFinishSignal = defineSignal<[TrackingFinish]>('trackingFinish');

/** Syncs per execution before it continues as new (keeps its history short over a weeks-long run). */
const SYNCS_PER_EXECUTION = 500;

export async function trackRun(input: TrackRunInput): Promise<void> {
  let finish = input.finish;
  setHandler(trackingFinishSignal, (f) => {
    finish ??= f;
  });
  const run = { runId: input.runId, storage: input.storage, storeId: input.storeId, config: input.config };
  const every = 1000 * (input.config.tracking?.mlflow?.syncSeconds ?? 30);
  const once = cpuActivities(input.profiles, { retry: { maximumAttempts: 1 }, startToCloseTimeout: '10 minutes' });
  for (let i = 0; !finish; i++) {
    if (i === SYNCS_PER_EXECUTION) await continueAsNew<typeof trackRun>({ ...input, finish });
    try {
      await once.syncTracking(run);
    } catch (err) {
      // Not the server being away (the activity reports that itself): say so and go on with the next sync.
      if (!(err instanceof ActivityFailure)) throw err;
      log.warn('tracking sync failed; trying again at the next sync', { runId: input.runId, error: err.cause?.message ?? err.message });
    }
    if (await condition(() => finish !== undefined, every)) break;
  }
  const final = cpuActivities(input.profiles, {
    startToCloseTimeout: '30 minutes',
    scheduleToCloseTimeout: '7 days',
    retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '5 minutes' },
  });
  await final.syncTracking({ ...run, final: finish });
}
