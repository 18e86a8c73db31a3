/** The likelihood judge (`likelihoodScores`): a policy's mean token log-probability of each response. */
import { afterAll, describe, expect, it } from 'vitest';
import { createEngine } from '../engine/factory';
import { Tokenizer } from '../engine/model/tokenizer';
import { generateSplit } from '../tasks/dataset';
import { likelihoodScores, meanLogprob } from './reward-model';
import { sampleRollouts } from './rollouts';

const tokenizer = new Tokenizer();
const engine = createEngine({ kind: 'onnx' });
afterAll(() => engine.dispose());

describe('likelihoodScores', () => {
  it("is the mean of the log-probabilities the policy sampled each response with, whatever the batch size", async () => {
    await engine.init({ kind: 'policy', vocabSize: tokenizer.vocabSize, maxLength: 128, layers: 1, width: 32, heads: 2, mlpRatio: 2, image: { size: 16, channels: 3, patch: 4 }, initStd: 0.02 }, 5);
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
