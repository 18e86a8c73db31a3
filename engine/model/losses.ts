/**
 * Loss graphs (docs/architecture.md §3), each a scalar to differentiate plus metrics:
 *
 *  - `sft`:  masked token cross-entropy, mean over the masked tokens of the batch;
 *  - `grpo`: per token, −min(r·A, clip(r, 1−ε, 1+ε)·A) with r = exp(clamp(logπ − logπ_old, ±10)),
 *            + β·KL_k3(π‖π_ref) − c_ent·entropy, averaged over all response tokens of the batch;
 *  - `rm`:   mean squared error of the reward head's score against targets in [0, 1].
 *
 * Hyperparameters (ε, β, c_ent, temperature) are graph inputs, so one graph serves every setting.
 */
import type { Graph, Value } from '../onnx/graph';
import * as op from '../onnx/ops';

export interface LossOutput {
  loss: Value;
  /** Scalar metrics, by name. */
  metrics: Record<string, Value>;
}

/** log π(target) per position: (B, T, V) logits, (B, T) int64 targets → (B, T); also log π over V. */
export function targetLogprobs(g: Graph, logits: Value, targets: Value): { picked: Value; logp: Value } {
  const [b, t] = targets.shape as [number, number];
  const logp = op.logSoftmax(g, logits, -1);
  const picked = op.reshape(g, op.gatherElements(g, logp, op.reshape(g, targets, [b, t, 1]), -1), [b, t]);
  return { picked, logp };
}

/** Σ x·mask / max(Σ mask, 1): mean over masked positions. */
function maskedMean(g: Graph, x: Value, mask: Value, count: Value): Value {
  return op.div(g, op.sumAll(g, op.mul(g, x, mask)), count);
}

function tokenCount(g: Graph, mask: Value): Value {
  return op.max(g, op.sumAll(g, mask), g.scalar(1, mask.dtype));
}

export function sftLoss(g: Graph, logits: Value, targets: Value, lossMask: Value): LossOutput {
  const { picked } = targetLogprobs(g, logits, targets);
  const count = tokenCount(g, lossMask);
  const loss = op.neg(g, maskedMean(g, picked, lossMask, count));
  return { loss, metrics: { tokens: op.stopGradient(g, count) } };
}

export interface GrpoInputs {
  targets: Value; // (B, T) int64
  lossMask: Value; // (B, T) 1 on response tokens
  oldLogprobs: Value; // (B, T) sampling policy
  refLogprobs: Value; // (B, T) reference policy (RL start)
  advantages: Value; // (B) one per sequence, the same on every token
  clipEps: Value; // scalar ε
  klCoef: Value; // scalar β
  entropyCoef: Value; // scalar c_ent
  temperature: Value; // scalar: logits are divided by it, as at sampling time
}

export function grpoLoss(g: Graph, logits: Value, x: GrpoInputs): LossOutput {
  const [b] = x.targets.shape as [number, number];
  const scaled = op.div(g, logits, x.temperature);
  const { picked: logpNew, logp } = targetLogprobs(g, scaled, x.targets);
  const count = tokenCount(g, x.lossMask);
  const one = g.scalar(1);
  // PPO clipped surrogate with the log-ratio clamped to ±10 (exp overflow guard).
  const ratio = op.exp(g, op.clip(g, op.sub(g, logpNew, x.oldLogprobs), -10, 10));
  const adv = op.reshape(g, x.advantages, [b, 1]);
  const unclipped = op.mul(g, ratio, adv);
  const clippedRatio = op.min(g, op.max(g, ratio, op.sub(g, one, x.clipEps)), op.add(g, one, x.clipEps));
  const clipped = op.mul(g, clippedRatio, adv);
  const policyLoss = op.neg(g, op.min(g, unclipped, clipped));
  // k3 estimator of KL(π‖π_ref): e^(ref − new) − (ref − new) − 1 ≥ 0.
  const refMinusNew = op.sub(g, x.refLogprobs, logpNew);
  const kl = op.sub(g, op.sub(g, op.exp(g, refMinusNew), refMinusNew), one);
  // Entropy of π over the vocabulary at each position.
  const entropy = op.neg(g, op.reduceSum(g, op.mul(g, op.exp(g, logp), logp), [-1]));
  const perToken = op.sub(g, op.add(g, policyLoss, op.mul(g, x.klCoef, kl)), op.mul(g, x.entropyCoef, entropy));
  const loss = maskedMean(g, perToken, x.lossMask, count);
  const isClipped = op.cast(g, op.less(g, clipped, unclipped), g.floatType);
  const absDiff = op.abs(g, op.sub(g, logpNew, x.oldLogprobs));
  const sg = (v: Value) => op.stopGradient(g, v);
  return {
    loss,
    metrics: {
      policy_loss: sg(maskedMean(g, policyLoss, x.lossMask, count)),
      kl: sg(maskedMean(g, kl, x.lossMask, count)),
      entropy: sg(maskedMean(g, entropy, x.lossMask, count)),
      clip_fraction: sg(maskedMean(g, isClipped, x.lossMask, count)),
      ratio_mean: sg(maskedMean(g, ratio, x.lossMask, count)),
      // With ratio_mean: the importance weights' effective sample size (Σr)²/(N·Σr²) over a step.
      ratio_sq_mean: sg(maskedMean(g, op.mul(g, ratio, ratio), x.lossMask, count)),
      // |log π − log π_old| on the loss tokens: at an RL step's first update π is the policy that sampled, so this is
      // the sampler–trainer logprob mismatch (stale or mismatched rollout weights show here).
      logprob_diff_mean: sg(maskedMean(g, absDiff, x.lossMask, count)),
      logprob_diff_max: op.reduceMax(g, op.mul(g, sg(absDiff), x.lossMask), x.lossMask.shape.map((_, i) => i)),
      tokens: sg(count),
    },
  };
}

export function rmLoss(g: Graph, score: Value, targets: Value): LossOutput {
  const [b] = score.shape as [number];
  const diff = op.sub(g, score, targets);
  const loss = op.mulScalar(g, op.sumAll(g, op.square(g, diff)), 1 / b);
  return { loss, metrics: { mae: op.stopGradient(g, op.mulScalar(g, op.sumAll(g, op.abs(g, diff)), 1 / b)) } };
}
