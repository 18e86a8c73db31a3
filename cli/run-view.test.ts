import { describe, expect, it } from 'vitest';
import { type LiveProgress, readHeartbeat } from '../clients/runs';
import type { StageProgress } from '../workflows/types';
import { progressView, runSummary, stageSummary } from './run-view';

const STAGES: LiveProgress['stages'] = ['prepareData', 'sftWarmup', 'rewardModel', 'trustGrpo', 'evaluation'];

function progress(stageIndex: number, current: Partial<StageProgress> | undefined, extra: Partial<LiveProgress> = {}): LiveProgress {
  const stage = STAGES[stageIndex]!;
  return {
    runId: 'r',
    status: 'running',
    stages: STAGES,
    stageIndex,
    current: current && { stage, step: 0, totalSteps: 1, metrics: {}, checkpointKey: undefined, worker: undefined, activity: 'starting', ...current },
    checkpoints: {},
    results: {},
    reportKey: undefined,
    error: undefined,
    live: undefined,
    ...extra,
  };
}

describe('progressView', () => {
  it('a stage without steps (evaluation) says what it is doing, with no counter', () => {
    const view = progressView(progress(4, { activity: 'evaluating the initial weights (baseline)' }, { phase: 'test 37/100' }))!;
    expect(view.total).toBeUndefined();
    expect(view.label).toBe('5/5 evaluation');
    expect(view.detail).toBe('evaluating the initial weights (baseline) · test 37/100');
  });

  it('a stage whose steps have not moved (reward-model annotation) has no 0/400 counter', () => {
    const view = progressView(progress(2, { totalSteps: 400, activity: 'annotating 160 responses' }))!;
    expect(view.total).toBeUndefined();
    expect(view.detail).toBe('annotating 160 responses');
    // Once training moves, the counter appears.
    const training = progressView(progress(2, { totalSteps: 400, activity: 'training steps 1–200' }, { live: { step: 12, totalSteps: 400, loss: 0.5, checkpointKey: undefined } }))!;
    expect(training).toMatchObject({ total: 400, done: 12, current: 13, detail: 'loss 0.500 · training steps 1–200' });
    expect(training.key).not.toBe(view.key); // a new line, not the old one redrawn
  });

  it('the counter shows the RL step in progress, as the stage text does (28 finished: 29/150)', () => {
    const view = progressView(progress(3, { step: 28, totalSteps: 150, activity: 'RL step 29/150' }, { phase: 'rollouts' }))!;
    expect(view).toMatchObject({ total: 150, done: 28, current: 29, detail: 'RL step 29/150 · rollouts' });
  });

  it('a paused stage shows the steps finished and says it is paused', () => {
    const view = progressView(progress(1, { step: 120, totalSteps: 2000, activity: 'paused' }, { status: 'paused' }))!;
    expect(view).toMatchObject({ done: 120, current: 120, detail: 'paused · [paused]' });
  });

  it('a stalled activity leads the line with "no heartbeat for N s from worker W"; the line goes on (same key)', () => {
    const live = { step: 12, totalSteps: 400, loss: 0.5, checkpointKey: undefined };
    const healthy = progressView(progress(1, { totalSteps: 400, activity: 'training steps 1–200' }, { live }))!;
    const stalled = { seconds: 34, worker: 'gpu@host-41-ab12', activity: 'runSftChunk', attempt: 1, heartbeated: true, retrying: false, message: 'no heartbeat for 34 s from worker gpu@host-41-ab12 (runSftChunk, attempt 1)' };
    const view = progressView(progress(1, { totalSteps: 400, activity: 'training steps 1–200' }, { live, stalled }))!;
    expect(view).toMatchObject({ key: healthy.key, done: 12, detail: 'no heartbeat for 34 s from worker gpu@host-41-ab12 (runSftChunk, attempt 1) · loss 0.500 · training steps 1–200' });
    // Without a counter too (data preparation, evaluation).
    expect(progressView(progress(0, { activity: 'generating the dataset' }, { stalled: { ...stalled, activity: 'prepareData', seconds: 16, message: 'no heartbeat for 16 s from worker gpu@host-41-ab12 (prepareData, attempt 1)' } }))!.detail).toBe(
      'no heartbeat for 16 s from worker gpu@host-41-ab12 (prepareData, attempt 1) · generating the dataset',
    );
  });

  it('a count that is complete while the stage still works shows that work instead', () => {
    const view = progressView(progress(2, { step: 400, totalSteps: 400, activity: 'measuring the reward model on held-out annotations' }))!;
    expect(view.total).toBeUndefined();
    expect(view.detail).toBe('measuring the reward model on held-out annotations');
  });
});

