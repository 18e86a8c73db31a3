/** Stage `prepareData`: the run's dataset into storage (CPU queue; idempotent). */
import { cpuActivities } from '../proxies';
import type { StageInput, StageOutput } from '../types';
import { simpleStageProgress } from './progress';

/**
 * How long reading a real dataset (`data.source`) may take: every row's images are fetched and decoded to check
 * them, which can take hours for a large set. The activity heartbeats as it reads, so a lost worker is still
 * noticed within the CPU profile's heartbeat timeout.
 */
const READ_DATASET_TIMEOUT = '12h';

export async function prepareDataStage(input: StageInput): Promise<StageOutput> {
  const sourced = input.config.data.source !== undefined;
  const acts = cpuActivities(input.profiles, sourced ? { startToCloseTimeout: READ_DATASET_TIMEOUT } : {});
  const say = simpleStageProgress(input, { stage: 'prepareData', step: 0, totalSteps: 1, metrics: {}, checkpointKey: undefined, worker: undefined });
  await say(sourced ? `reading the dataset at ${input.config.data.source!.location}` : 'generating the dataset');
  const out = await acts.prepareData({ runId: input.runId, config: input.config, storage: input.storage, storeId: input.storeId });
  return {
    stage: 'prepareData',
    checkpointKey: input.inputCheckpointKey,
    artifacts: { ...input.artifacts, dataset: out.manifestKey },
    metrics: { ...out.counts, reused: out.reused ? 1 : 0, ...(out.read ? { rowsRead: out.read.read, badRows: out.read.bad } : {}) },
    stopped: false,
  };
}
