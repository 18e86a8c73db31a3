/**
 * Whole-model gradient checks: the policy with the SFT and GRPO losses and the reward model with the RM loss,
 * built by the same functions the engine uses, differentiated by autodiff and compared with float64 central
 * differences (ε = 1e-6; |analytic − numeric| ≤ 1e-6 + 1e-4·|numeric|) on a micro configuration.
 * Up to 24 elements of every parameter are checked.
 */
import { describe, expect, it } from 'vitest';
import { gradCheck, pseudoRandom } from '../onnx/gradcheck';
import { checkConfig, checkParams } from '../testing/fixtures';
import type { ModelConfig } from './config';
import { forwardLoss, type LossKind } from './graphs';

const B = 2;
const T = 5;

function batchFeeds(loss: LossKind) {
  const f64 = (name: string, shape: number[], values: number[]) => ({ name, dtype: 'float64' as const, shape, values });
  const i64 = (name: string, shape: number[], values: number[]) => ({ name, dtype: 'int64' as const, shape, values });
  const feeds = [
    f64('image', [B, 3, 4, 4], pseudoRandom(B * 48, 11).map((x) => (x + 1) / 2)),
    i64('tokens', [B, T], [1, 2, 3, 4, 5, 0, 0, 6, 2, 1]), // row 2 is left-padded by two
    i64('positions', [B, T], [0, 1, 2, 3, 4, 0, 0, 0, 1, 2]),
    f64('attention_mask', [B, T], [1, 1, 1, 1, 1, 0, 0, 1, 1, 1]),
  ];
  if (loss === 'rm') return [...feeds, i64('last_index', [B], [4, 4]), f64('score_targets', [B], [0.3, 0.9])];
  const text = [
    i64('targets', [B, T], [2, 3, 4, 5, 6, 0, 0, 2, 1, 3]),
    f64('loss_mask', [B, T], [0, 1, 1, 1, 0, 0, 0, 1, 1, 1]),
  ];
  if (loss === 'sft') return [...feeds, ...text];
  return [
    ...feeds,
    ...text,
    f64('old_logprobs', [B, T], pseudoRandom(B * T, 12).map((x) => -2 + 0.3 * x)),
    f64('ref_logprobs', [B, T], pseudoRandom(B * T, 13).map((x) => -2 + 0.3 * x)),
    f64('advantages', [B], [0.8, -1.1]),
    f64('clip_eps', [], [0.2]),
    f64('kl_coef', [], [0.04]),
    f64('entropy_coef', [], [0.001]),
    f64('temperature', [], [0.9]),
  ];
}

describe('whole-model gradients match float64 central differences', () => {
  it.each<[string, ModelConfig['kind'], LossKind]>([
    ['policy + SFT loss', 'policy', 'sft'],
    ['policy + GRPO loss', 'policy', 'grpo'],
    ['reward model + RM loss', 'reward', 'rm'],
  ])('%s', async (_name, kind, loss) => {
    const config = checkConfig(kind, 6);
    const result = await gradCheck(
      {
        params: checkParams(config, 100),
        fixed: batchFeeds(loss),
        buildDeclaresFixed: true,
        build: (g, inputs) => forwardLoss(g, config, inputs, loss, B, T).loss,
      },
      { atol: 1e-6, rtol: 1e-4, maxElements: 24 },
    );
    expect(result.checked).toBeGreaterThan(300);
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(result.worst).toBeLessThanOrEqual(1);
  });
});
