/**
 * Stage `rewardModel`: the thinking reward model (docs/architecture.md §3).
 *
 *  1. sample responses of the SFT policy to training prompts at several temperatures (GPU);
 *  2. annotate them (programmatic judge or LLM judge), balance the ten score bins, hold out prompts (CPU);
 *  3. train the reward model in resumable chunks (`trainInChunks`, GPU);
 *  4. measure it against the held-out annotations, with the untrained model as the baseline (GPU).
 *
 * The policy checkpoint passes through unchanged (the next stage trains the policy); the reward model's
 * checkpoint is the `rewardModel` artifact, its untrained initial weights the `rewardModelInitial` artifact.
 * A stop before or during training ends the stage with what is committed.
 */
import { ApplicationFailure, continueAsNew } from '@temporalio/workflow';
import { cpuActivities, gpuActivities } from '../proxies';
import { STORAGE_STAGES } from '../../common/run-layout';
import type { StageInput, StageOutput } from '../types';
import { type ChunkCarry, type ChunkedTraining, StageControl, finalCheckpoint, freshCarry, trainInChunks } from './chunked';

export interface RewardModelCarry extends ChunkCarry {
  /** Sampling and annotation are done (their outputs are in storage). */
  dataReady: boolean;
  dataMetrics: Record<string, number>;
}

export async function rewardModelStage(input: StageInput, carry?: RewardModelCarry): Promise<StageOutput> {
  const settings = input.config.rewardModel;
  const policyCheckpointKey = input.inputCheckpointKey;
  if (!settings) throw ApplicationFailure.nonRetryable('the rewardModel stage needs a rewardModel section in the run config', 'ConfigError');
  if (!policyCheckpointKey) throw ApplicationFailure.nonRetryable('the rewardModel stage needs a policy checkpoint: run sftWarmup first or set startFrom.checkpointKey', 'ConfigError');
  const state: RewardModelCarry = carry ?? { ...freshCarry(input), dataReady: false, dataMetrics: {} };
  const control = new StageControl(input, 'rewardModel', state, settings.steps);
  const cpu = cpuActivities(input.profiles);
  const gpu = gpuActivities(control.gpuOptions(undefined, false));
  const common = { runId: input.runId, config: input.config, storage: input.storage, storeId: input.storeId, dataRunId: input.artifacts.dataRunId ?? input.runId };

  if (!state.dataReady && !state.stopRequested) {
    await control.report('sampling responses of the SFT policy');
    const sampled = await gpu.sampleRewardData({ ...common, policyCheckpointKey });
    await control.report(`annotating ${sampled.samples} responses`);
    const annotated = await cpu.annotateRewardData(common);
    state.dataReady = true;
    state.dataMetrics = { samples: sampled.samples, trainItems: annotated.train, heldOutItems: annotated.heldOut, meanAnnotation: annotated.meanScore };
  }
  const training: ChunkedTraining = {
    control,
    state,
    storageStage: STORAGE_STAGES.rewardModel,
    totalSteps: settings.steps,
    chunkSteps: settings.chunkSteps,
    chunk: (acts, untilStep) => acts.runRewardModelChunk({ ...common, configHash: input.configHash, policyCheckpointKey, untilStep }),
    continueAsNew: (next) => continueAsNew<typeof rewardModelStage>(input, { ...state, ...next }),
  };
  if (state.dataReady) await trainInChunks(training);
  const rewardModelKey = await finalCheckpoint(training, STORAGE_STAGES.rewardModelInitial);
  let evalMetrics: Record<string, number> = {};
  if (rewardModelKey && state.initialKey) {
    await control.report('measuring the reward model on held-out annotations');
    const measured = await gpu.evaluateRewardModel({ ...common, checkpointKey: rewardModelKey, initialCheckpointKey: state.initialKey, ...(policyCheckpointKey ? { policyCheckpointKey } : {}) });
    const finite = (o: Record<string, number>, prefix: string) => Object.fromEntries(Object.entries(o).filter(([, v]) => Number.isFinite(v)).map(([k, v]) => [`${prefix}${k[0]!.toUpperCase()}${k.slice(1)}`, v]));
    // On the policy's own samples (held-out prompts, RL's temperature): what the trust weight will see first.
    const o = measured.onPolicy;
    const onPolicy = o ? Object.fromEntries(Object.entries({ rmOnPolicyMixedGroupAccuracy: o.trained, untrainedOnPolicyMixedGroupAccuracy: o.untrained, likelihoodOnPolicyMixedGroupAccuracy: o.policyLikelihood ?? Number.NaN, onPolicyMixedGroups: o.mixedGroups }).filter(([, v]) => Number.isFinite(v))) : {};
    evalMetrics = { ...finite({ ...measured.trained }, 'rm'), ...finite({ ...measured.untrained }, 'untrained'), ...onPolicy };
  }
  return {
    stage: 'rewardModel',
    checkpointKey: policyCheckpointKey,
    ...(rewardModelKey ? { ownCheckpointKey: rewardModelKey } : {}),
    artifacts: {
      ...input.artifacts,
      ...(rewardModelKey ? { rewardModel: rewardModelKey } : {}),
      ...(state.initialKey ? { rewardModelInitial: state.initialKey } : {}),
    },
    metrics: { step: state.step, ...state.dataMetrics, ...state.metrics, ...evalMetrics },
    stopped: state.stopRequested,
    ...(state.events?.length ? { events: state.events } : {}),
  };
}
