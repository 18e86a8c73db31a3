/**
 * Stage `sftWarmup`: SFT in chunks of `sft.chunkSteps` steps, one GPU activity per chunk (`trainInChunks`:
 * worker pinning with fallback, pause/stop, continue-as-new). Its output is the best checkpoint by validation
 * loss (or, when stopped, the model as it is); the untrained initial weights are left as the `initial` artifact.
 */
import { continueAsNew } from '@temporalio/workflow';
import { STORAGE_STAGES } from '../../common/run-layout';
import type { StageInput, StageOutput } from '../types';
import { type ChunkCarry, type ChunkedTraining, StageControl, finalCheckpoint, freshCarry, trainInChunks } from './chunked';

export { CHUNKS_PER_RUN } from './chunked';
export type SftCarry = ChunkCarry;

export async function sftWarmupStage(input: StageInput, carry?: SftCarry): Promise<StageOutput> {
  const settings = input.config.sft;
  const state: SftCarry = carry ?? { ...freshCarry(input), checkpointKey: input.inputCheckpointKey };
  const control = new StageControl(input, 'sftWarmup', state, settings.steps);
  const chunkInput = { runId: input.runId, config: input.config, configHash: input.configHash, storage: input.storage, storeId: input.storeId };
  const training: ChunkedTraining = {
    control,
    state,
    storageStage: STORAGE_STAGES.sft,
    totalSteps: settings.steps,
    chunkSteps: settings.chunkSteps,
    chunk: (acts, untilStep) => acts.runSftChunk({ ...chunkInput, untilStep }),
    continueAsNew: (next) => continueAsNew<typeof sftWarmupStage>(input, next),
  };
  await trainInChunks(training);
  const checkpointKey = await finalCheckpoint(training, STORAGE_STAGES.initialPolicy);
  return {
    stage: 'sftWarmup',
    checkpointKey,
    artifacts: { ...input.artifacts, ...(state.initialKey ? { initial: state.initialKey } : {}) },
    metrics: { step: state.step, ...state.metrics, ...(state.stoppedEarly ? { stoppedEarly: 1 } : {}) },
    stopped: state.stopRequested,
    ...(state.events?.length ? { events: state.events } : {}),
  };
}
