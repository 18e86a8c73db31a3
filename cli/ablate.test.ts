import { describe, expect, it } from 'vitest';
import { RUN_PRESETS, parseRunConfig } from '../config/run-config';
import type { MetricRecord } from '../storage/metrics-log';
import { ablationReport, meanStd, parseVariants, variantConfig, variantRunId } from './ablate';

const shared = { dataRunId: 'base', sftKey: 'runs/base/sft/checkpoints/00000150', rewardModelKey: 'runs/base/rm/checkpoints/00000040', rewardModelInitialKey: 'runs/base/rm-init/checkpoints/00000000' };
const tiny = parseRunConfig(RUN_PRESETS.tiny, 'tiny');

describe('sophia ablate', () => {
  it('mean and unbiased std', () => {
    // mean of 0.6, 0.7, 0.8 = 0.7; squared deviations 0.01 + 0 + 0.01 = 0.02; / (3 − 1) = 0.01 → std 0.1
    const { mean, std } = meanStd([0.6, 0.7, 0.8]);
    expect(mean).toBeCloseTo(0.7, 12);
    expect(std).toBeCloseTo(0.1, 12);
    expect(meanStd([0.5]).std).toBe(0);
  });

  it('runs every variant from the shared checkpoints, only RL and evaluation, the untrained model for untrained-rm', () => {
    const trust = variantConfig(tiny, shared, 'trust-grpo', 2);
    expect(trust.stages).toEqual(['trustGrpo', 'evaluation']);
    expect(trust.startFrom).toEqual({ stage: 'trustGrpo', checkpointKey: shared.sftKey, rewardModelKey: shared.rewardModelKey, dataRunId: 'base' });
    expect(trust.rl?.variant).toBe('trust-grpo');
    expect(trust.seed).toBe(tiny.seed + 2000);
    expect(trust.evaluation).toMatchObject({ k: 0, baseline: false });
    expect(variantConfig(tiny, shared, 'untrained-rm', 1).startFrom?.rewardModelKey).toBe(shared.rewardModelInitialKey);
    expect(variantRunId('abl', 'thinking+anneal', 3)).toBe('abl-thinking-anneal-s3');
  });

  it('rejects unknown variants naming them', () => {
    expect(parseVariants(undefined)).toHaveLength(5);
    expect(parseVariants('grpo, trust-grpo')).toEqual(['grpo', 'trust-grpo']);
    expect(() => parseVariants('grpo,trsut')).toThrow(/--variants: "trsut" is not a variant/);
  });

  it('tabulates mean ± std over seeds and plots curves averaged over seeds', () => {
    const results = [
      { variant: 'grpo', seed: 1, runId: 'a', testAccuracy: 0.6, oodAccuracy: 0.2, meanGamma: 1, distrustedShare: 0 },
      { variant: 'grpo', seed: 2, runId: 'b', testAccuracy: 0.8, oodAccuracy: 0.4, meanGamma: 1, distrustedShare: 0 },
      { variant: 'trust-grpo', seed: 1, runId: 'c', testAccuracy: 0.7, oodAccuracy: 0.3, meanGamma: 0.9, distrustedShare: 0.25 },
    ] as const;
    const rec = (step: number, kind: string, extra: Record<string, number>): MetricRecord => ({ stage: 'grpo', kind, step, time: '', ...extra });
    const metrics = new Map([
      ['a', [rec(1, 'step', { gamma: 1, accuracy: 0.5 }), rec(10, 'eval', { testAccuracy: 0.5, oodAccuracy: 0.1 })]],
      ['b', [rec(1, 'step', { gamma: 1, accuracy: 0.7 }), rec(10, 'eval', { testAccuracy: 0.7, oodAccuracy: 0.3 })]],
      ['c', [rec(1, 'step', { gamma: 0.9, accuracy: 0.6 })]],
    ]);
    const report = ablationReport('abl', [...results], metrics, shared, 'sophia ablate --config tiny --seeds 2');
    // grpo: test (60 + 80) / 2 = 70.0, std sqrt((10² + 10²) / 1) = 14.1
    expect(report.markdown).toContain('| grpo | 70.0 ± 14.1 | 30.0 ± 14.1 | 60.0 / 80.0 | 20.0 / 40.0 | 1.000 | 0.0 |');
    expect(report.markdown).toContain('| trust-grpo | 70.0 ± 0.0 | 30.0 ± 0.0 | 70.0 | 30.0 | 0.900 | 25.0 |');
    expect(report.markdown).toContain('sophia ablate --config tiny --seeds 2');
    expect(report.plots.map((p) => p.name)).toEqual(['accuracy-test', 'accuracy-ood', 'gamma', 'train-accuracy']);
    expect(report.plots[0]!.chart.png.length).toBeGreaterThan(1000);
  });
});
