import { describe, expect, it } from 'vitest';
import { averageRanks, calibrationError, meanAbsoluteError, mixedGroupAccuracy, pairwiseAccuracy, pearson, rewardModelMetrics, spearman } from './metrics';

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

describe('mixed-group accuracy and calibration', () => {
  it('counts the prompts with right and wrong answers where the right ones score higher on average (a tie: one half)', () => {
    // p: right 0.9, 0.7 vs wrong 0.5 → agrees; q: right 0.2 vs wrong 0.6, 0.4 → disagrees; r: tie → ½; s: all right → not mixed.
    const predictions = [0.9, 0.7, 0.5, 0.2, 0.6, 0.4, 0.5, 0.5, 0.8];
    const correct = [true, true, false, true, false, false, true, false, true];
    const groups = ['p', 'p', 'p', 'q', 'q', 'q', 'r', 'r', 's'];
    expect(mixedGroupAccuracy(predictions, correct, groups)).toEqual({ accuracy: 1.5 / 3, groups: 3 });
    expect(mixedGroupAccuracy([0.1], [true], ['p'])).toEqual({ accuracy: Number.NaN, groups: 0 });
    expect(() => mixedGroupAccuracy([0.1, 0.2], [true], ['p', 'p'])).toThrow(/outcomes \(1\)/);
  });

  it("calibration error: 0 when each bin's mean prediction is its mean annotation, the weighted gap otherwise", () => {
    expect(calibrationError([0.15, 0.15, 0.85], [0.1, 0.2, 0.85])).toBeCloseTo(0, 12);
    // bin [0.1, 0.2): predictions 0.15 (×2) vs annotations 0.5 → gap 0.35, weight 2/3; bin [0.8, 0.9): 0.85 vs 0.85.
    expect(calibrationError([0.15, 0.15, 0.85], [0.5, 0.5, 0.85])).toBeCloseTo((2 / 3) * 0.35, 12);
    expect(calibrationError([1], [1])).toBe(0); // a prediction of 1 falls in the last bin
  });

  it('rewardModelMetrics carries both, with the outcomes given', () => {
    const m = rewardModelMetrics([0.9, 0.1], [1, 0], ['p', 'p'], [true, false]);
    expect(m).toMatchObject({ mixedGroupAccuracy: 1, mixedGroups: 1 });
    expect(m.calibrationError).toBeCloseTo(0.1, 12);
    expect(rewardModelMetrics([0.9, 0.1], [1, 0], ['p', 'p']).mixedGroups).toBe(0);
  });
});