describe('readHeartbeat', () => {
  it('reads training steps as live progress and other heartbeats as a phase in words', () => {
    expect(readHeartbeat({ step: 3, totalSteps: 10, loss: 1.5, checkpointKey: 'k' })).toEqual({ live: { step: 3, totalSteps: 10, loss: 1.5, checkpointKey: 'k' }, phase: undefined });
    expect(readHeartbeat({ step: 29, phase: 'rollouts' })).toEqual({ live: undefined, phase: 'rollouts' });
    // A training chunk waiting on a checkpoint: its steps and what it waits for.
    const committing = readHeartbeat({ step: 40, totalSteps: 100, loss: 0.5, checkpointKey: 'k', phase: 'committing the checkpoint of step 40' });
    expect(committing).toEqual({ live: { step: 40, totalSteps: 100, loss: 0.5, checkpointKey: 'k' }, phase: 'committing the checkpoint of step 40' });
    expect(readHeartbeat({ label: 'final', split: 'ood', done: 5, total: 100 }).phase).toBe('ood 5/100');
    expect(readHeartbeat({ temperature: 0.7, samples: 40 }).phase).toBe('40 responses sampled (temperature 0.7)');
    expect(readHeartbeat({ phase: 'annotating', done: 120, total: 4800 }).phase).toBe('annotating 120/4800');
    expect(readHeartbeat('x')).toEqual({ live: undefined, phase: undefined });
  });
});

describe('stageSummary', () => {
  it('one readable line per finished stage', () => {
    expect(stageSummary('sftWarmup', { step: 2000, loss: 0.3, bestValLoss: 0.412 }, 'runs/r/sft/checkpoints/00002000', 252)).toBe(
      '✓ sftWarmup    2000 steps in 4m12s · best val loss 0.412 · train loss 0.300 · checkpoint runs/r/sft/checkpoints/00002000',
    );
    expect(stageSummary('prepareData', { train: 1000, test: 100, ood: 100, reused: 0 }, undefined, 3)).toBe('✓ prepareData  1000 train · 100 test · 100 ood examples in 3s');
    expect(stageSummary('rewardModel', { step: 400, samples: 160, rmMae: 0.1, untrainedMae: 0.3, rmPairwiseAccuracy: 0.8 }, 'runs/r/rm/checkpoints/00000400', undefined)).toBe(
      '✓ rewardModel  400 steps · 160 responses annotated · test MAE 0.100 (untrained 0.300) · pairwise accuracy 80.0 % · checkpoint runs/r/rm/checkpoints/00000400',
    );
    expect(stageSummary('rewardModel', { step: 400, rmPairwiseAccuracy: 0.8, rmMixedGroupAccuracy: 0.55 }, 'k', undefined)).toBe(
      '✓ rewardModel  400 steps · pairwise accuracy 80.0 % · right answers preferred in 55.0 % of mixed groups · checkpoint k',
    );
    expect(stageSummary('rewardModel', { step: 400, rmOnPolicyMixedGroupAccuracy: 0.601, likelihoodOnPolicyMixedGroupAccuracy: 0.662 }, 'k', undefined)).toBe(
      "✓ rewardModel  400 steps · 60.1 % on the policy's own samples (the policy's likelihood: 66.2 %) · checkpoint k",
    );
  });

  it('the evaluation line gives the accuracies of the initial, SFT and final policies, not a metric dump', () => {
    const line = stageSummary(
      'evaluation',
      { testAccuracy: 0.355, oodAccuracy: 0.2, testFormatRate: 0.9, baselineTestAccuracy: 0.31, initialTestAccuracy: 0.02, initialOodAccuracy: 0.01, sftTestAccuracy: 0.31, sftOodAccuracy: 0.15 },
      'runs/r/grpo/checkpoints/00000150',
      62,
    );
    expect(line).toBe('✓ evaluation   in 1m02s · test initial 2.0 % → SFT 31.0 % → final 35.5 % · ood initial 1.0 % → SFT 15.0 % → final 20.0 %');
  });
});

describe('runSummary', () => {
  it('ends a run with the accuracy before and after, the final checkpoint and the report, without metric dumps', () => {
    const result = progress(5, undefined, {
      status: 'completed',
      checkpoints: { sftWarmup: 'runs/r/sft/checkpoints/00000150', evaluation: 'runs/r/sft/checkpoints/00000150' },
      results: { sftWarmup: { step: 150, loss: 0.3 }, evaluation: { testAccuracy: 0.4, oodAccuracy: 0.25, testFormatRate: 1, initialTestAccuracy: 0, initialOodAccuracy: 0, baselineTestAccuracy: 0 } },
      reportKey: 'runs/r/reports/report.md',
    });
    expect(runSummary(result, '/s/runs/r/reports/report.md')).toEqual([
      'accuracy   test initial 0.0 % → final 40.0 %',
      '           ood  initial 0.0 % → final 25.0 %',
      'checkpoint runs/r/sft/checkpoints/00000150',
      'report     /s/runs/r/reports/report.md',
    ]);
  });

  it('runs recorded before the initial policy was evaluated still show their one baseline', () => {
    const result = progress(5, undefined, { status: 'completed', results: { evaluation: { testAccuracy: 0.4, oodAccuracy: 0.25, baselineTestAccuracy: 0.3 } } });
    expect(runSummary(result, undefined)[0]).toBe('accuracy   test baseline 30.0 % → final 40.0 %');
  });
});
