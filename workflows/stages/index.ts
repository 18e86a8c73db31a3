/**
 * The pipeline's stages, in order, and which child workflow runs each. Adding a stage = writing its workflow
 * (input `StageInput`, output `StageOutput`), adding its name to `STAGE_NAMES` in the run config, and one line here.
 */
import type { RunConfig } from '../../config/run-config';
import type { StageName } from '../../config/stages';
import type { StageInput, StageOutput } from '../types';
import { evaluationStage } from './evaluation';
import { prepareDataStage } from './prepare-data';
import { rewardModelStage } from './reward-model';
import { sftWarmupStage } from './sft';
import { trustGrpoStage } from './trust-grpo';

export const STAGE_WORKFLOWS: Record<StageName, (input: StageInput) => Promise<StageOutput>> = {
  prepareData: prepareDataStage,
  sftWarmup: sftWarmupStage,
  rewardModel: rewardModelStage,
  trustGrpo: trustGrpoStage,
  evaluation: evaluationStage,
};

/** Stages that train; a stopped run skips those it has not started. */
export const TRAINING_STAGES: ReadonlySet<StageName> = new Set<StageName>(['sftWarmup', 'rewardModel', 'trustGrpo']);

/** Stages that run only when the config has their section. */
const OPTIONAL_STAGES: Partial<Record<StageName, (config: RunConfig) => boolean>> = {
  rewardModel: (config) => config.rewardModel !== undefined,
  trustGrpo: (config) => config.rl !== undefined,
};

/**
 * The stages a config runs, in pipeline order, from `startFrom.stage` on (a stage whose section is absent is left
 * out). Data preparation still runs before a later start unless `startFrom.dataRunId` names a dataset to reuse:
 * a run that continues from a checkpoint (retraining) trains on its own data.
 */
export function pipelineStages(config: RunConfig, order: readonly StageName[]): StageName[] {
  const chosen = (config.stages ?? order).filter((stage) => OPTIONAL_STAGES[stage]?.(config) ?? true);
  const from = config.startFrom ? order.indexOf(config.startFrom.stage) : 0;
  const ownData = config.startFrom !== undefined && config.startFrom.dataRunId === undefined;
  return order.filter((stage, i) => chosen.includes(stage) && (i >= from || (stage === 'prepareData' && ownData)));
}
