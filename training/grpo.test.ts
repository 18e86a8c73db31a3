import { afterAll, describe, expect, it } from 'vitest';
import { createEngine } from '../engine/factory';
import type { ModelConfig } from '../engine/model/config';
import { inMemory } from '../engine/state-files';
import type { Engine } from '../engine/types';
import { generateSplit } from '../tasks/dataset';
import { Tokenizer } from '../engine/model/tokenizer';
import { type GrpoSettings, grpoUpdate, referenceLogprobs } from './grpo';
import { type Rollout, sampleRollouts } from './rollouts';

const tokenizer = new Tokenizer();
const micro: ModelConfig = { kind: 'policy', vocabSize: tokenizer.vocabSize, maxLength: 128, layers: 1, width: 32, heads: 2, mlpRatio: 2, image: { size: 16, channels: 3, patch: 4 }, initStd: 0.02 };
const settings: Omit<GrpoSettings, 'microBatch'> = { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1e6, clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, temperature: 1 };

/**
 * Largest difference of the parameters and AdamW moments in two engines' saved files, read as float32 (the rest —
 * config, step, RNG — is equal bytes when the engines are at the same step of the same model).
 */
async function stateDiff(a: Engine, b: Engine): Promise<number> {
  const [fa, fb] = [await inMemory(await a.saveState()), await inMemory(await b.saveState())];
  expect(fb.map((f) => [f.name, f.data.length])).toEqual(fa.map((f) => [f.name, f.data.length]));
  let diff = 0;
  fa.forEach((file, i) => {
    const x = new Float32Array(file.data.slice(0, file.data.length & ~3).buffer);
    const y = new Float32Array(fb[i]!.data.slice(0, file.data.length & ~3).buffer);
    for (let k = 0; k < x.length; k++) if (Number.isFinite(x[k]) && Number.isFinite(y[k])) diff = Math.max(diff, Math.abs(x[k]! - y[k]!));
  });
  return diff;
}

