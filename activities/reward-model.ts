/**
 * The thinking reward model stage's activities (docs/architecture.md §3):
 *
 *  - `sampleRewardData` (GPU): responses of the SFT policy to training prompts, at several temperatures so their
 *    quality varies, into `runs/{runId}/reward-data/samples.json`;
 *  - `annotateRewardData` (CPU): scores in [0, 1] (steps of 0.1) from the configured annotator (the programmatic
 *    judge, or an LLM judge behind an OpenAI-compatible endpoint), balanced across the ten score bins, split by
 *    prompt into train, validation and test (`rewards/balance.ts`), into `reward-data/annotated.json`;
 *  - `runRewardModelChunk` (GPU): `rm` training through the shared resumable chunk (stage `rm`; its initial
 *    weights — the policy backbone with a fresh head, or random — are committed as `rm-init`, which is also the
 *    untrained reward model of the `untrained-rm` ablation); its validation loss, which picks the best checkpoint
 *    and stops early, is the MAE on the validation part. A likelihood judge (`rewardModel.kind: likelihood`) starts
 *    from the SFT policy itself (its `rm-init`), fine-tunes with the SFT loss on the training responses annotated at
 *    least `likelihoodMinScore`, and validates by ranking (1 − pairwise accuracy);
 *  - `evaluateRewardModel` (GPU): MAE, Pearson, Spearman and pairwise ranking accuracy against the test part,
 *    which nothing before it has seen, for the trained and the untrained model, into `reports/reward-model.json`.
 *
 * Each is idempotent: outputs are keyed by run and rewritten identically on retry (samples and annotations are
 * reused when present).
 */
import { Context, log } from '@temporalio/activity';
import type { RunConfig } from '../config/run-config';
import { ConfigError } from '../common/errors';
import { STORAGE_STAGES } from '../common/run-layout';
import { type Annotator, ProgrammaticAnnotator } from '../rewards/annotator';
import { balanceByBin, scoreBin, SCORE_BINS, splitByPrompt } from '../rewards/balance';
import { judgeAnnotator } from '../rewards/judges';
import { mixedGroupAccuracy, type RewardModelMetrics, rewardModelMetrics } from '../rewards/metrics';
import type { Engine } from '../engine/types';
import type { CheckpointStore } from '../storage/checkpoints';
import { getJson, putJson } from '../storage/json';
import { joinKey, reportKey, runPrefix } from '../storage/keys';
import type { Storage } from '../storage/types';
import { grade } from '../tasks/grading';
import { batchIndices } from '../training/sft';
import { likelihoodStep, meanLogprob, rankingValidation, type RewardItem, rewardStep, rewardValidation, scoreResponses } from '../training/reward-model';
import { sampleRollouts } from '../training/rollouts';
import { type ChunkOutput, runTrainingChunk } from './chunk';
import { INFERENCE_ONLY, loadEngineCheckpoint, withEngineFiles } from './engine-checkpoints';
import { type EnginePool, engineOptionsOf } from './engine-pool';
import { ModelSource } from './models';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';

const RM_STAGE = STORAGE_STAGES.rewardModel;
const RM_INIT_STAGE = STORAGE_STAGES.rewardModelInitial;

export interface RewardStageInput extends RunStore {
  runId: string;
  config: RunConfig;
  storage: string;
  /** The run whose dataset to use (the run itself unless it starts from another run's data). */
  dataRunId: string;
}

export interface SampleRewardDataOutput {
  samplesKey: string;
  samples: number;
  reused: boolean;
}

export interface AnnotatedData {
  annotator: string;
  /** Score-bin counts before and after balancing. */
  binsBefore: number[];
  binsAfter: number[];
  train: RewardItem[];
  /** Held-out prompts that pick the best checkpoint (the rm stage's validation loss). */
  validation: RewardItem[];
  /** Held-out prompts that only the reward-model report measures. */
  test: RewardItem[];
}

export interface AnnotateOutput {
  annotatedKey: string;
  train: number;
  /** validation + test. */
  heldOut: number;
  validation: number;
  test: number;
  binsBefore: number[];
  binsAfter: number[];
  meanScore: number;
}

