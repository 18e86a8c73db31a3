/**
 * Training the thinking reward model (docs/architecture.md §3): annotated (example, response, score) items, the engine's
 * `rm` loss (regression of the sigmoid head to the score), validation on held-out items, and scoring.
 *
 * Like SFT, everything is a function of (settings, step): step s trains on a fixed slice of a per-epoch
 * permutation of the training items, so an interrupted and resumed run trains on exactly the same batches.
 */
import { type AdamWSettings, DEFAULT_ADAMW, type Engine, type ResponseBatch, type RewardRow } from '../engine/types';
import { pairwiseAccuracy } from '../rewards/metrics';
import { promptsOf } from '../tasks/prompt';
import type { Example } from '../tasks/types';
import { type SftSettings, batchIndices, learningRate } from './sft';

/** One annotated response. */
export interface RewardItem {
  exampleId: string;
  response: string;
  /** The annotation in [0, 1]. */
  score: number;
}

/** The SFT schedule's fields that a reward-model step uses (same schedule, different loss and data). */
export type RewardTrainSettings = Omit<SftSettings, 'evalEvery' | 'patience'>;

export interface RewardStepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
}

/**
 * Rows of items: each example's prompt and the response as the model writes it (its tokens and end token); responses
 * that do not fit the model's length after their prompt are cut at the end.
 */
async function rows(engine: Engine, examples: ReadonlyMap<string, Example>, items: readonly RewardItem[]): Promise<ResponseBatch<RewardRow>> {
  const list = items.map((item) => {
    const example = examples.get(item.exampleId);
    if (!example) throw new RangeError(`reward item for ${item.exampleId}: no such example in the run's data`);
    return example;
  });
  const prompts = promptsOf(list);
  const [promptLengths, responses] = await Promise.all([engine.promptLengths(prompts), engine.encodeResponses(items.map((i) => i.response))]);
  const maxLength = engine.maxLength();
  return {
    prompts,
    rows: items.map((item, i) => ({ prompt: i, response: responses[i]!.slice(0, Math.max(1, maxLength - promptLengths[i]!)), score: item.score })),
  };
}

/** Step `step` of the schedule: `loss` over that step's batch of `items` (`batchSize` of them). */
async function scheduledStep(
  engine: Engine,
  examples: ReadonlyMap<string, Example>,
  items: readonly RewardItem[],
  settings: RewardTrainSettings,
  step: number,
  batch: { size: number; loss: { kind: 'rm' } | { kind: 'sft' }; what: string },
): Promise<RewardStepRecord> {
  const indices = batchIndices(items.length, batch.size, step, settings.seed);
  const rowsOfStep = await rows(engine, examples, indices.map((i) => items[i]!));
  const lr = learningRate({ ...settings, evalEvery: 1, patience: 0 }, step);
  const adamw: AdamWSettings = { ...DEFAULT_ADAMW, lr, weightDecay: settings.weightDecay, maxGradNorm: settings.maxGradNorm };
  const out = await engine.trainStepResponses(rowsOfStep, batch.loss, adamw);
  if (!out.applied) throw new Error(`${batch.what} step ${step}: loss or gradients are not finite (loss ${out.loss}); the step was not applied`);
  return { step: step + 1, loss: out.loss, lr, gradNorm: out.gradNorm };
}

export function rewardStep(engine: Engine, examples: ReadonlyMap<string, Example>, items: readonly RewardItem[], settings: RewardTrainSettings, step: number): Promise<RewardStepRecord> {
  return scheduledStep(engine, examples, items, settings, step, { size: settings.batchSize, loss: { kind: 'rm' }, what: 'reward-model' });
}

/**
 * A judge's scores in [0, 1] for (example, response) pairs, `batchSize` at a time. How it scores follows the model the
 * engine holds (`rewardModel.kind`): a reward model's scalar head, or a policy's likelihood of the response
 * (`likelihoodJudgeScore`).
 */
