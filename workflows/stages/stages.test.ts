import { describe, expect, it } from 'vitest';
import { RUN_PRESETS, parseRunConfig } from '../../config/run-config';
import { STAGE_NAMES } from '../../config/stages';
import { pipelineStages } from './index';

const ci = () => parseRunConfig(RUN_PRESETS.ci, 'ci');

describe('pipelineStages', () => {
  it('runs every stage the config has sections for', () => {
    expect(pipelineStages(ci(), STAGE_NAMES)).toEqual(['prepareData', 'sftWarmup', 'rewardModel', 'trustGrpo', 'evaluation']);
  });

  it('prepares fresh data before a later start, unless a dataset is reused', () => {
    const fromCheckpoint = { ...ci(), startFrom: { stage: 'trustGrpo' as const, checkpointKey: 'runs/a/sft/checkpoints/00000010', rewardModelKey: 'runs/a/rm/checkpoints/00000010' } };
    expect(pipelineStages(fromCheckpoint, STAGE_NAMES)).toEqual(['prepareData', 'trustGrpo', 'evaluation']);
    const reusing = { ...fromCheckpoint, startFrom: { ...fromCheckpoint.startFrom, dataRunId: 'a' } };
    expect(pipelineStages(reusing, STAGE_NAMES)).toEqual(['trustGrpo', 'evaluation']);
  });
});
