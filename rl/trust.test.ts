import { describe, expect, it } from 'vitest';
import { type GroupRewards, type GroupRewardsInput, VARIANTS, annealFactor, batchStats, groupRewards, trustWeight } from './trust';

/** Golden values are hand-computed; 12 digits is far tighter than any formula slip would survive. */
const DIGITS = 12;

function expectCloseAll(actual: number[], expected: number[]): void {
  expect(actual).toHaveLength(expected.length);
  for (const [i, e] of expected.entries()) expect(actual[i], `index ${i}`).toBeCloseTo(e, DIGITS);
}

/** Exact zeros (not -0, not NaN, not 1e-17). */
function expectExactZeros(values: number[]): void {
  for (const v of values) expect(Object.is(v, 0), `${v} is exactly 0`).toBe(true);
}

describe('trustWeight', () => {
  it('damps a reward model that prefers wrong answers: γ = exp(μc − μw)', () => {
    // C = {0, 1}: μc = (0.2 + 0.4) / 2 = 0.3; W = {2, 3}: μw = (0.9 + 0.7) / 2 = 0.8.
    // μc < μw, so γ = exp(0.3 − 0.8) = exp(−0.5) = 0.6065306597126334.
    const w = trustWeight([1, 1, 0, 0], [0.2, 0.4, 0.9, 0.7]);
    expect(w.gamma).toBeCloseTo(0.6065306597126334, DIGITS);
    expect(w.muCorrect).toBeCloseTo(0.3, DIGITS);
    expect(w.muWrong).toBeCloseTo(0.8, DIGITS);
    expect(w).toMatchObject({ correct: 2, wrong: 2, thinkingUsed: true });
  });

  it('trusts a reward model that prefers correct answers: γ = 1', () => {
    // μc = (0.9 + 0.7) / 2 = 0.8 ≥ μw = (0.2 + 0.4) / 2 = 0.3.
    const w = trustWeight([1, 1, 0, 0], [0.9, 0.7, 0.2, 0.4]);
    expect(w.gamma).toBe(1);
    expect(w.muCorrect).toBeCloseTo(0.8, DIGITS);
    expect(w.muWrong).toBeCloseTo(0.3, DIGITS);
  });

  it('trusts when the means are equal (μc = μw gives γ = 1, not exp(0) by accident of rounding)', () => {
    // μc = (0.2 + 0.8) / 2 = 0.5, μw = (0.4 + 0.6) / 2 = 0.5 (both sums are exactly 1.0 in binary).
    expect(trustWeight([1, 0, 1, 0], [0.2, 0.4, 0.8, 0.6]).gamma).toBe(1);
  });

  it('counts an outcome of exactly the threshold as correct', () => {
    // 0.5 ≥ 0.5 → C = {0}, μc = 0.2; 0.37 < 0.5 → W = {1}, μw = 0.6. γ = exp(0.2 − 0.6) = exp(−0.4) = 0.6703200460356393.
    // (Were 0.5 counted as wrong, C would be empty and γ = 1.)
    const w = trustWeight([0.5, 0.37], [0.2, 0.6]);
    expect(w).toMatchObject({ correct: 1, wrong: 1 });
    expect(w.gamma).toBeCloseTo(0.6703200460356393, DIGITS);
    // With threshold 0.6 both are wrong: C empty.
    expect(trustWeight([0.5, 0.37], [0.2, 0.6], { threshold: 0.6 })).toMatchObject({ gamma: 1, correct: 0, wrong: 2 });
  });

  it('partial OCR outcomes (0.37) are wrong, 0.93 correct', () => {
    // C = {1}: μc = 0.1; W = {0, 2}: μw = (0.9 + 0.5) / 2 = 0.7. γ = exp(−0.6) = 0.5488116360940264.
    const w = trustWeight([0.37, 0.93, 0], [0.9, 0.1, 0.5]);
    expect(w).toMatchObject({ correct: 1, wrong: 2 });
    expect(w.gamma).toBeCloseTo(0.5488116360940264, DIGITS);
  });

  it.each([
    ['empty C (all wrong)', [0, 0.3, 0.49], { correct: 0, wrong: 3, muCorrect: null }],
    ['empty W (all correct)', [1, 0.5, 0.8], { correct: 3, wrong: 0, muWrong: null }],
  ])('%s: γ = 1; `trust` keeps the thinking reward, `skip` drops it', (_name, outcome, counts) => {
    const thinking = [0.9, 0.2, 0.4];
    expect(trustWeight(outcome, thinking)).toMatchObject({ gamma: 1, thinkingUsed: true, ...counts });
    expect(trustWeight(outcome, thinking, { emptyGroup: 'trust' })).toMatchObject({ gamma: 1, thinkingUsed: true });
    expect(trustWeight(outcome, thinking, { emptyGroup: 'skip' })).toMatchObject({ gamma: 1, thinkingUsed: false, ...counts });
  });

  it('`skip` changes nothing for a two-sided group', () => {
    expect(trustWeight([1, 0], [0.2, 0.7], { emptyGroup: 'skip' })).toMatchObject({ thinkingUsed: true });
    expect(trustWeight([1, 0], [0.2, 0.7], { emptyGroup: 'skip' }).gamma).toBeCloseTo(Math.exp(-0.5), DIGITS);
  });

  it('rejects bad input, naming the field', () => {
    expect(() => trustWeight([1, 0], [0.5])).toThrow(new RangeError('thinking: expected 2 values, one per outcome; got 1'));
    expect(() => trustWeight([], [])).toThrow(/^outcome: expected at least one response; got \[\]$/);
    expect(() => trustWeight([1, 1.5], [0, 0])).toThrow(new RangeError('outcome[1]: expected a number in [0, 1]; got 1.5'));
    expect(() => trustWeight([1, 0], [0, Number.NaN])).toThrow(new RangeError('thinking[1]: expected a number in [0, 1]; got NaN'));
    expect(() => trustWeight([1, 0], [0, 0], { threshold: 2 })).toThrow(/^threshold: expected a number in \[0, 1\]; got 2$/);
  });
});

