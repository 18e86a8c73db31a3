import { describe, expect, it } from 'vitest';
import { RUN_PRESETS, parseRunConfig } from '../config/run-config';
import type { MetricRecord } from '../storage/metrics-log';
import { Rng } from '../engine/rng';
import { mergeConfig } from '../config/run-config';
import { ablationCommandLine, ablationReport, basePlan, comparisons, meanStd, pairedSection, parseVariants, type VariantResult, variantConfig, variantRunId } from './ablate';

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
    const skip = variantConfig(tiny, shared, { name: 'trust-grpo@skip', variant: 'trust-grpo', emptyGroup: 'skip' }, 1);
    expect(skip.rl).toMatchObject({ variant: 'trust-grpo', emptyGroup: 'skip' });
    expect(skip.name).toBe('ablation trust-grpo@skip seed 1');
    expect(variantRunId('abl', 'trust-grpo@skip', 1)).toBe('abl-trust-grpo-skip-s1');
  });

  it("runs the shared stages in a base run, or only the reward model over a config's SFT checkpoint and dataset", () => {
    expect(basePlan(tiny)).toEqual({ stages: ['prepareData', 'sftWarmup', 'rewardModel'] });
    const judge = parseRunConfig(mergeConfig(RUN_PRESETS.tiny, { rewardModel: { kind: 'likelihood', steps: 0 }, startFrom: { stage: 'rewardModel', checkpointKey: shared.sftKey, dataRunId: 'v3-base' } }), 'x');
    expect(basePlan(judge)).toEqual({ stages: ['rewardModel'], sft: { sftKey: shared.sftKey, dataRunId: 'v3-base' } });
    // The variants then start from that checkpoint and dataset, not from the config's startFrom.
    const arm = variantConfig(judge, { ...shared, dataRunId: 'v3-base' }, 'thinking', 1);
    expect(arm.startFrom).toEqual({ stage: 'trustGrpo', checkpointKey: shared.sftKey, rewardModelKey: shared.rewardModelKey, dataRunId: 'v3-base' });
    const partial = parseRunConfig(mergeConfig(RUN_PRESETS.tiny, { startFrom: { stage: 'rewardModel', checkpointKey: shared.sftKey } }), 'x');
    expect(() => basePlan(partial)).toThrow(/startFrom: an ablation that starts at the rewardModel stage needs the SFT checkpoint and the dataset/);
  });

  it('names the command that made it: the config inside the repository as a relative path, the arms, a non-default effect', () => {
    const options = { config: '/repo/docs/trust-grpo/ablation.yaml', seeds: 5, from: undefined, variants: parseVariants('grpo,trust-grpo@dynamic'), repoRoot: '/repo' };
    expect(ablationCommandLine(options, 'abl')).toBe('sophia ablate --config docs/trust-grpo/ablation.yaml --seeds 5 --variants grpo,trust-grpo@dynamic --id abl');
    expect(ablationCommandLine({ ...options, config: 'tiny', from: 'base-run', effect: 0.007 }, 'abl')).toBe('sophia ablate --config tiny --seeds 5 --from base-run --variants grpo,trust-grpo@dynamic --id abl --effect 0.7');
    expect(ablationCommandLine({ ...options, config: '/elsewhere/a.yaml', effect: 0.015 }, 'abl')).toBe('sophia ablate --config /elsewhere/a.yaml --seeds 5 --variants grpo,trust-grpo@dynamic --id abl');
  });

  it('rejects unknown variants naming them', () => {
    expect(parseVariants(undefined)).toHaveLength(5);
    expect(parseVariants('grpo, trust-grpo@skip')).toEqual([{ name: 'grpo', variant: 'grpo' }, { name: 'trust-grpo@skip', variant: 'trust-grpo', emptyGroup: 'skip' }]);
    expect(() => parseVariants('grpo,trsut')).toThrow(/--variants: "trsut" is not a variant/);
    expect(() => parseVariants('grpo@keep')).toThrow(/"grpo@keep" is not a variant.*@skip.*@dynamic/);
    expect(parseVariants('grpo@dynamic,trust-grpo@skip@dynamic')).toEqual([
      { name: 'grpo@dynamic', variant: 'grpo', dynamic: true },
      { name: 'trust-grpo@skip@dynamic', variant: 'trust-grpo', emptyGroup: 'skip', dynamic: true },
    ]);
    expect(variantConfig(tiny, shared, { name: 'grpo@dynamic', variant: 'grpo', dynamic: true }, 1).rl?.dynamicSampling).toEqual({ maxRounds: 3 });
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

  it('compares each arm with grpo, and trust-grpo with thinking', () => {
    expect(comparisons(['grpo', 'thinking', 'trust-grpo', 'trust-grpo@skip'])).toEqual([['thinking', 'grpo'], ['trust-grpo', 'grpo'], ['trust-grpo@skip', 'grpo'], ['trust-grpo', 'thinking']]);
    expect(comparisons(['thinking', 'trust-grpo'])).toEqual([['trust-grpo', 'thinking']]);
  });

  it('reports paired differences with bootstrap intervals and the power to detect the effect', () => {
    // 4 seeds × 300 test examples: trust-grpo is right 10 points more often than grpo (clearly significant); thinking
    // the same as grpo. No ood examples (a real dataset): no ood rows.
    const rng = new Rng(5);
    const draws = (p: number) => Array.from({ length: 300 }, () => (rng.nextFloat() < p ? 1 : 0));
    const results: VariantResult[] = [1, 2, 3, 4].flatMap((seed) => [
      { variant: 'grpo', seed, runId: `g${seed}`, testAccuracy: 0, oodAccuracy: 0, meanGamma: 1, distrustedShare: 0, outcomes: { test: draws(0.5), ood: [] } },
      { variant: 'thinking', seed, runId: `t${seed}`, testAccuracy: 0, oodAccuracy: 0, meanGamma: 1, distrustedShare: 0, outcomes: { test: draws(0.5), ood: [] } },
      { variant: 'trust-grpo', seed, runId: `r${seed}`, testAccuracy: 0, oodAccuracy: 0, meanGamma: 1, distrustedShare: 0, outcomes: { test: draws(0.6), ood: [] } },
    ]);
    const { markdown, json } = pairedSection(results, 0.015);
    expect(json.map((c) => [(c.pair as string[]).join(' − '), c.split])).toEqual([['thinking − grpo', 'test'], ['trust-grpo − grpo', 'test'], ['trust-grpo − thinking', 'test']]);
    const row = (pair: string) => markdown.split('\n').find((l) => l.startsWith(`| ${pair} | test |`))!;
    expect(row('trust-grpo − grpo')).toMatch(/^\| trust-grpo − grpo \| test \| \+\d+\.\d \| \[\+\d+\.\d, \+\d+\.\d\] \| 0\.0[0-4]\d \| yes \| 4 \| 300 \|$/);
    expect(row('thinking − grpo')).toMatch(/\| no \| 4 \| 300 \|$/);
    expect(markdown).toMatch(/## Power[\s\S]*\| trust-grpo − grpo \| test \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ % \| [\d.]+ \| (\d+|more examples first) \| (\d+|more seeds first) \|/);
    // Two coin flips of p = 0.5 per example and seed: the interaction alone gives SE ≈ √(0.5 / 1200) ≈ 2 points (the
    // seed and example parts, 0 in truth, are estimated from 4 seeds); 1.5 points need more than these 4 seeds.
    const power = json[0]!.power as { standardError: number; seedsNeeded: number; achievedPower: number };
    expect(power.standardError).toBeGreaterThan(0.015);
    expect(power.standardError).toBeLessThan(0.04);
    expect(power.seedsNeeded).toBeGreaterThan(4);
    expect(power.achievedPower).toBeLessThan(0.8);
  });
});
