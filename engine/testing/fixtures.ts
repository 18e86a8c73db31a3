/**
 * Small deterministic models and batches for engine tests (and the resume child process).
 */
import { packReward, packSft } from '../batch';
import { type ModelConfig, parameterSpecs } from '../model/config';
import { pseudoRandom } from '../onnx/gradcheck';
import type { TokenEngine } from '../types';
import { Rng } from '../rng';

export function microConfig(kind: ModelConfig['kind'] = 'policy'): ModelConfig {
  return { kind, vocabSize: 12, maxLength: 16, layers: 1, width: 32, heads: 2, mlpRatio: 2, image: { size: 4, channels: 3, patch: 2 }, initStd: 0.02 };
}

/**
 * The model of the float64 checks (gradients, graph equivalences): 2 layers (a block before the last and the last,
 * which computes fewer positions), width 8, 4 image tokens; small enough for float64 graphs and finite differences.
 */
export function checkConfig(kind: ModelConfig['kind'] = 'policy', maxLength = 8): ModelConfig {
  return { kind, vocabSize: 7, maxLength, layers: 2, width: 8, heads: 2, mlpRatio: 2, image: { size: 4, channels: 3, patch: 2 }, initStd: 0.02 };
}

/** Deterministic parameter values for the float64 checks: weights in ±0.5, layer-norm gains near 1. */
export function checkParams(config: ModelConfig, seed: number): { name: string; shape: number[]; values: number[] }[] {
  return parameterSpecs(config).map((s, i) => ({
    name: s.name,
    shape: [...s.shape],
    values: pseudoRandom(s.shape.reduce((a, b) => a * b, 1), seed + i).map((x) => (s.init === 'ones' ? 1 + 0.3 * x : 0.5 * x)),
  }));
}

export const PIXELS = 3 * 4 * 4;

export function images(rows: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: rows * PIXELS }, () => rng.nextFloat());
}

/** Four fixed (prompt, response) rows over a 12-token vocabulary; token 11 ends each response. */
export function memorizeRows(seed = 3): { prompt: number[]; response: number[] }[] {
  const rng = new Rng(seed);
  const rand = (n: number) => Array.from({ length: n }, () => 1 + (rng.nextU32() % 10));
  return [3, 4, 5, 3].map((len, i) => ({ prompt: [0, ...rand(2 + (i % 2))], response: [...rand(len), 11] }));
}

export function memorizeBatch(seed = 3) {
  const rows = memorizeRows(seed);
  return packSft(rows, images(rows.length, seed), PIXELS);
}

/** A batch that depends only on the step index: what "the same data order" means in resume tests. */
export function batchForStep(step: number) {
  const rng = new Rng(1000 + step);
  const rows = Array.from({ length: 3 }, () => ({
    prompt: [0, 1 + (rng.nextU32() % 10)],
    response: Array.from({ length: 2 + (rng.nextU32() % 4) }, () => 1 + (rng.nextU32() % 10)),
  }));
  return packSft(rows, images(rows.length, 2000 + step), PIXELS);
}

export const ADAMW = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 };

export async function trainOnStepBatches(engine: TokenEngine, steps: number): Promise<void> {
  for (let i = 0; i < steps; i++) {
    const result = await engine.trainStep(batchForStep(engine.step()), { kind: 'sft' }, ADAMW);
    if (!result.applied) throw new Error(`step ${engine.step()} was not applied`);
  }
}

export function rewardBatch(seed = 5) {
  const rows = memorizeRows(seed).map((r, i) => ({ ...r, score: [0.1, 0.9, 0.4, 0.7][i]! }));
  return packReward(rows, images(rows.length, seed), PIXELS);
}
