import { describe, expect, it } from 'vitest';
import type { EvalReport, FamilySummary } from '../evaluation/evaluate';
import { FAMILIES } from '../tasks/types';
import { type PolicyEvaluation, type RunReportInput, buildRunReport } from './run-report';

function evalReport(split: string, accuracy: number): EvalReport {
  const s = (a: number): FamilySummary => ({ examples: 10, accuracy: a, meanReward: a, formatRate: Math.min(1, a + 0.5), meanLength: 30, passAtK: Math.min(1, a + 0.1) });
  return { split, k: 4, overall: s(accuracy), byFamily: Object.fromEntries(FAMILIES.map((f) => [f, s(accuracy)])), examples: [] };
}

const policy = (key: string, name: string, test: number, ood: number): PolicyEvaluation => ({
  key,
  name,
  checkpointKey: `runs/r1/${key}/checkpoints/00000001`,
  test: evalReport('test', test),
  ood: evalReport('ood', ood),
});

function input(overrides: Partial<RunReportInput> = {}): RunReportInput {
  return {
    runId: 'r1',
    preset: 'tiny',
    parameters: 123_456,
    trainExamples: 1000,
    times: {
      totalSeconds: 29 * 60 + 3,
      stages: [
        { stage: 'prepareData', startedAt: '2026-12-06T12:00:00.000Z', endedAt: '2026-12-06T12:00:04.000Z', seconds: 4 },
        { stage: 'sftWarmup', startedAt: '2026-12-06T12:00:04.000Z', endedAt: '2026-12-06T12:04:16.000Z', seconds: 252 },
        { stage: 'trustGrpo', startedAt: '2026-12-06T12:04:16.000Z', endedAt: '2026-12-06T12:28:02.000Z', seconds: 1426 },
        { stage: 'evaluation', startedAt: '2026-12-06T12:28:02.000Z', endedAt: undefined, seconds: 61 },
      ],
    },
    sft: {
      steps: 40,
      seconds: 240,
      stoppedEarly: false,
      bestValLoss: 0.412,
      bestStep: 40,
      history: Array.from({ length: 40 }, (_, i) => ({ step: i + 1, loss: 2 - i / 40, lr: 1e-3, gradNorm: 1, tokens: 100 })),
      validations: [{ step: 40, valLoss: 0.412 }],
    },
    policies: [policy('initial', 'initial', 0.02, 0.01), policy('sft', 'after SFT', 0.31, 0.15), policy('final', 'after trust-grpo', 0.355, 0.2)],
    ...overrides,
  };
}

describe('run report', () => {
  it("reports the run's real wall time per stage, not the evaluation stage's own", () => {
    const report = buildRunReport(input());
    expect(report.markdown).toContain("29 min 03 s from the pipeline's start to this report");
    expect(report.markdown).toContain('| sftWarmup | 12:00:04 | 12:04:16 | 4 min 12 s |');
    expect(report.markdown).toContain('| trustGrpo | 12:04:16 | 12:28:02 | 23 min 46 s |');
    expect(report.markdown).toContain('| evaluation | 12:28:02 | this report | 1 min 01 s |');
    expect(report.markdown).not.toContain('Wall time with evaluations');
    expect(report.json.times).toMatchObject({ totalSeconds: 1743 });
  });

  it('puts the accuracy of the initial policy (before SFT) beside SFT and the final policy', () => {
    const report = buildRunReport(input());
    expect(report.markdown).toContain('| split | family | n | accuracy initial | accuracy after SFT | accuracy after trust-grpo | format initial | format after SFT | format after trust-grpo |');
    expect(report.markdown).toContain('| test | all | 10 | 2.0 % | 31.0 % | 35.5 % | 52.0 % | 81.0 % | 85.5 % |');
    expect(report.markdown).toContain('| ood | counting | 10 | 1.0 % | 15.0 % | 20.0 % |');
    expect(report.json).toMatchObject({
      evaluations: { initial: { test: { overall: { accuracy: 0.02 } } }, sft: { test: { overall: { accuracy: 0.31 } } }, final: { ood: { overall: { accuracy: 0.2 } } } },
      after: { test: { overall: { accuracy: 0.355 } } },
      checkpointKey: 'runs/r1/final/checkpoints/00000001',
    });
    expect(report.plots.map((p) => p.name)).toEqual(['loss', 'accuracy-test', 'accuracy-ood']);
    // One bar series per policy.
    expect(report.plots[1]!.chart.svg).toContain('after SFT');
    expect(report.plots[1]!.chart.svg).toContain('initial');
  });

  it('says why when the stage times could not be read, and leaves out SFT when the run did not train it', () => {
    const report = buildRunReport(input({ times: { unavailable: 'no Temporal client' }, sft: { ...input().sft, steps: 0, history: [], validations: [] }, policies: [policy('final', 'after SFT', 0.3, 0.2)] }));
    expect(report.markdown).toContain('Stage times are not available for this run: no Temporal client.');
    expect(report.markdown).not.toContain('## SFT warmup');
    expect(report.plots.map((p) => p.name)).toEqual(['accuracy-test', 'accuracy-ood']);
  });
});