describe('annealFactor', () => {
  it('is exp(−step / T): 1 at step 0, e⁻¹ at T, e⁻² at 2T', () => {
    expect(annealFactor(0, 100)).toBe(1);
    expect(annealFactor(100, 100)).toBeCloseTo(0.36787944117144233, DIGITS); // e⁻¹
    expect(annealFactor(200, 100)).toBeCloseTo(0.1353352832366127, DIGITS); // e⁻²
    expect(annealFactor(25, 100)).toBeCloseTo(0.7788007830714049, DIGITS); // e^(−1/4)
  });

  it('takes T from `temperature` when given, instead of totalSteps', () => {
    expect(annealFactor(0, 100, 50)).toBe(1);
    expect(annealFactor(50, 100, 50)).toBeCloseTo(0.36787944117144233, DIGITS); // e⁻¹
    expect(annealFactor(100, 100, 50)).toBeCloseTo(0.1353352832366127, DIGITS); // e⁻²
  });

  it('rejects a negative step and a non-positive T with a RangeError naming the argument', () => {
    expect(() => annealFactor(-1, 100)).toThrow(new RangeError('step: expected a number ≥ 0; got -1'));
    expect(() => annealFactor(1, 0)).toThrow(new RangeError('totalSteps: expected a number > 0; got 0'));
    expect(() => annealFactor(1, 100, 0)).toThrow(new RangeError('temperature: expected a number > 0; got 0'));
    expect(() => annealFactor(1, 100, Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });
});

describe('groupRewards', () => {
  // One group seen by every variant, at step 25 of 100 with α = 0.3:
  //   outcome  R^o = [1, 0, 0.37, 1]     C = {0, 3}, W = {1, 2} (0.37 < 0.5)
  //   thinking R^t = [0.2, 0.8, 0.5, 0.4]  μc = (0.2 + 0.4) / 2 = 0.3, μw = (0.8 + 0.5) / 2 = 0.65
  //   γ = exp(0.3 − 0.65) = exp(−0.35) = 0.7046880897187134;  a = exp(−25 / 100) = 0.7788007830714049.
  const group = { outcome: [1, 0, 0.37, 1], thinking: [0.2, 0.8, 0.5, 0.4], step: 25, totalSteps: 100, alpha: 0.3 };

  it('grpo: R = R^o, γ and a reported as 1, no thinking term', () => {
    // mean = 2.37 / 4 = 0.5925; deviations 0.4075, −0.5925, −0.2225, 0.4075;
    // squares sum 0.16605625 + 0.35105625 + 0.04950625 + 0.16605625 = 0.732675; /3 = 0.244225;
    // std = √0.244225 = 0.49419125852244694; A_0 = 0.4075 / (std + 1e-6) = 0.8245778701964243, …
    const r = groupRewards({ ...group, variant: 'grpo' });
    expect(r).toMatchObject({ gamma: 1, anneal: 1, thinkingUsed: false, zeroVariance: false });
    expect(r.rewards).toEqual([1, 0, 0.37, 1]);
    expectCloseAll(r.advantages, [0.8245778701964243, -1.1989261057457212, -0.45022963464712745, 0.8245778701964243]);
  });

  it('thinking: R = R^o + α·R^t (γ = a = 1)', () => {
    // R = [1 + 0.06, 0 + 0.24, 0.37 + 0.15, 1 + 0.12] = [1.06, 0.24, 0.52, 1.12]; mean = 2.94 / 4 = 0.735;
    // deviations 0.325, −0.495, −0.215, 0.385; squares sum 0.5451; /3 = 0.1817; std = √0.1817 = 0.42626282971894236.
    const r = groupRewards({ ...group, variant: 'thinking' });
    expect(r).toMatchObject({ gamma: 1, anneal: 1, thinkingUsed: true });
    expectCloseAll(r.rewards, [1.06, 0.24, 0.52, 1.12]);
    expectCloseAll(r.advantages, [0.325, -0.495, -0.215, 0.385].map((d) => d / (Math.sqrt(0.1817) + 1e-6)));
    expectCloseAll(r.advantages, [0.7624386057205209, -1.1612526456358707, -0.5043824622458833, 0.9031965021612327]);
  });

  it('thinking+anneal: R = R^o + α·a·R^t (γ = 1)', () => {
    // α·a = 0.3 · 0.7788007830714049 = 0.23364023492142144 =: s;
    // R = [1 + 0.2s, 0.8s, 0.37 + 0.5s, 1 + 0.4s].
    const s = 0.23364023492142144;
    const r = groupRewards({ ...group, variant: 'thinking+anneal' });
    expect(r.gamma).toBe(1);
    expect(r.anneal).toBeCloseTo(0.7788007830714049, DIGITS);
    expectCloseAll(r.rewards, [1 + 0.2 * s, 0.8 * s, 0.37 + 0.5 * s, 1 + 0.4 * s]);
    expectCloseAll(r.rewards, [1.0467280469842843, 0.18691218793713715, 0.48682011746071074, 1.0934560939685687]);
    expectCloseAll(r.advantages, [0.7781795331529026, -1.1711086795480794, -0.49118752461180776, 0.884116671006984]);
  });

  it.each(['trust-grpo', 'untrained-rm'] as const)('%s: R = R^o + α·γ·a·R^t', (variant) => {
    // α·γ·a = 0.3 · exp(−0.35 − 0.25) = 0.3 · exp(−0.6) = 0.3 · 0.5488116360940264 = 0.16464349082820795 =: s.
    const s = 0.16464349082820795;
    const r = groupRewards({ ...group, variant });
    expect(r.gamma).toBeCloseTo(0.7046880897187134, DIGITS);
    expect(r.anneal).toBeCloseTo(0.7788007830714049, DIGITS);
    expect(r.thinkingUsed).toBe(true);
    expectCloseAll(r.rewards, [1 + 0.2 * s, 0.8 * s, 0.37 + 0.5 * s, 1 + 0.4 * s]);
    expectCloseAll(r.advantages, [0.7932382586764168, -1.1803450590836413, -0.47824256194661424, 0.8653493623538386]);
  });

  it('covers every variant, and they give different rewards (untrained-rm = trust-grpo)', () => {
    const first = VARIANTS.map((variant) => groupRewards({ ...group, variant }).rewards[0]);
    // R_0 = 1 + 0.2 · {0, 0.3, 0.3a, 0.3γa, 0.3γa}.
    expectCloseAll(first as number[], [1, 1.06, 1.0467280469842843, 1.0329286981656416, 1.0329286981656416]);
  });

  it('alpha 0 gives R = R^o under every variant (γ and a still reported)', () => {
    for (const variant of VARIANTS) {
      const r = groupRewards({ ...group, alpha: 0, variant });
      expect(r.rewards, variant).toEqual([1, 0, 0.37, 1]);
    }
    expect(groupRewards({ ...group, alpha: 0, variant: 'trust-grpo' }).gamma).toBeCloseTo(0.7046880897187134, DIGITS);
  });

  it('annealing in the final reward: step 0, T and 2T, and an explicit temperature', () => {
    // Both responses correct → W empty → γ = 1 (policy `trust`); with α = 0.5 and R^t_0 = 1:
    // R_0 = 1 + 0.5 · a · 1, a = exp(−step / T), T = totalSteps = 10 unless annealTemperature is given.
    const at = (step: number, annealTemperature?: number) =>
      groupRewards({ outcome: [1, 1], thinking: [1, 0], step, totalSteps: 10, alpha: 0.5, variant: 'trust-grpo', annealTemperature }).rewards[0];
    expect(at(0)).toBe(1.5);
    expect(at(10)).toBeCloseTo(1 + 0.5 * 0.36787944117144233, DIGITS);
    expect(at(20)).toBeCloseTo(1 + 0.5 * 0.1353352832366127, DIGITS);
    expect(at(20, 20)).toBeCloseTo(1 + 0.5 * 0.36787944117144233, DIGITS);
  });

  it('population std divides by n instead of n − 1', () => {
    // R = [1, 0, 0, 1]: mean 0.5, squares sum 1.
    //   unbiased:   std = √(1/3) = 0.5773502691896257, A = ±0.5 / (std + 1e-6) = ±0.8660239037870368;
    //   population: std = √(1/4) = 0.5,                A = ±0.5 / 0.500001     = ±0.999998000004.
    const base = { outcome: [1, 0, 0, 1], thinking: [], step: 0, totalSteps: 1, alpha: 0.3, variant: 'grpo' as const };
    expectCloseAll(groupRewards(base).advantages, [0.8660239037870368, -0.8660239037870368, -0.8660239037870368, 0.8660239037870368]);
    expectCloseAll(groupRewards({ ...base, std: 'unbiased' }).advantages, [0.8660239037870368, -0.8660239037870368, -0.8660239037870368, 0.8660239037870368]);
    expectCloseAll(groupRewards({ ...base, std: 'population' }).advantages, [0.999998000004, -0.999998000004, -0.999998000004, 0.999998000004]);
    // eps = 0: exactly ±0.5 / 0.5 = ±1.
    expect(groupRewards({ ...base, std: 'population', eps: 0 }).advantages).toEqual([1, -1, -1, 1]);
  });

  it('all-equal rewards: zeroVariance, advantages exactly 0 (not NaN, not rounding noise)', () => {
    // (0.1 + 0.1 + 0.1) / 3 = 0.10000000000000002 in doubles: a naive mean would give deviations of −2.8e-17.
    const r = groupRewards({ outcome: [0.1, 0.1, 0.1], thinking: [], step: 0, totalSteps: 1, alpha: 0.3, variant: 'grpo' });
    expect(r.zeroVariance).toBe(true);
    expectExactZeros(r.advantages);
    // All correct with equal thinking: R_i = 1 + 0.3 · 1 · 1 · 0.4 = 1.12 for all i.
    const t = groupRewards({ outcome: [1, 1, 1], thinking: [0.4, 0.4, 0.4], step: 0, totalSteps: 5, alpha: 0.3, variant: 'trust-grpo' });
    expect(t.zeroVariance).toBe(true);
    expectCloseAll(t.rewards, [1.12, 1.12, 1.12]);
    expectExactZeros(t.advantages);
  });

  it('a group of one response has zero variance and advantage 0', () => {
    const r = groupRewards({ outcome: [1], thinking: [0.3], step: 0, totalSteps: 1, alpha: 0.3, variant: 'thinking' });
    expect(r).toMatchObject({ zeroVariance: true });
    expectExactZeros(r.advantages);
  });

  it('`skip` drops the thinking term of one-sided groups under trust-grpo and untrained-rm only', () => {
    // All wrong (C empty): trust-grpo + skip → R = R^o = [0, 0.37]; with trust: R = R^o + 0.3 · 1 · 1 · R^t.
    const oneSided = { outcome: [0, 0.37], thinking: [0.5, 0.9], step: 0, totalSteps: 10, alpha: 0.3, emptyGroup: 'skip' as const };
    for (const variant of ['trust-grpo', 'untrained-rm'] as const) {
      const r = groupRewards({ ...oneSided, variant });
      expect(r).toMatchObject({ gamma: 1, anneal: 1, thinkingUsed: false, rewards: [0, 0.37] });
      const trusted = groupRewards({ ...oneSided, variant, emptyGroup: 'trust' });
      expect(trusted.thinkingUsed).toBe(true);
      expectCloseAll(trusted.rewards, [0.15, 0.64]);
    }
    // thinking / thinking+anneal have no γ, so `skip` does not apply: R = [0 + 0.15, 0.37 + 0.27].
    for (const variant of ['thinking', 'thinking+anneal'] as const) {
      const r = groupRewards({ ...oneSided, variant });
      expect(r.thinkingUsed).toBe(true);
      expectCloseAll(r.rewards, [0.15, 0.64]);
    }
    // A skipped group still reports the step's anneal factor: exp(−5 / 10).
    expect(groupRewards({ ...oneSided, step: 5, variant: 'trust-grpo' }).anneal).toBeCloseTo(0.6065306597126334, DIGITS);
  });

  it('uses the threshold option for C and W', () => {
    // threshold 0.3: 0.37 is correct → C = {0, 2, 3}, μc = (0.2 + 0.5 + 0.4) / 3 = 11/30; W = {1}, μw = 0.8 = 24/30;
    // γ = exp(−13/30) = 0.6483443410015097.
    const r = groupRewards({ ...group, variant: 'trust-grpo', threshold: 0.3 });
    expect(r.gamma).toBeCloseTo(0.6483443410015097, DIGITS);
  });

  const ok: GroupRewardsInput = { outcome: [1, 0], thinking: [0.5, 0.5], step: 0, totalSteps: 10, alpha: 0.3, variant: 'trust-grpo' };
  it.each<[string, Partial<Record<keyof GroupRewardsInput, unknown>>, ErrorConstructor, string]>([
    ['outcome element not a number', { outcome: [1, 'x'] }, TypeError, 'groups[2].outcome[1]: expected a number in [0, 1]; got "x"'],
    ['thinking element out of range', { thinking: [0.5, 1.2] }, RangeError, 'groups[2].thinking[1]: expected a number in [0, 1]; got 1.2'],
    ['negative outcome', { outcome: [-0.1, 0] }, RangeError, 'groups[2].outcome[0]: expected a number in [0, 1]; got -0.1'],
    ['outcome not an array', { outcome: 1 }, TypeError, 'groups[2].outcome: expected an array of numbers in [0, 1]; got 1'],
    ['empty group', { outcome: [], thinking: [] }, RangeError, 'groups[2].outcome: expected at least one response; got []'],
    ['length mismatch', { thinking: [0.5] }, RangeError, 'groups[2].thinking: expected 2 values, one per outcome; got 1'],
    ['empty thinking outside grpo', { thinking: [] }, RangeError, 'groups[2].thinking: expected 2 values, one per outcome; got 0'],
    ['negative alpha', { alpha: -1 }, RangeError, 'alpha: expected a number ≥ 0; got -1'],
    ['fractional step', { step: 1.5 }, RangeError, 'step: expected an integer ≥ 0; got 1.5'],
    ['zero totalSteps', { totalSteps: 0 }, RangeError, 'totalSteps: expected an integer ≥ 1; got 0'],
    ['missing totalSteps', { totalSteps: undefined }, TypeError, 'totalSteps: expected an integer ≥ 1; it is missing'],
    ['unknown variant', { variant: 'ppo' }, RangeError, 'variant: expected one of "grpo", "thinking", "thinking+anneal", "trust-grpo", "untrained-rm"; got "ppo"'],
    ['unknown policy', { emptyGroup: 'drop' }, RangeError, 'emptyGroup: expected one of "trust", "skip"; got "drop"'],
    ['unknown std', { std: 'biased' }, RangeError, 'std: expected one of "unbiased", "population"; got "biased"'],
    ['zero temperature', { annealTemperature: 0 }, RangeError, 'annealTemperature: expected a number > 0; got 0'],
    ['negative eps', { eps: -1e-6 }, RangeError, 'eps: expected a number ≥ 0; got -0.000001'],
  ])('rejects %s, naming the field', (_name, patch, kind, message) => {
    const call = () => groupRewards({ ...ok, where: 'groups[2]', ...patch } as GroupRewardsInput);
    expect(call).toThrow(kind);
    expect(call).toThrow(message);
  });

  it('accepts an empty (or full) thinking array under grpo, and names fields without `where`', () => {
    expect(groupRewards({ ...ok, thinking: [], variant: 'grpo' }).rewards).toEqual([1, 0]);
    expect(groupRewards({ ...ok, variant: 'grpo' }).rewards).toEqual([1, 0]);
    expect(() => groupRewards({ ...ok, thinking: [2, 0], variant: 'grpo' })).toThrow(/^thinking\[0\]: expected a number in \[0, 1\]; got 2$/);
  });
});

describe('batchStats', () => {
  it('reduces a step to mean γ, distrusted, zero-variance and skipped shares', () => {
    const base = { step: 10, totalSteps: 10, alpha: 0.3, variant: 'trust-grpo' as const, emptyGroup: 'skip' as const };
    const results: GroupRewards[] = [
      groupRewards({ ...base, outcome: [1, 0], thinking: [0.2, 0.7] }), // γ = exp(−0.5)
      groupRewards({ ...base, outcome: [1, 0], thinking: [0.7, 0.2] }), // γ = 1
      groupRewards({ ...base, outcome: [1, 1], thinking: [0.3, 0.3] }), // one-sided: skipped, zero variance
      groupRewards({ ...base, outcome: [0, 0.37], thinking: [0.3, 0.3] }), // one-sided: skipped
    ];
    const stats = batchStats(results);
    // meanGamma = (exp(−0.5) + 1 + 1 + 1) / 4 = (0.6065306597126334 + 3) / 4 = 0.9016326649281584.
    expect(stats.meanGamma).toBeCloseTo(0.9016326649281584, DIGITS);
    expect(stats.anneal).toBeCloseTo(0.36787944117144233, DIGITS); // exp(−10 / 10)
    expect(stats).toMatchObject({ groups: 4, distrustedShare: 0.25, zeroVarianceShare: 0.25, thinkingSkippedShare: 0.5 });
  });

  it('counts every grpo group as skipping the thinking reward', () => {
    const r = groupRewards({ outcome: [1, 0], thinking: [], step: 3, totalSteps: 10, alpha: 0.3, variant: 'grpo' });
    expect(batchStats([r, r])).toEqual({ groups: 2, meanGamma: 1, distrustedShare: 0, anneal: 1, zeroVarianceShare: 0, thinkingSkippedShare: 1, mixedShare: 1 });
  });

  it('reports the reward model\'s on-policy mixed-group accuracy: the share of mixed groups whose correct responses it scores higher', () => {
    const group = (outcome: number[], thinking: number[]) => groupRewards({ outcome, thinking, step: 0, totalSteps: 10, alpha: 0.3, variant: 'trust-grpo' });
    const right = group([1, 0, 1], [0.8, 0.3, 0.6]); // μc 0.7 > μw 0.3
    const wrong = group([1, 0], [0.2, 0.9]); // μc 0.2 < μw 0.9
    const tie = group([1, 0], [0.5, 0.5]);
    const oneSided = group([1, 1], [0.1, 0.9]);
    expect([right.preference, wrong.preference, tie.preference, oneSided.preference]).toEqual(['correct', 'wrong', 'tie', undefined]);
    const stats = batchStats([right, wrong, tie, oneSided]);
    expect(stats.mixedShare).toBe(0.75);
    expect(stats.rmMixedGroupAccuracy).toBeCloseTo(1 / 3, 12);
    expect(batchStats([oneSided]).rmMixedGroupAccuracy).toBeUndefined();
  });

  it('rejects an empty batch and groups from different steps', () => {
    expect(() => batchStats([])).toThrow(new RangeError('results: expected at least one group; got []'));
    const at = (step: number) => groupRewards({ outcome: [1, 0], thinking: [0, 1], step, totalSteps: 10, alpha: 0.3, variant: 'thinking+anneal' });
    expect(() => batchStats([at(0), at(1)])).toThrow(/^results\[1\]\.anneal: expected 1 like results\[0\] \(one step per batch\)/);
  });
});

describe('semantics: authors-code (the released code\'s reward) against paper', () => {
  const base = { step: 0, totalSteps: 1000, alpha: 0.3, variant: 'trust-grpo' as const };
  const close = (a: number[], b: number[]) => a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 12));

  it('zeroes the thinking reward below an outcome of 0.2, which makes γ 1 for 0/1 outcome rewards', () => {
    const group = { outcome: [1, 0, 1, 0], thinking: [0.2, 0.9, 0.3, 0.8] };
    const paper = groupRewards({ ...base, ...group });
    expect(paper.gamma).toBeCloseTo(Math.exp(0.25 - 0.85), 12);
    close(paper.rewards, group.outcome.map((o, i) => o + 0.3 * Math.exp(-0.6) * group.thinking[i]!));
    const authors = groupRewards({ ...base, ...group, semantics: 'authors-code' });
    expect(authors.gamma).toBe(1);
    close(authors.rewards, [1 + 0.3 * 0.2, 0, 1 + 0.3 * 0.3, 0]);
  });

  it('damps by exp(μc − μw) with partial outcomes, an empty side counting 0 and γ 1 without a correct response', () => {
    // 0.15 < 0.2: its thinking reward is 0; correct = {0.6}: μc = 0.2; wrong = {0.3, 0.15}: μw = (0.9 + 0) / 2.
    const partial = groupRewards({ ...base, outcome: [0.3, 0.6, 0.15], thinking: [0.9, 0.2, 0.8], semantics: 'authors-code' });
    expect(partial.gamma).toBeCloseTo(Math.exp(0.2 - 0.45), 12);
    close(partial.rewards, [0.3 + 0.3 * Math.exp(-0.25) * 0.9, 0.6 + 0.3 * Math.exp(-0.25) * 0.2, 0.15]);
    const noneCorrect = groupRewards({ ...base, outcome: [0.3, 0.4], thinking: [0.5, 0.6], semantics: 'authors-code' });
    expect(noneCorrect.gamma).toBe(1);
    close(noneCorrect.rewards, [0.3 + 0.3 * 0.5, 0.4 + 0.3 * 0.6]);
  });

  it('skips the thinking reward of one-sided groups (all ≥ 0.9 or all ≤ 0.1), where the paper trusts it', () => {
    for (const outcome of [[1, 1, 0.95], [0, 0.1, 0]]) {
      const authors = groupRewards({ ...base, outcome, thinking: [0.1, 0.9, 0.5], semantics: 'authors-code' });
      expect(authors.thinkingUsed).toBe(false);
      expect(authors.rewards).toEqual(outcome);
      expect(groupRewards({ ...base, outcome, thinking: [0.1, 0.9, 0.5] }).thinkingUsed).toBe(true);
    }
  });

  it('anneals with T = 12000 unless annealTemperature is given', () => {
    const at = { ...base, step: 600, outcome: [1, 0], thinking: [0.5, 0.5] };
    expect(groupRewards(at).anneal).toBeCloseTo(Math.exp(-600 / 1000), 12);
    expect(groupRewards({ ...at, semantics: 'authors-code' }).anneal).toBeCloseTo(Math.exp(-600 / 12000), 12);
    expect(groupRewards({ ...at, semantics: 'authors-code', annealTemperature: 300 }).anneal).toBeCloseTo(Math.exp(-2), 12);
    expect(() => groupRewards({ ...at, semantics: 'released' as never })).toThrow(/semantics/);
  });
});