/**
 * The reward model on the policy's own samples, as RL will first show them to it: groups of rl.groupSize responses at
 * rl.temperature from the policy the reward model was trained for, to held-out test prompts (no model has trained on
 * them), graded by the outcome rules; among the groups with right and wrong answers, the share where each model scores
 * the right ones higher on average. This is the number the trust weight lives on.
 */
export interface OnPolicyMixedGroups {
  prompts: number;
  responses: number;
  /** Groups with both right and wrong final answers. */
  mixedGroups: number;
  trained: number;
  untrained: number;
  /**
   * The baseline a reward model has to beat: the same groups ranked by the policy's own likelihood of each response
   * (mean log-probability per token, as sampled). (Absent in reports written before it was measured.)
   */
  policyLikelihood?: number;
}

export interface RewardReport {
  trained: RewardModelMetrics;
  untrained: RewardModelMetrics;
  /** Absent in reports written before it was measured, and when the stage had no policy checkpoint. */
  onPolicy?: OnPolicyMixedGroups;
  checkpointKey: string;
  initialCheckpointKey: string;
  annotator: string;
  /** validation + test. */
  heldOut: number;
  validation: number;
  /** The items the metrics are measured on. */
  test: number;
  train: number;
  binsBefore: number[];
  binsAfter: number[];
}

const dataKeyOf = (runId: string, file: string) => joinKey(runPrefix(runId), 'reward-data', file);
const promptOf = (item: RewardItem) => item.exampleId;

/** The held-out items split into validation (checkpoint selection) and test (the report), by prompt. */
function splitHeldOut(heldOut: readonly RewardItem[], config: RunConfig): Pick<AnnotatedData, 'validation' | 'test'> {
  const { kept, out } = splitByPrompt(heldOut, promptOf, { share: settingsOf(config).data.heldOutTestShare, seed: config.seed ^ 0x7e57 });
  return { validation: kept, test: out };
}

/**
 * Reads `annotated.json`. Files written before the held-out items were split (one `heldOut` list) are split here,
 * the same way every time, so a run that annotated before an upgrade continues with validation and test parts.
 */
async function readAnnotated(storage: Storage, runId: string, config: RunConfig): Promise<AnnotatedData> {
  const annotated = await getJson<AnnotatedData & { heldOut?: RewardItem[] }>(storage, dataKeyOf(runId, 'annotated.json'));
  if (annotated.validation && annotated.test) return annotated;
  const { heldOut = [], ...rest } = annotated;
  return { ...rest, ...splitHeldOut(heldOut, config) };
}

function settingsOf(config: RunConfig) {
  if (!config.rewardModel) throw new ConfigError('rewardModel', 'the run config has no rewardModel section', { hint: 'Add rewardModel (see the tiny preset) or leave the rewardModel stage out' });
  return config.rewardModel;
}

/** The annotator a run config names; an LLM judge by name, resolved against this worker's own `SOPHIA_JUDGES`. */
function annotatorFor(config: RunConfig, env: Readonly<Record<string, string | undefined>> = process.env): Annotator {
  const a = settingsOf(config).annotator;
  return a.kind === 'programmatic' ? new ProgrammaticAnnotator() : judgeAnnotator(a.name, env);
}

export interface RewardModelDeps {
  /** Where the run's pretrained models come from (torch runs; default: this machine's model cache). */
  models?: ModelSource;
  store: CheckpointStore;
  data: RunData;
  engines: EnginePool;
  workerQueue: string;
  identity: string;
  env?: Readonly<Record<string, string | undefined>>;
}

