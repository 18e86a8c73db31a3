/**
 * The SFT warmup: teach the policy the response format and the tasks from teacher responses (engine `sft`
 * loss), with a validation loss and early stopping.
 *
 * Everything is a function of (settings, step): the batch of step s is a fixed slice of a per-epoch permutation
 * seeded by the run seed, and its teacher responses use an RNG seeded by (seed, step). So training can stop at
 * any step and resume from a checkpoint of that step with exactly the data an uninterrupted run would see.
 *
 * The supervised loop (`supervisedSteps`: steps, validation on the `evalEvery` grid, early stopping) is the one
 * loop of both supervised stages, SFT and the reward model, wherever they run: the pipeline's resumable chunk
 * (`activities/chunk.ts`) and `sophia sft` in one process (`runSft`) drive the same generator with the same
 * step and validation (`sftLoop`), and differ only in what they do after each step (commit a checkpoint and
 * heartbeat, or keep the best state in memory).
 */
import { Rng } from '../engine/rng';
import { type AdamWSettings, DEFAULT_ADAMW, type Engine, type EngineFile, type ResponseBatch } from '../engine/types';
import { promptsOf } from '../tasks/prompt';
import { teacherResponse } from '../tasks/teacher';
import type { Example } from '../tasks/types';

export interface SftSettings {
  /** Most optimizer steps. */
  steps: number;
  batchSize: number;
  /** Peak learning rate: linear warmup to it, then cosine decay to lr · minLrRatio at `steps`. */
  lr: number;
  warmupSteps: number;
  minLrRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  /** Validation loss every this many steps (and at the end). */
  evalEvery: number;
  /** Stop when this many validations in a row bring no new best (at least 1). */
  patience: number;
  seed: number;
}

export interface SftStepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
}

export interface SftEvalRecord {
  step: number;
  valLoss: number;
}

export interface SftResult {
  /** Steps taken (≤ settings.steps). */
  steps: number;
  stoppedEarly: boolean;
  bestValLoss: number;
  bestStep: number;
  history: SftStepRecord[];
  validations: SftEvalRecord[];
  /** Engine state at the best validation (restore it to use the best model). */
  bestState: EngineFile[] | undefined;
}

