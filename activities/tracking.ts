/**
 * The experiment-tracking activity (CPU queue): one sync of a run to MLflow from its storage (tracking/sync.ts). A
 * server that cannot be reached is logged once per gap and reported in the result, not thrown, except by the final
 * sync, whose retries (workflows/tracking.ts) wait for the server to come back.
 */
import { log } from '@temporalio/activity';
import type { RunConfig } from '../config/run-config';
import { ApplicationFailure } from '@temporalio/common';
import { MlflowClient, MlflowError } from '../tracking/mlflow';
import { type FinalStatus, MlflowSync, type SyncResult } from '../tracking/sync';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';

export interface SyncTrackingInput extends RunStore {
  config: RunConfig;
  final?: { status: FinalStatus; line?: string | undefined } | undefined;
}

export function createTrackingActivities(deps: { data: RunData }) {
  const { data } = deps;
  return withFailureMapping({
    async syncTracking(input: SyncTrackingInput): Promise<SyncResult> {
      await data.assertStorage(input);
      const settings = input.config.tracking?.mlflow;
      if (!settings) return { reached: true, sent: 0, waiting: 0, mlflowRunId: undefined };
      const sync = new MlflowSync(data.storage, new MlflowClient(settings.uri), {
        info: (message, fields) => {
          log.info(message, fields);
        },
        warn: (message, fields) => {
          log.warn(message, fields);
        },
      });
      try {
        return await sync.sync({ runId: input.runId, config: input.config, final: input.final });
      } catch (err) {
        // The server refused the request (a bad URI, a deleted experiment): retrying the same request cannot help.
        if (err instanceof MlflowError) throw ApplicationFailure.nonRetryable(err.message, 'MlflowError');
        throw err;
      }
    },
  });
}

export type TrackingActivities = ReturnType<typeof createTrackingActivities>;