export function createRewardModelActivities(deps: RewardModelDeps) {
  const { store, data, engines } = deps;
  const models = deps.models ?? ModelSource.fromEnv();
  const readJson = <T>(key: string) => getJson<T>(data.storage, key);
  const exists = (key: string) => data.storage.exists(key);

  /** `fn` with the engine of `slot` holding checkpoint `key` (loaded unless it already does). */
  const withCheckpoint = <T>(config: RunConfig, slot: string, key: string, fn: (engine: Engine) => Promise<T>) =>
    engines.exclusive(async () => {
      const { engine, checkpointKey } = await engines.slot(slot, engineOptionsOf(config));
      if (checkpointKey !== key) {
        await loadEngineCheckpoint(store, key, engine, INFERENCE_ONLY);
        engines.mark(slot, key);
      }
      return fn(engine);
    });

  /** `OnPolicyMixedGroups`: the policy samples groups for held-out test prompts; both reward models score them. */
  async function onPolicyGroups(input: RewardStageInput & { checkpointKey: string; initialCheckpointKey: string }, policyKey: string, threshold: number): Promise<OnPolicyMixedGroups> {
    const rl = input.config.rl;
    const test = await data.split(input.dataRunId, 'test');
    // (absent from configs recorded before it existed: the default)
    const examples = test.slice(0, settingsOf(input.config).onPolicyPrompts ?? 100);
    const byId = new Map(examples.map((e) => [e.id, e]));
    const ctx = Context.current();
    const beat = (phase: string) => (done: number, total: number) => ctx.heartbeat({ phase, done, total });
    beat('on-policy groups: sampling')(0, examples.length);
    const rollouts = await withCheckpoint(input.config, `${input.runId}/rm-eval-policy`, policyKey, (engine) =>
      sampleRollouts(
        engine,
        examples,
        { n: rl?.groupSize ?? 8, temperature: rl?.temperature ?? 1, topP: rl?.topP ?? 1, maxTokens: rl?.maxTokens ?? 64, seed: input.config.seed ^ 0x0b5e, promptsPerBatch: Math.min(examples.length, 32) },
        { onProgress: beat('on-policy groups: sampling') },
      ),
    );
    const items = rollouts.map((r) => ({ exampleId: r.exampleId, response: r.text }));
    const correct = rollouts.map((r) => {
      const example = byId.get(r.exampleId)!;
      return grade(example.answerType, r.text, example.answer).reward >= threshold;
    });
    const groups = rollouts.map((r) => r.exampleId);
    const batchSize = settingsOf(input.config).batchSize;
    const accuracyOf = (key: string, phase: string) =>
      withCheckpoint(input.config, `${input.runId}/rm-eval`, key, async (rm) => mixedGroupAccuracy(await scoreResponses(rm, byId, items, batchSize, beat(phase)), correct, groups));
    const trained = await accuracyOf(input.checkpointKey, 'on-policy groups: scoring (trained)');
    const untrained = await accuracyOf(input.initialCheckpointKey, 'on-policy groups: scoring (untrained)');
    const likelihood = mixedGroupAccuracy(rollouts.map((r) => meanLogprob(r.logprobs)), correct, groups);
    return { prompts: examples.length, responses: rollouts.length, mixedGroups: trained.groups, trained: trained.accuracy, untrained: untrained.accuracy, policyLikelihood: likelihood.accuracy };
  }

  return withFailureMapping({
    async sampleRewardData(input: RewardStageInput & { policyCheckpointKey: string }): Promise<SampleRewardDataOutput> {
      await data.assertStorage(input);
      const settings = settingsOf(input.config).data;
      const samplesKey = dataKeyOf(input.runId, 'samples.json');
      if (await exists(samplesKey)) {
        const existing = await readJson<{ items: unknown[] }>(samplesKey);
        return { samplesKey, samples: existing.items.length, reused: true };
      }
      const ctx = Context.current();
      const train = await data.split(input.dataRunId, 'train');
      const examples = batchIndices(train.length, Math.min(settings.prompts, train.length), 0, input.config.seed ^ 0x2e3d).map((i) => train[i]!);
      return engines.exclusive(async () => {
        const slot = `${input.runId}/rm-sampler`;
        const { engine, checkpointKey } = await engines.slot(slot, engineOptionsOf(input.config));
        if (checkpointKey !== input.policyCheckpointKey) {
          await loadEngineCheckpoint(store, input.policyCheckpointKey, engine, INFERENCE_ONLY);
          engines.mark(slot, input.policyCheckpointKey);
        }
        const items: { exampleId: string; response: string; temperature: number }[] = [];
        for (const [j, temperature] of settings.temperatures.entries()) {
          const n = Math.floor(settings.samplesPerPrompt / settings.temperatures.length) + (j < settings.samplesPerPrompt % settings.temperatures.length ? 1 : 0);
          if (n === 0) continue;
          const before = items.length;
          const rollouts = await sampleRollouts(
            engine,
            examples,
            {
              n,
              temperature,
              topP: 1,
              maxTokens: settings.maxTokens,
              seed: input.config.seed * 1009 + j,
              promptsPerBatch: input.config.evaluation.promptsPerBatch,
            },
            // After each engine call, not once per temperature: one temperature over many prompts outlasts the heartbeat timeout.
            { onProgress: (done) => ctx.heartbeat({ temperature, samples: before + done * n }) },
          );
          items.push(...rollouts.map((r) => ({ exampleId: r.exampleId, response: r.text, temperature })));
        }
        await putJson(data.storage, samplesKey, { policyCheckpointKey: input.policyCheckpointKey, items });
        log.info('reward data sampled', { runId: input.runId, stage: 'rewardModel', samples: items.length });
        return { samplesKey, samples: items.length, reused: false };
      });
    },

    async annotateRewardData(input: RewardStageInput): Promise<AnnotateOutput> {
      await data.assertStorage(input);
      const settings = settingsOf(input.config);
      const annotatedKey = dataKeyOf(input.runId, 'annotated.json');
      let annotated: AnnotatedData;
      if (await exists(annotatedKey)) {
        annotated = await readAnnotated(data.storage, input.runId, input.config);
      } else {
        const { items } = await readJson<{ items: { exampleId: string; response: string }[] }>(dataKeyOf(input.runId, 'samples.json'));
        const byId = await data.byId(input.dataRunId, 'train');
        const annotator = annotatorFor(input.config, deps.env);
        const ctx = Context.current();
        const annotations = await annotator.annotate(
          items.map((i) => ({ example: byId.get(i.exampleId)!, response: i.response })),
          (done, total) => ctx.heartbeat({ phase: 'annotating', done, total }),
        );
        const scored: RewardItem[] = items.map((i, k) => ({ exampleId: i.exampleId, response: i.response, score: annotations[k]!.score }));
        const binsBefore = new Array<number>(SCORE_BINS).fill(0);
        for (const s of scored) binsBefore[scoreBin(s.score)]!++;
        const balanced = balanceByBin(scored, (s) => s.score, { seed: input.config.seed, ...(settings.data.perBin ? { perBin: settings.data.perBin } : {}) });
        // Hold out whole prompts (at least two: one for validation, one for test), so the held-out pairs (same
        // prompt, different scores) are unseen in training; then split them into the validation and test parts.
        const prompts = new Set(balanced.items.map(promptOf)).size;
        if (prompts < 3) {
          throw new ConfigError('rewardModel.data', `${prompts} prompts are left after balancing; train, validation and test need at least 3`, { hint: 'Sample more prompts (rewardModel.data.prompts)' });
        }
        const heldOut = splitByPrompt(balanced.items, promptOf, { share: settings.data.heldOutShare, seed: input.config.seed ^ 0x4e1d, minOut: 2 });
        annotated = { annotator: annotator.name, binsBefore, binsAfter: balanced.counts, train: heldOut.kept, ...splitHeldOut(heldOut.out, input.config) };
        await putJson(data.storage, annotatedKey, annotated);
      }
      const all = [...annotated.train, ...annotated.validation, ...annotated.test];
      const counts = { train: annotated.train.length, heldOut: annotated.validation.length + annotated.test.length, validation: annotated.validation.length, test: annotated.test.length };
      log.info('reward data annotated', { runId: input.runId, stage: 'rewardModel', annotator: annotated.annotator, ...counts });
      return {
        annotatedKey,
        ...counts,
        binsBefore: annotated.binsBefore,
        binsAfter: annotated.binsAfter,
        meanScore: all.reduce((a, i) => a + i.score, 0) / Math.max(1, all.length),
      };
    },

    async runRewardModelChunk(input: RewardStageInput & { configHash: string; policyCheckpointKey: string; untilStep: number }): Promise<ChunkOutput> {
      await data.assertStorage(input);
      const settings = { ...settingsOf(input.config), seed: input.config.seed + 31 };
      const annotated = await readAnnotated(data.storage, input.runId, input.config);
      const byId = await data.byId(input.dataRunId, 'train');
      // A likelihood judge is the SFT policy, fine-tuned on the responses it should find likelier and kept by ranking.
      const likelihood = settings.kind === 'likelihood';
      const good = likelihood ? annotated.train.filter((i) => i.score >= settings.likelihoodMinScore) : [];
      return runTrainingChunk(
        { store, storage: data.storage, engines, workerQueue: deps.workerQueue, identity: deps.identity },
        {
          runId: input.runId,
          stage: RM_STAGE,
          initStage: RM_INIT_STAGE,
          configHash: input.configHash,
          engine: engineOptionsOf(input.config),
          totalSteps: settings.steps,
          untilStep: input.untilStep,
          evalEvery: settings.evalEvery,
          patience: settings.patience,
          keepLast: input.config.checkpoints.keepLast,
          validateInitial: likelihood,
          initialize: async (engine) => {
            if (likelihood) return withEngineFiles(store, input.policyCheckpointKey, (files) => engine.loadState(files, { freshOptimizer: true }));
            // Its own model (onnx: random weights; torch: the engine.rewardModel backbone, e.g. the paper's 3B), else
            // the SFT policy's backbone, each with a fresh scalar head.
            const ownModel = settings.init === 'scratch' || (input.config.engine.kind === 'torch' && input.config.engine.rewardModel !== undefined);
            if (ownModel) return models.init(engine, input.config, 'reward', settings.seed);
            await withEngineFiles(store, input.policyCheckpointKey, (files) => engine.initRewardFromPolicy(files, settings.seed));
          },
          step: async (engine, step) => {
            const { loss, lr, gradNorm } = likelihood ? await likelihoodStep(engine, byId, good, settings, step) : await rewardStep(engine, byId, annotated.train, settings, step);
            return { loss, lr, gradNorm };
          },
          validate: (engine, onProgress) => (likelihood ? rankingValidation : rewardValidation)(engine, byId, annotated.validation, settings.batchSize, onProgress),
        },
      );
    },

    async evaluateRewardModel(
      input: RewardStageInput & { checkpointKey: string; initialCheckpointKey: string; /** The policy it was trained for (inputs from before: none, no on-policy measurement). */ policyCheckpointKey?: string },
    ): Promise<{ reportKey: string; trained: RewardModelMetrics; untrained: RewardModelMetrics; onPolicy?: OnPolicyMixedGroups }> {
      await data.assertStorage(input);
      const annotated = await readAnnotated(data.storage, input.runId, input.config);
      const { test } = annotated;
      const byId = await data.byId(input.dataRunId, 'train');
      const batchSize = settingsOf(input.config).batchSize;
      // Each held-out response's final answer, right or wrong by the outcome grader (the trust weight's notion of
      // correct); read after scoring, which names an item whose example is missing.
      const threshold = input.config.rl?.correctThreshold ?? 0.5;
      const correctOf = () => test.map((i) => {
        const example = byId.get(i.exampleId)!;
        return grade(example.answerType, i.response, example.answer).reward >= threshold;
      });
      const ctx = Context.current();
      const measure = (key: string, phase: string) =>
        withCheckpoint(input.config, `${input.runId}/rm-eval`, key, async (engine) => {
          const predictions = await scoreResponses(engine, byId, test, batchSize, (done, total) => ctx.heartbeat({ phase, done, total }));
          return rewardModelMetrics(predictions, test.map((i) => i.score), test.map(promptOf), correctOf());
        });
      const trained = await measure(input.checkpointKey, 'held-out responses: scoring (trained)');
      const untrained = await measure(input.initialCheckpointKey, 'held-out responses: scoring (untrained)');
      const onPolicy = input.policyCheckpointKey && settingsOf(input.config).onPolicyPrompts !== 0 ? await onPolicyGroups(input, input.policyCheckpointKey, threshold) : undefined;
      const report: RewardReport = { trained, untrained, ...(onPolicy ? { onPolicy } : {}), checkpointKey: input.checkpointKey, initialCheckpointKey: input.initialCheckpointKey, annotator: annotated.annotator, heldOut: annotated.validation.length + test.length, validation: annotated.validation.length, test: test.length, train: annotated.train.length, binsBefore: annotated.binsBefore, binsAfter: annotated.binsAfter };
      const key = reportKey(input.runId, 'reward-model.json');
      await putJson(data.storage, key, report);
      log.info('reward model evaluated', { runId: input.runId, stage: 'rewardModel', ...trained, ...(onPolicy ? { onPolicyMixedGroupAccuracy: onPolicy.trained } : {}) });
      return { reportKey: key, trained, untrained, ...(onPolicy ? { onPolicy } : {}) };
    },
  });
}

export type RewardModelActivities = ReturnType<typeof createRewardModelActivities>;
