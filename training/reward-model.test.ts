/**
 * A policy's likelihood as a judge: `likelihoodScores` (the mean token log-probability of each response), the
 * likelihood judge's scores, fine-tuning steps and validation (`rewardModel.kind: likelihood`).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createEngine } from '../engine/factory';
import type { ModelConfig } from '../engine/model/config';
import { Tokenizer } from '../engine/model/tokenizer';
import { Rng } from '../engine/rng';
import { pairwiseAccuracy } from '../rewards/metrics';
import { generateSplit } from '../tasks/dataset';
import { promptsOf } from '../tasks/prompt';
import { teacherResponse } from '../tasks/teacher';
import { likelihoodJudgeScore, likelihoodScores, likelihoodStep, meanLogprob, rankingValidation, type RewardItem, scoreResponses } from './reward-model';
import { sampleRollouts } from './rollouts';

const tokenizer = new Tokenizer();
const engine = createEngine({ kind: 'onnx' });
afterAll(() => engine.dispose());
const POLICY: ModelConfig = { kind: 'policy', vocabSize: tokenizer.vocabSize, maxLength: 128, layers: 1, width: 32, heads: 2, mlpRatio: 2, image: { size: 16, channels: 3, patch: 4 }, initStd: 0.02 };

describe('likelihoodScores', () => {
  it("is the mean of the log-probabilities the policy sampled each response with, whatever the batch size", async () => {
    await engine.init(POLICY, 5);
    const examples = generateSplit('train', 3, 16, 4).slice(0, 3);
    const rollouts = await sampleRollouts(engine, examples, { n: 2, temperature: 1, topP: 1, maxTokens: 10, seed: 3, promptsPerBatch: 3 });
    const byId = new Map(examples.map((e) => [e.id, e]));
    // (the sampled text re-encoded: only responses that end by the token limit, whose tokens round-trip exactly)
    const items = rollouts.filter((r) => !r.stopped).map((r) => ({ exampleId: r.exampleId, response: r.text, sampled: meanLogprob(r.logprobs) }));
    expect(items.length).toBeGreaterThan(0);
    const whole = await likelihoodScores(engine, byId, items, 64);
    const single = await likelihoodScores(engine, byId, items, 1);
    for (const [i, item] of items.entries()) {
      expect(Math.abs(whole[i]! - item.sampled)).toBeLessThan(0.05); // (re-encoded text, recomputed without the KV cache)
      expect(single[i]).toBeCloseTo(whole[i]!, 5);
    }
  });

  it('meanLogprob: the mean, 0 for an empty response', () => {
    expect(meanLogprob(Float32Array.from([-1, -2, -3]))).toBeCloseTo(-2);
    expect(meanLogprob([])).toBe(0);
  });
});

describe('a likelihood judge (rewardModel.kind likelihood)', () => {
  const examples = generateSplit('train', 2, 16, 4);
  const byId = new Map(examples.map((e) => [e.id, e]));
  // Per prompt: the teacher's response (good) and one with a wrong answer and no thought (bad).
  const items: RewardItem[] = examples.flatMap((e, k) => [
    { exampleId: e.id, response: teacherResponse(e, new Rng(k)), score: 1 },
    { exampleId: e.id, response: '<think></think><answer>zz</answer>', score: 0.1 },
  ]);
  const settings = { steps: 30, batchSize: 8, lr: 3e-3, warmupSteps: 0, minLrRatio: 1, weightDecay: 0, maxGradNorm: 4, chunkSteps: 30, seed: 2 };

  it("scores with a policy's likelihood: exp of the mean token log-probability, in (0, 1]; with a reward model's head otherwise", async () => {
    await engine.init(POLICY, 5);
    const scores = await scoreResponses(engine, byId, items, 3);
    const means = await likelihoodScores(engine, byId, items, 64);
    for (const [i, s] of scores.entries()) {
      expect(s).toBeGreaterThan(0);
      expect(s).toBeLessThanOrEqual(1);
      expect(s).toBeCloseTo(Math.exp(means[i]!), 5);
    }
    expect(likelihoodJudgeScore(Float32Array.from([Math.log(0.5), Math.log(0.5)]))).toBeCloseTo(0.5);
    // The same weights as a reward model (a fresh head): the head's scores, which are not the likelihood's.
    const reward = createEngine({ kind: 'onnx' });
    try {
      await reward.initRewardFromPolicy(await engine.saveState(), 3);
      const head = await scoreResponses(reward, byId, items, 64);
      const rows = await reward.scoreResponses({ prompts: promptsOf(items.map((i) => byId.get(i.exampleId)!)), rows: (await reward.encodeResponses(items.map((i) => i.response))).map((response, k) => ({ prompt: k, response })) });
      expect(head).toEqual(Array.from(rows));
      expect(head).not.toEqual(scores);
    } finally {
      await reward.dispose();
    }
  });

  it('fine-tunes on the well-annotated responses with the SFT loss: they grow likelier, and it validates by ranking', async () => {
    await engine.init(POLICY, 5);
    const good = items.filter((i) => i.score >= 0.8);
    const before = await scoreResponses(engine, byId, good, 64);
    const rankingBefore = await rankingValidation(engine, byId, items, 64);
    const losses: number[] = [];
    for (let step = 0; step < settings.steps; step++) {
      const out = await likelihoodStep(engine, byId, good, settings, step);
      expect(out.step).toBe(step + 1);
      losses.push(out.loss);
    }
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.7);
    const after = await scoreResponses(engine, byId, good, 64);
    expect(after.reduce((a, b) => a + b) / after.length).toBeGreaterThan(before.reduce((a, b) => a + b) / before.length + 0.05);
    // 1 − the pairwise accuracy: a judge that prefers every teacher response to its bad twin has loss 0.
    const ranking = await rankingValidation(engine, byId, items, 64);
    const scores = await scoreResponses(engine, byId, items, 64);
    expect(ranking).toBeCloseTo(1 - pairwiseAccuracy(scores, items.map((i) => i.score), items.map((i) => i.exampleId)).accuracy, 10);
    expect(ranking).toBeLessThanOrEqual(rankingBefore);
    expect(ranking).toBe(0);
  });

  it('refuses to fine-tune on nothing, and to validate without a pair to rank', async () => {
    await engine.init(POLICY, 5);
    await expect(likelihoodStep(engine, byId, [], settings, 0)).rejects.toThrow(/likelihoodMinScore/);
    await expect(rankingValidation(engine, byId, items.filter((i) => i.score === 1), 64)).rejects.toThrow(/samplesPerPrompt/);
  });
});
