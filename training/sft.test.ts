import { describe, expect, it } from 'vitest';
import { createEngine } from '../engine/factory';
import type { ModelConfig } from '../engine/model/config';
import { evaluate } from '../evaluation/evaluate';
import { generateSplit } from '../tasks/dataset';
import { Tokenizer } from '../engine/model/tokenizer';
import { type SftSettings, batchIndices, learningRate, runSft } from './sft';

const settings: SftSettings = { steps: 100, batchSize: 8, lr: 1e-3, warmupSteps: 10, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 1, evalEvery: 20, patience: 2, seed: 3 };

describe('SFT schedule and data order', () => {
  it('warms up linearly, then decays by cosine to lr · minLrRatio', () => {
    expect(learningRate(settings, 0)).toBeCloseTo(1e-4, 12);
    expect(learningRate(settings, 9)).toBeCloseTo(1e-3, 12);
    expect(learningRate(settings, 10)).toBeCloseTo(1e-3, 12);
    expect(learningRate(settings, 55)).toBeCloseTo(1e-4 + 0.9e-3 * 0.5, 12);
    expect(learningRate(settings, 100)).toBeCloseTo(1e-4, 12);
  });

  it('makes each step\'s batch a function of (seed, step): every example once per epoch, resumable anywhere', () => {
    const epoch = Array.from({ length: 5 }, (_, s) => batchIndices(40, 8, s, 1)).flat();
    expect([...epoch].sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(batchIndices(40, 8, 7, 1)).toEqual(batchIndices(40, 8, 7, 1));
    expect(batchIndices(40, 8, 5, 1)).not.toEqual(batchIndices(40, 8, 0, 1)); // the next epoch is reshuffled
    // A batch that straddles an epoch boundary (count not divisible by the batch size).
    expect(batchIndices(10, 4, 2, 1).length).toBe(4);
  });
});

describe('runSft and evaluate on a micro model', () => {
  const tokenizer = new Tokenizer();
  const micro: ModelConfig = { kind: 'policy', vocabSize: tokenizer.vocabSize, maxLength: 128, layers: 1, width: 32, heads: 2, mlpRatio: 2, image: { size: 16, channels: 3, patch: 4 }, initStd: 0.02 };

  it('lowers the validation loss, keeps the best state, and stops early when validation stalls', async () => {
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(micro, 1);
    const train = generateSplit('train', 8, 16, 1);
    const validation = generateSplit('test', 2, 16, 9);
    const steps: number[] = [];
    const result = await runSft(engine, train, validation, { ...settings, lr: 3e-3 }, { onStep: (s) => void steps.push(s.step) });
    expect(steps[0]).toBe(1);
    expect(result.validations[0]!.step).toBe(20);
    expect(result.bestValLoss).toBeLessThan(result.validations[0]!.valLoss);
    expect(result.bestState).toEqual([{ name: expect.any(String) as string, data: expect.any(Uint8Array) as Uint8Array }]);
    const last = result.history.at(-1)!;
    expect(last.loss).toBeLessThan(result.history[0]!.loss);
    // Early stop: with patience 0 the first validation that is not a new best ends training.
    const engine2 = createEngine({ kind: 'onnx' });
    await engine2.init(micro, 1);
    const stalled = await runSft(engine2, train, validation, { ...settings, lr: 0, warmupSteps: 1, patience: 0 });
    expect(stalled.stoppedEarly).toBe(true);
    expect(stalled.steps).toBe(40);
    await engine.dispose();
    await engine2.dispose();
  });

  it('evaluates: an untrained model fails the format gate, a teacher-forced model is measured per family', async () => {
    const engine = createEngine({ kind: 'onnx' });
    await engine.init(micro, 2);
    const test = generateSplit('test', 2, 16, 1);
    const report = await evaluate(engine, test, 'test', { k: 2, temperature: 1, maxTokens: 8, promptsPerBatch: 4, seed: 1 });
    expect(report.overall.examples).toBe(10);
    expect(Object.keys(report.byFamily)).toEqual(['counting', 'chart', 'ocr', 'math', 'choice']);
    expect(report.byFamily.ocr?.examples).toBe(2);
    expect(report.overall.formatRate).toBe(0);
    expect(report.overall.accuracy).toBe(0);
    expect(report.overall.passAtK).toBe(0);
    expect(report.overall.meanLength).toBeGreaterThan(0);
    expect(report.overall.meanLength).toBeLessThanOrEqual(8);
    await engine.dispose();
  });
});
