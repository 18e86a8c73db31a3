/**
 * Loss graphs that start at `lossFrom` (the positions before it have no loss in any row; for the reward model, no
 * row's last token) give the loss, metrics and gradient of the graph over every position, and score graphs the
 * same scores; `lossStart` and `lastIndexStart` find that position in a batch.
 */
import { describe, expect, it } from 'vitest';
import { pseudoRandom } from '../onnx/gradcheck';
import { type HostTensor, Session, hostTensor } from '../onnx/runtime';
import { checkConfig, checkParams } from '../testing/fixtures';
import type { ModelConfig } from './config';
import { LOSS_METRICS, buildGradGraph, buildScoreGraph, lastIndexStart, lossStart } from './graphs';

const config = checkConfig('policy', 8);
const rmConfig = checkConfig('reward', 8);
const B = 2;
const T = 6;

function feeds(model: ModelConfig, lossMask: number[], lastIndex: number[] = [5, 5]): Record<string, HostTensor> {
  const f64 = (shape: number[], values: number[]) => hostTensor('float64', shape, Float64Array.from(values));
  const i64 = (shape: number[], values: number[]) => hostTensor('int64', shape, BigInt64Array.from(values.map(BigInt)));
  return {
    ...Object.fromEntries(checkParams(model, 300).map((p) => [`p:${p.name}`, f64(p.shape, p.values)])),
    image: f64([B, 3, 4, 4], pseudoRandom(B * 48, 5).map((x) => (x + 1) / 2)),
    tokens: i64([B, T], [1, 2, 3, 4, 5, 6, 0, 0, 6, 2, 1, 3]), // row 2 is left-padded by two
    positions: i64([B, T], [0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 2, 3]),
    attention_mask: f64([B, T], [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1]),
    targets: i64([B, T], [2, 3, 4, 5, 6, 1, 0, 0, 2, 1, 3, 4]),
    loss_mask: f64([B, T], lossMask),
    old_logprobs: f64([B, T], pseudoRandom(B * T, 12).map((x) => -2 + 0.3 * x)),
    ref_logprobs: f64([B, T], pseudoRandom(B * T, 13).map((x) => -2 + 0.3 * x)),
    advantages: f64([B], [0.8, -1.1]),
    clip_eps: f64([], [0.2]),
    kl_coef: f64([], [0.04]),
    entropy_coef: f64([], [0.001]),
    temperature: f64([], [0.9]),
    last_index: i64([B], lastIndex),
    score_targets: f64([B], [0.3, 0.9]),
  };
}

async function gradRun(loss: 'sft' | 'grpo' | 'rm', lossFrom: number, lossMask: number[], lastIndex?: number[]): Promise<Float64Array[]> {
  const model = loss === 'rm' ? rmConfig : config;
  const session = await Session.create(buildGradGraph(model, loss, B, T, 'float64', lossFrom).toModel());
  const all = feeds(model, lossMask, lastIndex);
  const out = await session.run(Object.fromEntries(session.inputNames.map((name) => [name, all[name]!])));
  await session.dispose();
  return ['loss', ...LOSS_METRICS[loss].map((m) => `metric:${m}`), 'grad'].map((name) => out[name]!.data as Float64Array);
}

const maxDiff = (a: Float64Array[], b: Float64Array[]) => Math.max(...a.map((x, i) => Math.max(...x.map((v, j) => Math.abs(v - b[i]![j]!)))));

describe('loss graphs from the first position with loss', () => {
  // No loss before text position 3 in either row.
  const late = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1];

  it.each(['sft', 'grpo'] as const)('%s: the same loss, metrics and gradient as the graph over every position', async (loss) => {
    const full = await gradRun(loss, 0, late);
    const from3 = await gradRun(loss, 3, late);
    expect(full[0]![0]).not.toBe(0);
    expect(maxDiff(full, from3)).toBeLessThan(1e-12);
    // Starting past a position that has loss changes the result: the comparison above can tell.
    expect(maxDiff(full, await gradRun(loss, 4, late))).toBeGreaterThan(1e-3);
  });

  // The rows' last real tokens at text positions 3 and 5 (row 2 is left-padded, so its tokens end at 5 too).
  it('rm: the same loss, metric and gradient, last_index counting from the start', async () => {
    const full = await gradRun('rm', 0, late, [3, 5]);
    expect(maxDiff(full, await gradRun('rm', 3, late, [0, 2]))).toBeLessThan(1e-12);
    expect(maxDiff(full, await gradRun('rm', 3, late, [3, 5]))).toBeGreaterThan(1e-3);
  });

  it('score: the same scores from a later start', async () => {
    const scores = async (from: number, lastIndex: number[]) => {
      const session = await Session.create(buildScoreGraph(rmConfig, B, T, 'float64', from).toModel());
      const all = feeds(rmConfig, late, lastIndex);
      const out = await session.run(Object.fromEntries(session.inputNames.map((name) => [name, all[name]!])));
      await session.dispose();
      return [out.score!.data as Float64Array];
    };
    expect(maxDiff(await scores(0, [3, 5]), await scores(3, [0, 2]))).toBeLessThan(1e-12);
  });

  it('rejects a start outside the sequence', () => {
    expect(() => buildGradGraph(config, 'sft', B, T, 'float64', T)).toThrow(/lossFrom 6 is outside \[0, 6\)/);
    expect(() => buildScoreGraph(rmConfig, B, T, 'float64', -1)).toThrow(/from -1 is outside \[0, 6\)/);
  });
});

describe('lossStart', () => {
  it('finds the first position with loss in any row, rounded down to the step', () => {
    expect(lossStart([0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1], 2, 6, 1)).toBe(3);
    expect(lossStart([0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0], 2, 6, 1)).toBe(2);
    expect(lossStart([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1], 2, 6, 4)).toBe(4);
    expect(lossStart([0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1], 2, 6, 4)).toBe(0);
    expect(lossStart([1, 0, 0, 0, 0, 0], 1, 6, 1)).toBe(0);
  });

  it('is 0 when no position has loss', () => {
    expect(lossStart(new Float32Array(12), 2, 6, 1)).toBe(0);
  });
});

describe('lastIndexStart', () => {
  it('is the earliest last token, rounded down to the step', () => {
    expect(lastIndexStart(BigInt64Array.of(9n, 13n), 8)).toBe(8);
    expect(lastIndexStart(BigInt64Array.of(13n, 9n), 1)).toBe(9);
    expect(lastIndexStart(BigInt64Array.of(7n, 13n), 8)).toBe(0);
    expect(lastIndexStart(BigInt64Array.of(0n), 1)).toBe(0);
  });
});
