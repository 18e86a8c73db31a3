/**
 * The policy side of a Trust-GRPO step (docs/architecture.md §3): reference logprobs of the rollouts under the frozen
 * reference model, and the `grpo` update (PPO clipped ratio against the sampling logprobs, k3 KL to the
 * reference, entropy bonus, token mean over the step's rollouts) with one optimizer step per RL step, or
 * `ppoEpochs` × `miniBatches` of them (each mini-batch's gradient its own token mean). The
 * rollouts are processed in micro-batches, each passed to the engine with its number of response tokens as its
 * gradient weight, so the step's gradient is the mean over ALL response tokens of the step (docs/architecture.md §3), not
 * the mean of the micro-batches' means (which would weight a token of a short micro-batch more).
 *
 * Rewards and advantages are not computed here: they come from `rl/trust.ts` (outcome and thinking rewards are
 * separate activities), so this module only sees one advantage per rollout.
 */
import { type AdamWSettings, type ChatPrompt, DEFAULT_ADAMW, type Engine } from '../engine/types';
import { promptOf } from '../tasks/prompt';
import type { Example } from '../tasks/types';
import type { Rollout } from './rollouts';

export interface GrpoSettings {
  lr: number;
  weightDecay: number;
  maxGradNorm: number;
  clipEps: number;
  klCoef: number;
  entropyCoef: number;
  temperature: number;
  microBatch: number;
  /** Truncated importance sampling of the sampler–trainer mismatch (`rl.tisCap`; torch engine): off when absent. */
  tisCap?: number;
  /**
   * PPO epochs over the step's rollouts (`rl.ppoEpochs`, default 1) and mini-batches per epoch (`rl.miniBatches`,
   * default 1): one optimizer step per mini-batch, epochs × miniBatches steps per RL step, every one against the
   * sampling logprobs (so from the second step on the ratio moves and the clip can bite).
   */
  ppoEpochs?: number;
  miniBatches?: number;
}

export interface GrpoUpdateRecord {
  loss: number;
  kl: number;
  entropy: number;
  clipFraction: number;
  /** The mean gradient norm of the step's optimizer steps. */
  gradNorm: number;
  /** Whether every optimizer step was applied. */
  applied: boolean;
  /** Optimizer steps taken (ppoEpochs × miniBatches). */
  optimizerSteps: number;
  /** Token-mean loss of each epoch (the first epoch's first mini-batch at the sampling policy's weights). */
  epochLosses: number[];
  /**
   * Mean and largest |log π − log π_old| over the step's response tokens, as the update computes log π: the policy
   * that samples is the one updated, so anything above float noise means the rollouts' logprobs (or weights) do not
   * match the trainer's.
   */
  logprobDiffMean: number;
  logprobDiffMax: number;
  /**
   * Effective sample size of the sampler–trainer importance weights r = π_trainer/π_sampler over the step's tokens,
   * (Σr)²/(N·Σr²): 1 when they agree, falling as they drift apart (undefined if the engine reports no ratio_sq_mean).
   */
  importanceEss?: number;
  /** With `tisCap`: the share of tokens whose weight the cap cut. */
  tisCappedFraction?: number;
}

/**
 * The prompts of a slice of rollouts (each distinct example once, in order of first use) and, per rollout, the index
 * of its prompt there.
 */
function rolloutPrompts(examples: readonly Example[], rollouts: readonly Rollout[]): { prompts: ChatPrompt[]; index: number[] } {
  const prompts: ChatPrompt[] = [];
  const byGroup = new Map<number, number>();
  const index = rollouts.map((r) => {
    const example = examples[r.group];
    if (!example || example.id !== r.exampleId) throw new RangeError(`rollout of ${r.exampleId}: group ${r.group} does not name that example`);
    let at = byGroup.get(r.group);
    if (at === undefined) {
      at = prompts.push(promptOf(example)) - 1;
      byGroup.set(r.group, at);
    }
    return at;
  });
  return { prompts, index };
}

/** log π_ref of every rollout token, under the reference engine (same temperature as sampling). */
export async function referenceLogprobs(reference: Pick<Engine, 'responseLogprobs'>, examples: readonly Example[], rollouts: readonly Rollout[], temperature: number, microBatch: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let start = 0; start < rollouts.length; start += microBatch) {
    const chunk = rollouts.slice(start, start + microBatch);
    const { prompts, index } = rolloutPrompts(examples, chunk);
    const logprobs = await reference.responseLogprobs({ prompts, rows: chunk.map((r, i) => ({ prompt: index[i]!, response: r.tokens })) }, temperature);
    for (const row of logprobs) out.push(Array.from(row));
  }
  return out;
}

