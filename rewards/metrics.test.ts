import { describe, expect, it } from 'vitest';
import { averageRanks, meanAbsoluteError, pairwiseAccuracy, pearson, rewardModelMetrics, spearman } from './metrics';

describe('reward-model metrics', () => {
  it('mean absolute error', () => {
    // |0.2−0| + |0.5−1| + |0.9−0.9| = 0.2 + 0.5 + 0 = 0.7; / 3
    expect(meanAbsoluteError([0.2, 0.5, 0.9], [0, 1, 0.9])).toBeCloseTo(0.7 / 3, 12);
    expect(meanAbsoluteError([], [])).toBeNaN();
    expect(() => meanAbsoluteError([1], [1, 2])).toThrow(/differ in length/);
  });

  it('pearson against a hand computation', () => {
    // x = 1,2,3 (mean 2), y = 1,3,2 (mean 2): dx = −1,0,1, dy = −1,1,0 → sxy = 1, sxx = 2, syy = 2 → 0.5
    expect(pearson([1, 2, 3], [1, 3, 2])).toBeCloseTo(0.5, 12);
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [5, 5, 5])).toBeNaN();
  });

  it('average ranks share ties; spearman is pearson of ranks', () => {
    expect(averageRanks([10, 20, 20, 5])).toEqual([2, 3.5, 3.5, 1]);
    // monotone but non-linear: spearman 1, pearson < 1
    expect(spearman([1, 2, 3, 4], [1, 4, 9, 100])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3, 4], [1, 4, 9, 100])).toBeLessThan(0.9);
  });

  it('pairwise accuracy counts pairs within a group whose targets differ; prediction ties count one half', () => {
    // group a: targets 0.1, 0.5, 0.5 → pairs (0,1), (0,2) (1,2 tie in targets: skipped)
    //   predictions 0.2 < 0.6 agrees; 0.2 vs 0.2 is a tie → 0.5
    // group b: targets 1, 0 → predictions 0.3 < 0.4 disagrees
    const out = pairwiseAccuracy([0.2, 0.6, 0.2, 0.3, 0.4], [0.1, 0.5, 0.5, 1, 0], ['a', 'a', 'a', 'b', 'b']);
    expect(out.pairs).toBe(3);
    expect(out.accuracy).toBeCloseTo(1.5 / 3, 12);
    expect(pairwiseAccuracy([1, 2], [0.5, 0.5], ['a', 'a']).accuracy).toBeNaN();
  });

  it('bundles everything', () => {
    const m = rewardModelMetrics([0.1, 0.9], [0, 1], ['p', 'p']);
    expect(m).toMatchObject({ count: 2, pairwiseAccuracy: 1, pairs: 1 });
    expect(m.mae).toBeCloseTo(0.1, 12);
    expect(m.pearson).toBeCloseTo(1, 12);
  });
});
