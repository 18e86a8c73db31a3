/** Stage `prepareData`: the run's dataset into storage (CPU queue; idempotent). */
import { cpuActivities } from '../proxies';
import type { StageInput, StageOutput } from '../types';
import { simpleStageProgress } from './progress';

export async function prepareDataStage(input: StageInput): Promise<StageOutput> {
  const acts = cpuActivities(input.profiles);
  const say = simpleStageProgress(input, { stage: 'prepareData', step: 0, totalSteps: 1, metrics: {}, checkpointKey: undefined, worker: undefined });
  await say('generating the dataset');
  const out = await acts.prepareData({ runId: input.runId, config: input.config, storage: input.storage, storeId: input.storeId });
  return {
    stage: 'prepareData',
    checkpointKey: input.inputCheckpointKey,
    artifacts: { ...input.artifacts, dataset: out.manifestKey },
    metrics: { ...out.counts, reused: out.reused ? 1 : 0 },
    stopped: false,
  };
}