/** One policy update over all rollouts of a step; rows with a zero advantage still count in the KL/entropy terms. */
export async function grpoUpdate(
  engine: Engine,
  examples: readonly Example[],
  rollouts: readonly Rollout[],
  refLogprobs: readonly (readonly number[])[],
  advantages: readonly number[],
  settings: GrpoSettings,
): Promise<GrpoUpdateRecord> {
  if (refLogprobs.length !== rollouts.length || advantages.length !== rollouts.length) {
    throw new RangeError(`grpoUpdate: ${rollouts.length} rollouts but ${refLogprobs.length} reference logprob rows and ${advantages.length} advantages`);
  }
  const loss = {
    kind: 'grpo',
    clipEps: settings.clipEps,
    klCoef: settings.klCoef,
    entropyCoef: settings.entropyCoef,
    temperature: settings.temperature,
    ...(settings.tisCap !== undefined ? { tisCap: settings.tisCap } : {}),
  } as const;
  const sums = { loss: 0, kl: 0, entropy: 0, clipFraction: 0, logprobDiff: 0, logprobDiffMax: 0, tokens: 0, ratio: 0, ratioSq: 0, capped: 0, mismatchTokens: 0 };
  let reportsRatios = true;
  const adamw: AdamWSettings = { ...DEFAULT_ADAMW, lr: settings.lr, weightDecay: settings.weightDecay, maxGradNorm: settings.maxGradNorm };
  const epochs = settings.ppoEpochs ?? 1;
  const minis = settings.miniBatches ?? 1;
  if (!(Number.isInteger(epochs) && epochs >= 1 && Number.isInteger(minis) && minis >= 1 && minis <= rollouts.length)) {
    throw new RangeError(`grpoUpdate: ppoEpochs ${epochs} and miniBatches ${minis} must be whole numbers >= 1, miniBatches at most the ${rollouts.length} rollouts`);
  }
  const epochLosses: number[] = [];
  let gradNorms = 0;
  let applied = true;
  for (let epoch = 0; epoch < epochs; epoch++) {
    let epochLoss = 0;
    let epochTokens = 0;
    for (let mini = 0; mini < minis; mini++) {
      // Contiguous mini-batches of rollouts (a step's groups stay together when the counts divide).
      const from = Math.floor((rollouts.length * mini) / minis);
      const to = Math.floor((rollouts.length * (mini + 1)) / minis);
      for (let start = from; start < to; start += settings.microBatch) {
        const end = Math.min(to, start + settings.microBatch);
        const chunk = rollouts.slice(start, end);
        const { prompts, index } = rolloutPrompts(examples, chunk);
        const rows = chunk.map((r, i) => ({ prompt: index[i]!, response: r.tokens, oldLogprobs: r.logprobs, refLogprobs: refLogprobs[start + i]!, advantage: advantages[start + i]! }));
        // The micro-batch's loss is its token mean: weighted by its tokens, the mini-batch's gradient is the token
        // mean of the whole mini-batch, and so are the reported metrics.
        const tokens = chunk.reduce((sum, r) => sum + r.tokens.length, 0);
        const out = await engine.forwardBackwardResponses({ prompts, rows }, loss, { weight: tokens });
        if (!out.finite) throw new Error(`GRPO micro-batch ${start}–${end}: the loss is not finite (${out.loss})`);
        epochLoss += out.loss * tokens;
        epochTokens += tokens;
        sums.loss += out.loss * tokens;
        sums.kl += (out.metrics.kl ?? 0) * tokens;
        sums.entropy += (out.metrics.entropy ?? 0) * tokens;
        sums.clipFraction += (out.metrics.clip_fraction ?? 0) * tokens;
        sums.capped += (out.metrics.tis_capped_fraction ?? 0) * tokens;
        sums.tokens += tokens;
        if (epoch === 0 && mini === 0) {
          // The sampler–trainer mismatch: only before this step's first optimizer step (after it, the ratio also
          // holds the update's own change).
          sums.logprobDiff += (out.metrics.logprob_diff_mean ?? 0) * tokens;
          sums.logprobDiffMax = Math.max(sums.logprobDiffMax, out.metrics.logprob_diff_max ?? 0);
          if (out.metrics.ratio_mean === undefined || out.metrics.ratio_sq_mean === undefined) reportsRatios = false;
          sums.ratio += (out.metrics.ratio_mean ?? 0) * tokens;
          sums.ratioSq += (out.metrics.ratio_sq_mean ?? 0) * tokens;
          sums.mismatchTokens += tokens;
        }
      }
      const step = await engine.optimStep(adamw);
      gradNorms += step.gradNorm;
      applied &&= step.applied;
    }
    epochLosses.push(epochLoss / Math.max(1, epochTokens));
  }
  const t = Math.max(1, sums.tokens);
  const m = Math.max(1, sums.mismatchTokens);
  return {
    loss: sums.loss / t,
    kl: sums.kl / t,
    entropy: sums.entropy / t,
    clipFraction: sums.clipFraction / t,
    gradNorm: gradNorms / (epochs * minis),
    applied,
    optimizerSteps: epochs * minis,
    epochLosses,
    logprobDiffMean: sums.logprobDiff / m,
    logprobDiffMax: sums.logprobDiffMax,
    ...(reportsRatios && sums.ratioSq > 0 ? { importanceEss: (sums.ratio * sums.ratio) / (m * sums.ratioSq) } : {}),
    ...(settings.tisCap !== undefined ? { tisCappedFraction: sums.capped / t } : {}),
  };
}
