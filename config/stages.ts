/** The pipeline's stage names, in order (pure: workflow code imports it). */
export const STAGE_NAMES = ['prepareData', 'sftWarmup', 'rewardModel', 'trustGrpo', 'evaluation'] as const;
export type StageName = (typeof STAGE_NAMES)[number];