export async function scoreResponses(
  engine: Engine,
  examples: ReadonlyMap<string, Example>,
  items: readonly Pick<RewardItem, 'exampleId' | 'response'>[],
  batchSize: number,
  onProgress?: (done: number, total: number) => void,
): Promise<number[]> {
  const judgesByLikelihood = engine.config().kind === 'policy';
  const out: number[] = [];
  for (let start = 0; start < items.length; start += batchSize) {
    const chunk = items.slice(start, start + batchSize).map((i) => ({ ...i, score: 0 }));
    const batch = await rows(engine, examples, chunk);
    if (judgesByLikelihood) for (const row of await engine.responseLogprobs(batch, 1)) out.push(likelihoodJudgeScore(row));
    else out.push(...(await engine.scoreResponses(batch)));
    onProgress?.(out.length, items.length);
  }
  return out;
}

/**
 * A policy's score of a response as a judge (`rewardModel.kind: likelihood`): the geometric mean of its probabilities
 * of the response's tokens at temperature 1, exp(mean log-probability), in [0, 1].
 */
export function likelihoodJudgeScore(logprobs: ArrayLike<number>): number {
  return Math.exp(meanLogprob(logprobs));
}

/**
 * A fine-tuning step of a likelihood judge (`rewardModel.kind: likelihood`): the SFT loss on a batch of the annotated
 * responses it should find likelier (`goodItems`: those scored at least `likelihoodMinScore`), the same schedule as
 * the head's steps.
 */
export async function likelihoodStep(engine: Engine, examples: ReadonlyMap<string, Example>, goodItems: readonly RewardItem[], settings: RewardTrainSettings, step: number): Promise<RewardStepRecord> {
  if (goodItems.length === 0) throw new RangeError('no annotated training response is scored at least rewardModel.likelihoodMinScore: lower it, or annotate more responses');
  return scheduledStep(engine, examples, goodItems, settings, step, { size: Math.min(settings.batchSize, goodItems.length), loss: { kind: 'sft' }, what: 'likelihood-judge' });
}

/**
 * A likelihood judge's validation loss: 1 − its pairwise accuracy on the held-out items (pairs of responses to the same
 * prompt with different annotations), so the best checkpoint is the one that ranks best. (Its scores are not on the
 * annotations' scale, so their absolute error would not say how well it judges.)
 */
export async function rankingValidation(
  engine: Engine,
  examples: ReadonlyMap<string, Example>,
  items: readonly RewardItem[],
  batchSize: number,
  onProgress?: (done: number, total: number) => void,
): Promise<number> {
  const predictions = await scoreResponses(engine, examples, items, batchSize, onProgress);
  const { accuracy, pairs } = pairwiseAccuracy(predictions, items.map((i) => i.score), items.map((i) => i.exampleId));
  if (pairs === 0) throw new RangeError('the validation part has no pair of responses to one prompt with different annotations: sample more responses per prompt (rewardModel.data.samplesPerPrompt)');
  return 1 - accuracy;
}

/**
 * A policy's own likelihood of each response, as a judge would use it: the mean log-probability per response token
 * (temperature 1), higher for responses the policy finds likelier. The baseline a reward model trained from that
 * policy has to beat at ranking (activities/reward-model.ts measures it on the policy's samples; bench/likelihood-judge
 * on held-out annotations).
 */
export async function likelihoodScores(engine: Engine, examples: ReadonlyMap<string, Example>, items: readonly Pick<RewardItem, 'exampleId' | 'response'>[], batchSize: number): Promise<number[]> {
  const out: number[] = [];
  for (let start = 0; start < items.length; start += batchSize) {
    const chunk = items.slice(start, start + batchSize).map((i) => ({ ...i, score: 0 }));
    for (const row of await engine.responseLogprobs(await rows(engine, examples, chunk), 1)) out.push(meanLogprob(row));
  }
  return out;
}

/** Mean of a response's token log-probabilities (0 for an empty response). */
export function meanLogprob(logprobs: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < logprobs.length; i++) sum += logprobs[i]!;
  return sum / Math.max(1, logprobs.length);
}

/** Mean absolute error of the reward model on held-out items (the validation loss of the stage). */
export async function rewardValidation(
  engine: Engine,
  examples: ReadonlyMap<string, Example>,
  items: readonly RewardItem[],
  batchSize: number,
  onProgress?: (done: number, total: number) => void,
): Promise<number> {
  const predictions = await scoreResponses(engine, examples, items, batchSize, onProgress);
  return predictions.reduce((a, p, i) => a + Math.abs(p - items[i]!.score), 0) / Math.max(1, items.length);
}