export function learningRate(settings: SftSettings, step: number): number {
  if (step < settings.warmupSteps) return (settings.lr * (step + 1)) / settings.warmupSteps;
  const progress = Math.min(1, (step - settings.warmupSteps) / Math.max(1, settings.steps - settings.warmupSteps));
  const min = settings.lr * settings.minLrRatio;
  return min + (settings.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** The example indices of step `step`'s batch: slices of per-epoch permutations seeded by (seed, epoch). */
export function batchIndices(count: number, batchSize: number, step: number, seed: number): number[] {
  const out: number[] = [];
  const permutation = (epoch: number) => {
    const rng = new Rng((seed * 1_000_003 + epoch) | 0);
    const p = Array.from({ length: count }, (_, i) => i);
    for (let i = count - 1; i > 0; i--) {
      const j = rng.nextU32() % (i + 1);
      [p[i], p[j]] = [p[j]!, p[i]!];
    }
    return p;
  };
  let position = step * batchSize;
  let epoch = Math.floor(position / count);
  let perm = permutation(epoch);
  while (out.length < batchSize) {
    const e = Math.floor(position / count);
    if (e !== epoch) {
      epoch = e;
      perm = permutation(epoch);
    }
    out.push(perm[position % count]!);
    position++;
  }
  return out;
}

/** Examples with teacher responses as the model writes them (its tokens and end token), one row per example. */
async function sftBatch(engine: Engine, examples: readonly Example[], rng: Rng): Promise<ResponseBatch> {
  const responses = await engine.encodeResponses(examples.map((e) => teacherResponse(e, rng)));
  return { prompts: promptsOf(examples), rows: responses.map((response, i) => ({ prompt: i, response })) };
}

/** Mean token NLL of teacher responses on `examples` (no gradients: the engine's logprobs). */
async function validationLoss(engine: Engine, examples: readonly Example[], batchSize: number, seed: number, onProgress?: (done: number, total: number) => void): Promise<number> {
  let total = 0;
  let tokens = 0;
  for (let start = 0; start < examples.length; start += batchSize) {
    const batch = await sftBatch(engine, examples.slice(start, start + batchSize), new Rng(seed + start));
    for (const row of await engine.responseLogprobs(batch, 1)) {
      for (const logprob of row) total -= logprob;
      tokens += row.length;
    }
    onProgress?.(Math.min(examples.length, start + batchSize), examples.length);
  }
  return total / Math.max(1, tokens);
}

/** Early-stopping bookkeeping, carried across chunks, activities and checkpoints. */
export interface BestTracker {
  bestStep: number;
  bestValLoss: number;
  /** Validations in a row without a new best. */
  sinceBest: number;
}

export const NO_BEST: BestTracker = { bestStep: -1, bestValLoss: Number.POSITIVE_INFINITY, sinceBest: 0 };

/** Folds one validation into the tracker: whether it is a new best, and whether training should stop. */
function trackValidation(tracker: BestTracker, step: number, valLoss: number, patience: number): { tracker: BestTracker; improved: boolean; stop: boolean } {
  if (valLoss < tracker.bestValLoss) return { tracker: { bestStep: step, bestValLoss: valLoss, sinceBest: 0 }, improved: true, stop: false };
  const next = { ...tracker, sinceBest: tracker.sinceBest + 1 };
  return { tracker: next, improved: false, stop: next.sinceBest >= Math.max(1, patience) };
}

/** One optimizer step of the SFT warmup: step `step`'s batch (a function of settings and step only). */
async function sftStep(engine: Engine, train: readonly Example[], settings: SftSettings, step: number): Promise<SftStepRecord> {
  const indices = batchIndices(train.length, settings.batchSize, step, settings.seed);
  const batch = await sftBatch(engine, indices.map((i) => train[i]!), new Rng(settings.seed ^ (step * 7919)));
  const adamw: AdamWSettings = { ...DEFAULT_ADAMW, lr: learningRate(settings, step), weightDecay: settings.weightDecay, maxGradNorm: settings.maxGradNorm };
  const out = await engine.trainStepResponses(batch, { kind: 'sft' }, adamw);
  if (!out.applied) throw new Error(`SFT step ${step}: loss or gradients are not finite (loss ${out.loss}); the step was not applied`);
  return { step: step + 1, loss: out.loss, lr: adamw.lr, gradNorm: out.gradNorm, tokens: out.metrics.tokens ?? 0 };
}

/** A supervised stage as the loop sees it: how many steps, the validation grid, and what a step and a validation do. */
export interface SupervisedLoop<R extends { loss: number }> {
  totalSteps: number;
  /** Validate every this many steps (and at `totalSteps`). */
  evalEvery: number;
  /** Stop after this many validations in a row without a new best (at least 1). */
  patience: number;
  /** One optimizer step from `step` (0-based). */
  step(engine: Engine, step: number): Promise<R>;
  /** The validation loss (lower is better) of the engine as it is now; `onProgress(done, total)` after each batch. */
  validate(engine: Engine, onProgress?: (done: number, total: number) => void): Promise<number>;
}

/** One step of the supervised loop, as it yields it. */
export interface SupervisedStep<R> {
  /** Steps done (the step just taken, 1-based). */
  step: number;
  record: R;
  /** At validation steps: the validation loss and whether it is a new best. */
  validation?: { valLoss: number; improved: boolean };
  /** The early-stopping bookkeeping after this step. */
  tracker: BestTracker;
  /** Early stop: this is the last step. */
  stop: boolean;
}

/**
 * The supervised training loop: from the engine's step to `untilStep` (at most `totalSteps`), one step at a time,
 * validating every `evalEvery` steps and at the last one, and ending early after `patience` validations without a
 * new best. It yields after each step (and its validation, if any); the caller does the rest — commit, heartbeat,
 * keep the best state — and may stop consuming at any step. `tracker` carries early stopping across resumes.
 */
export async function* supervisedSteps<R extends { loss: number }>(
  engine: Engine,
  loop: SupervisedLoop<R>,
  from: { tracker: BestTracker; untilStep?: number } = { tracker: NO_BEST },
): AsyncGenerator<SupervisedStep<R>> {
  let tracker = from.tracker;
  const until = Math.min(from.untilStep ?? loop.totalSteps, loop.totalSteps);
  for (let step = engine.step(); step < until; step++) {
    const record = await loop.step(engine, step);
    const done = step + 1;
    if (done % loop.evalEvery !== 0 && done !== loop.totalSteps) {
      yield { step: done, record, tracker, stop: false };
      continue;
    }
    const valLoss = await loop.validate(engine);
    const tracked = trackValidation(tracker, done, valLoss, loop.patience);
    tracker = tracked.tracker;
    yield { step: done, record, validation: { valLoss, improved: tracked.improved }, tracker, stop: tracked.stop };
    if (tracked.stop) return;
  }
}

/** The SFT warmup as a supervised loop: `sftStep` on `train`, validation loss on `validation`. */
export function sftLoop(train: readonly Example[], validation: readonly Example[], settings: SftSettings): SupervisedLoop<SftStepRecord> {
  if (train.length === 0) throw new RangeError('SFT: the training set is empty (check data.perFamily.train)');
  return {
    totalSteps: settings.steps,
    evalEvery: settings.evalEvery,
    patience: settings.patience,
    step: (engine, step) => sftStep(engine, train, settings, step),
    validate: (engine, onProgress) => validationLoss(engine, validation, settings.batchSize, settings.seed, onProgress),
  };
}

export interface SftCallbacks {
  onStep?: (record: SftStepRecord) => void | Promise<void>;
  onValidation?: (record: SftEvalRecord, best: boolean) => void | Promise<void>;
}

/** The whole warmup in this process (the pipeline's chunk activities run the same loop, `supervisedSteps`). */
export async function runSft(
  engine: Engine,
  train: readonly Example[],
  validation: readonly Example[],
  settings: SftSettings,
  callbacks: SftCallbacks = {},
): Promise<SftResult> {
  const result: SftResult = { steps: 0, stoppedEarly: false, bestValLoss: Infinity, bestStep: -1, history: [], validations: [], bestState: undefined };
  let tracker = NO_BEST;
  for await (const at of supervisedSteps(engine, sftLoop(train, validation, settings))) {
    result.history.push(at.record);
    result.steps = at.step;
    result.stoppedEarly = at.stop;
    tracker = at.tracker;
    await callbacks.onStep?.(at.record);
    if (at.validation) {
      const record = { step: at.step, valLoss: at.validation.valLoss };
      result.validations.push(record);
      if (at.validation.improved) result.bestState = await engine.saveState();
      await callbacks.onValidation?.(record, at.validation.improved);
    }
  }
  result.bestStep = tracker.bestStep;
  result.bestValLoss = tracker.bestValLoss;
  return result;
}
