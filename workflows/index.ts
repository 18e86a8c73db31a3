/**
 * The workflow bundle's entry point: every workflow a worker registers, exported by name.
 */
export { modelLineRun } from './model-line';
export { trainingPipeline } from './pipeline';
export { trackRun, trackingFinishSignal } from './tracking';
export { evaluationStage } from './stages/evaluation';
export { prepareDataStage } from './stages/prepare-data';
export { rewardModelStage } from './stages/reward-model';
export { sftWarmupStage } from './stages/sft';
export { trustGrpoStage } from './stages/trust-grpo';
export { stackSmoke, smokeProgressQuery } from './smoke';
export { pauseSignal, progressQuery, resumeSignal, stageProgressQuery, stageProgressSignal, stopSignal } from './types';
