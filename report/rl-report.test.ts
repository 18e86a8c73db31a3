/** The method sections of the run report: the reward model's part, with its on-policy measurement and baseline. */
import { describe, expect, it } from 'vitest';
import { methodSections, type RewardModelSummary } from './rl-report';

const metrics = { count: 10, mae: 0.2, pearson: 0.5, spearman: 0.5, pairwiseAccuracy: 0.8, pairs: 12, mixedGroupAccuracy: 0.85, mixedGroups: 4, calibrationError: 0.02 };
const summary: RewardModelSummary = { trained: metrics, untrained: { ...metrics, pairwiseAccuracy: 0.45 }, annotator: 'programmatic', train: 90, heldOut: 10 };

describe('methodSections: the thinking reward model', () => {
  it("states the on-policy accuracy beside the untrained model and the policy's own likelihood", () => {
    const { markdown } = methodSections([], { ...summary, onPolicy: { prompts: 400, responses: 3200, mixedGroups: 213, trained: 0.601, untrained: 0.451, policyLikelihood: 0.662 } });
    expect(markdown).toContain('213 groups have right and wrong answers; the trained model scores the right ones higher in 60.1 % of them, the untrained one in 45.1 %');
    expect(markdown).toMatch(/the policy's own likelihood of each response \(mean log-probability per token, the baseline a reward model has to beat\) in 66\.2 %\./);
  });

  it('leaves the baseline out of reports written before it was measured', () => {
    const { markdown } = methodSections([], { ...summary, onPolicy: { prompts: 100, responses: 800, mixedGroups: 52, trained: 0.596, untrained: 0.519 } });
    expect(markdown).toContain('the untrained one in 51.9 %.');
    expect(markdown).not.toContain('likelihood');
  });
});