describe('grpoUpdate micro-batches', () => {
  const engines: Engine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.dispose();
  });
  const policy = async () => {
    const e = createEngine({ kind: 'onnx' });
    engines.push(e);
    await e.init(micro, 21);
    return e;
  };

  it('makes the same update for the whole batch and for uneven micro-batches: the token mean over ALL response tokens', async () => {
    const examples = generateSplit('train', 1, 16, 4).slice(0, 2);
    // Four rollouts of 2, 9, 3 and 6 tokens: micro-batches of 3 + 1 rows (14 + 6 tokens) or 2 + 2 (11 + 9).
    const lengths = [2, 9, 3, 6];
    const rollouts: Rollout[] = lengths.map((n, i) => ({
      exampleId: examples[i % 2]!.id,
      group: i % 2,
      tokens: Array.from({ length: n }, (_, j) => 7 + ((5 * i + 3 * j) % (tokenizer.vocabSize - 7))),
      logprobs: [],
      text: '',
      stopped: false,
      temperature: 1,
    }));
    const reference = await policy();
    const ref = await referenceLogprobs(reference, examples, rollouts, 1, 4);
    // Sampling logprobs a little off the policy's (ratios ≠ 1, some clipped), the reference as it is.
    rollouts.forEach((r, i) => (r.logprobs = ref[i]!.map((x, j) => x + 0.15 * Math.sin(3 * i + j))));
    const advantages = [1.2, -0.7, 0.4, -0.9];

    const whole = await policy();
    const oneBatch = await grpoUpdate(whole, examples, rollouts, ref, advantages, { ...settings, microBatch: 4 });
    expect(oneBatch.applied).toBe(true);
    for (const microBatch of [3, 2]) {
      const split = await policy();
      const update = await grpoUpdate(split, examples, rollouts, ref, advantages, { ...settings, microBatch });
      // The accumulated gradient is the whole batch's (its norm, before clipping), so the step is the same step.
      expect(Math.abs(update.gradNorm - oneBatch.gradNorm), `gradNorm, microBatch ${microBatch}`).toBeLessThan(1e-5 * oneBatch.gradNorm);
      // AdamW's first step is ≈ lr·g/(|g| + eps): a component whose gradient is within rounding of eps may move by
      // a small fraction of lr; a different gradient moves components by up to 2·lr.
      expect(await stateDiff(split, whole), `parameters and moments, microBatch ${microBatch}`).toBeLessThan(0.01 * settings.lr);
      // And the reported metrics are token-weighted means over all the step's tokens.
      for (const key of ['loss', 'kl', 'entropy', 'clipFraction', 'logprobDiffMean', 'logprobDiffMax'] as const) expect(update[key], key).toBeCloseTo(oneBatch[key], 5);
    }
    // The policy before the update is the reference, so |log π − log π_old| is the 0.15·|sin| the rollouts were given.
    const offsets = rollouts.flatMap((r, i) => r.tokens.map((_, j) => Math.abs(0.15 * Math.sin(3 * i + j))));
    expect(oneBatch.logprobDiffMean).toBeCloseTo(offsets.reduce((a, b) => a + b, 0) / offsets.length, 5);
    expect(oneBatch.logprobDiffMax).toBeCloseTo(Math.max(...offsets), 5);
  });

  it('reports the sampler–trainer logprob mismatch of rollouts sampled from the policy itself: below 1e-5', async () => {
    const examples = generateSplit('train', 2, 16, 4).slice(0, 3);
    const engine = await policy();
    const rollouts = await sampleRollouts(engine, examples, { n: 3, temperature: 1, topP: 1, maxTokens: 12, seed: 5, promptsPerBatch: 3 });
    const ref = await referenceLogprobs(engine, examples, rollouts, 1, 4);
    const update = await grpoUpdate(engine, examples, rollouts, ref, rollouts.map((_, i) => (i % 2 ? 1 : -1)), { ...settings, microBatch: 4 });
    expect(update.logprobDiffMax).toBeGreaterThan(0);
    expect(update.logprobDiffMax).toBeLessThan(1e-5);
    expect(update.logprobDiffMean).toBeLessThanOrEqual(update.logprobDiffMax);
    expect(update.importanceEss).toBeGreaterThan(1 - 1e-6);
    expect(update.importanceEss).toBeLessThanOrEqual(1 + 1e-6);
    expect(update.tisCappedFraction).toBeUndefined();
  });

  it('reports its progress after each engine call (examples done of all), so a long sampling can heartbeat', async () => {
    const examples = generateSplit('train', 2, 16, 4).slice(0, 5);
    const engine = await policy();
    const progress: [number, number][] = [];
    const rollouts = await sampleRollouts(engine, examples, { n: 2, temperature: 1, topP: 1, maxTokens: 6, seed: 5, promptsPerBatch: 2 }, { onProgress: (done, total) => progress.push([done, total]) });
    expect(rollouts).toHaveLength(10);
    expect(progress).toEqual([[2, 5], [4, 5], [5, 5]]);
  });

  it('reports the importance weights\' effective sample size over the whole step: (Σr)² / (N·Σr²) when the rollouts drift', async () => {
    const examples = generateSplit('train', 2, 16, 4).slice(0, 3);
    const engine = await policy();
    const rollouts = await sampleRollouts(engine, examples, { n: 3, temperature: 1, topP: 1, maxTokens: 12, seed: 5, promptsPerBatch: 3 });
    const ref = await referenceLogprobs(engine, examples, rollouts, 1, 4);
    // Every other rollout's logprobs shifted by ±0.5: the trainer's ratios r are e^(∓0.5) on those tokens, 1 elsewhere.
    const shifted = rollouts.map((r, i) => ({ ...r, logprobs: r.logprobs.map((x) => x + (i % 2 ? 0.5 : i % 4 === 0 ? 0 : -0.5)) }));
    const r: number[] = shifted.flatMap((roll, i) => roll.logprobs.map(() => Math.exp(i % 2 ? -0.5 : i % 4 === 0 ? 0 : 0.5)));
    const ess = r.reduce((a, x) => a + x, 0) ** 2 / (r.length * r.reduce((a, x) => a + x * x, 0));
    const update = await grpoUpdate(engine, examples, shifted, ref, shifted.map(() => 0), { ...settings, microBatch: 4 });
    expect(update.importanceEss).toBeCloseTo(ess, 4);
    expect(update.importanceEss).toBeLessThan(0.99);
  });
  it('with ppoEpochs 2, the second epoch is scored against the sampling logprobs: the clip bites and the loss is the clipped objective', async () => {
    const examples = generateSplit('train', 2, 16, 4).slice(0, 3);
    const engine = await policy();
    const rollouts = await sampleRollouts(engine, examples, { n: 4, temperature: 1, topP: 1, maxTokens: 12, seed: 9, promptsPerBatch: 3 });
    const ref = await referenceLogprobs(engine, examples, rollouts, 1, 6);
    const advantages = rollouts.map((_, i) => [1, -1, 0.5, -0.5][i % 4]!);
    // Only the clipped surrogate (no KL, no entropy), a large step and a small clip, so the second epoch's ratios pass it.
    const ppo = { ...settings, lr: 0.05, clipEps: 0.05, klCoef: 0, entropyCoef: 0, microBatch: 6 };
    const single = await grpoUpdate(await policy(), examples, rollouts, ref, advantages, ppo);
    expect(single.optimizerSteps).toBe(1);
    expect(single.clipFraction).toBe(0); // one update: its only forward is at the sampling weights, every ratio 1

    const update = await grpoUpdate(engine, examples, rollouts, ref, advantages, { ...ppo, ppoEpochs: 2, miniBatches: 2 });
    expect(update.optimizerSteps).toBe(4);
    expect(update.applied).toBe(true);
    expect(update.clipFraction).toBeGreaterThan(0);
    expect(update.epochLosses).toHaveLength(2);
    // The loss the engine reports is the token mean of −min(r·A, clip(r, 1±ε)·A), r = π_θ/π_old with π_old the
    // sampler's: recomputed here from the policy's logprobs after the update, for one more (third) epoch's view.
    const after = await referenceLogprobs(engine, examples, rollouts, 1, 6);
    let sum = 0;
    let tokens = 0;
    rollouts.forEach((r, i) => {
      r.tokens.forEach((_, j) => {
        const ratio = Math.exp(after[i]![j]! - r.logprobs[j]!);
        const a = advantages[i]!;
        sum += -Math.min(ratio * a, Math.min(Math.max(ratio, 1 - ppo.clipEps), 1 + ppo.clipEps) * a);
        tokens++;
      });
    });
    const third = await grpoUpdate(engine, examples, rollouts, ref, advantages, { ...ppo, lr: 0 });
    expect(third.loss).toBeCloseTo(sum / tokens, 5);
    expect(third.clipFraction).toBeGreaterThan(0);
    // And the first epoch's first forward was at the sampling weights: no sampler–trainer mismatch reported.
    expect(update.logprobDiffMax).toBeLessThan(1e-5);
  });
});
