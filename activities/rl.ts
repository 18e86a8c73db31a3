/**
 * The Trust-GRPO stage's activities, one RL step at a time (docs/architecture.md §3). A step is five activities, and what
 * they exchange is storage keys (claim check: `runs/{runId}/rollouts/{step}/…`), never rollouts:
 *
 *  1. `rolloutStep` (GPU): G samples per prompt from the current policy, with their sampling logprobs and the
 *     frozen reference model's logprobs → `rollouts.json`;
 *  2. `outcomeRewards` (CPU): the grading rules → `outcome.json`;
 *  3. `thinkingRewards` (GPU): the thinking reward model's scores → `thinking.json` (not for the `grpo` variant);
 *  4. `computeAdvantages` (CPU): trust weight, annealing, final rewards, group-normalised advantages
 *     (`rl/trust.ts`) → `advantages.json`;
 *  5. `policyUpdate` (GPU): the `grpo` loss and one optimizer step; a checkpoint (stage `grpo`) every
 *     `rl.checkpointEvery` steps; the step's metrics appended to metrics.jsonl.
 *
 * The policy stays in the GPU worker's engine pool between steps (the workflow routes the run's GPU activities to
 * that worker's own queue). The pool slot is tagged with the RL step its engine is at; an activity that needs the
 * policy at step s − 1 and finds anything else reloads the newest committed `grpo` checkpoint (or the SFT
 * checkpoint with a fresh optimizer, before the first one) and, if that is not step s − 1, answers `rewindTo` so the
 * workflow redoes the steps since that checkpoint. Sampling seeds and prompt choices are functions of (seed, step),
 * so redone steps are the same steps.
 */
import { Context, log } from '@temporalio/activity';
import { type RunConfig, referenceIsAdapter } from '../config/run-config';
import { ConfigError } from '../common/errors';
import { rlCheckpointsAt, rlNeedsCommittedAt } from '../common/rl-schedule';
import { STORAGE_STAGES } from '../common/run-layout';
import { type Engine, REFERENCE_ADAPTER_FILES, hasReferenceAdapters } from '../engine/types';
import { type BatchStats, type GroupRewards, batchStats, groupRewards } from '../rl/trust';
import type { CheckpointStore } from '../storage/checkpoints';
import { getJson, putJson } from '../storage/json';
import { rolloutKey } from '../storage/keys';
import { appendMetrics } from '../storage/metrics-log';
import { grade } from '../tasks/grading';
import type { Example } from '../tasks/types';
import { grpoUpdate, referenceLogprobs } from '../training/grpo';
import { scoreResponses } from '../training/reward-model';
import { keepMixedGroups, type Rollout, type RolloutTiming, sampleRollouts } from '../training/rollouts';
import { batchIndices } from '../training/sft';
import { type RunEvent, loadNewestIntact } from './checkpoint-recovery';
import { CheckpointWriter, INFERENCE_ONLY, loadEngineCheckpoint, saveEngineCheckpoint } from './engine-checkpoints';
import { type EnginePool, engineOptionsOf, frozenEngineOptionsOf } from './engine-pool';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';

const GRPO_STAGE = STORAGE_STAGES.grpo;

export interface RlStepInput extends RunStore {
  runId: string;
  config: RunConfig;
  configHash: string;
  storage: string;
  dataRunId: string;
  /** The RL step being made (1-based: the policy is at step − 1 before it). */
  step: number;
  /** The SFT checkpoint RL starts from; also the frozen reference model. */
  policyStartKey: string;
}

export interface RolloutOutput {
  rolloutsKey: string;
  /** The policy could not be put at step − 1: the newest committed step; redo from there. */
  rewindTo: number | undefined;
  meanLength: number;
  stoppedRate: number;
  /** Seconds the policy's sampling took (weight pushes included), and of those pushing its weights into a separate rollout engine. */
  rolloutSeconds?: number;
  weightSyncSeconds?: number;
  /** Generated tokens per second of that sampling. */
  rolloutTokensPerSecond?: number;
  /** rl.dynamicSampling: the rounds sampled, the groups sampled in them, and the groups kept (with mixed outcomes). */
  dynamic?: { rounds: number; sampledGroups: number; keptGroups: number };
  workerQueue: string;
  worker: string;
  /** Corrupt checkpoints quarantined while the policy was reloaded (absent when none). */
  events?: RunEvent[];
}

export interface OutcomeOutput {
  outcomeKey: string;
  meanOutcome: number;
  accuracy: number;
  formatRate: number;
}

export interface ThinkingOutput {
  thinkingKey: string;
  meanThinking: number;
}

export interface AdvantagesOutput {
  advantagesKey: string;
  stats: BatchStats;
  meanReward: number;
}

export interface UpdateOutput {
  step: number;
  rewindTo: number | undefined;
  /**
   * The checkpoint saved at this step, if one was: committed in the background (`CheckpointWriter`) while the next
   * steps run, and committed before this activity ends at the stage's last step.
   */
  checkpointKey: string | undefined;
  metrics: Record<string, number>;
  workerQueue: string;
  worker: string;
  /** Corrupt checkpoints quarantined while the policy was reloaded (absent when none). */
  events?: RunEvent[];
}

interface StoredRollouts {
  step: number;
  exampleIds: string[];
  rollouts: Rollout[];
  refLogprobs: number[][];
}

export interface RlDeps {
  store: CheckpointStore;
  data: RunData;
  engines: EnginePool;
  workerQueue: string;
  identity: string;
}

function rlSettings(config: RunConfig) {
  if (!config.rl) throw new ConfigError('rl', 'the run config has no rl section', { hint: 'Add rl (see the tiny preset) or leave the trustGrpo stage out' });
  return config.rl;
}

const tag = (step: number) => `rl-step:${step}`;

export function createRlActivities(deps: RlDeps) {
  const { store, data, engines } = deps;
  const readJson = <T>(key: string) => getJson<T>(data.storage, key);
  const keyOf = (input: RlStepInput, file: string) => rolloutKey(input.runId, input.step, file);

  // The policy's checkpoints commit in the background while the next steps run (`CheckpointWriter`): one writer
  // per run on this worker. A commit lands before the next one is staged, before a reload, on a stop and at the
  // last step, so the stage ends with its final checkpoint committed.
  const writers = new Map<string, CheckpointWriter>();
  /** While a checkpoint is written or committed: the calling activity's heartbeat, with that phase. */
  const keepAlive = (phase: string) => Context.current().heartbeat({ phase });
  const writerOf = (runId: string) => {
    let writer = writers.get(runId);
    if (!writer) writers.set(runId, (writer = new CheckpointWriter(store, { heartbeat: keepAlive })));
    return writer;
  };

  /**
   * The prompts of step `step` (1-based): a fixed slice of per-epoch permutations of the training set. Dynamic
   * sampling's further rounds (`round` ≥ 1) take slices of other permutations (a seed per round).
   */
  async function promptsOf(input: RlStepInput, round = 0): Promise<Example[]> {
    const train = await data.split(input.dataRunId, 'train');
    const rl = rlSettings(input.config);
    return batchIndices(train.length, rl.promptsPerStep, input.step - 1, (input.config.seed ^ 0x9a1b) + 7919 * round).map((i) => train[i]!);
  }

  /** The step's examples as its rollouts were made from (dynamic sampling may have replaced the first ones). */
  async function storedExamples(input: RlStepInput, exampleIds: readonly string[]): Promise<Example[]> {
    const byId = await data.byId(input.dataRunId, 'train');
    return exampleIds.map((id) => byId.get(id)!);
  }

  /**
   * The run's policy engine at step − 1, or the step it could be put at (then the caller rewinds): the newest `grpo`
   * checkpoint that reads back intact (corrupt ones are quarantined, listed in `events`), else the SFT checkpoint.
   */
  async function policyAt(input: RlStepInput): Promise<{ engine: Engine; at: number; events: RunEvent[] }> {
    const slot = `${input.runId}/policy`;
    const events: RunEvent[] = [];
    const { engine, checkpointKey } = await engines.slot(slot, engineOptionsOf(input.config));
    if (checkpointKey === tag(input.step - 1)) return { engine, at: input.step - 1, events };
    await writerOf(input.runId).flush(); // a commit still in flight is the newest checkpoint to reload from
    const latest = await loadNewestIntact(store, engine, { runId: input.runId, stages: [GRPO_STAGE] }, events);
    if (!latest) await loadEngineCheckpoint(store, input.policyStartKey, engine, { freshOptimizer: true });
    const at = latest?.step ?? 0;
    engines.mark(slot, tag(at));
    log.info('policy loaded from storage', { runId: input.runId, stage: GRPO_STAGE, step: at, checkpointKey: latest?.key ?? input.policyStartKey });
    return { engine, at, events };
  }

  /**
   * With LoRA the reference is the SFT state's adapter beside the policy's own, over the policy's base weights: read
   * into the policy's engine (its metadata and adapter files only) whenever the engine was loaded since.
   */
  async function referenceAdapter(input: RlStepInput, policy: Engine): Promise<Pick<Engine, 'responseLogprobs'>> {
    if (!hasReferenceAdapters(policy)) throw new Error('engine.lora: this engine cannot hold a reference adapter (only the torch engine has LoRA)');
    if (!policy.hasReferenceAdapter()) {
      const { files } = await store.load(input.policyStartKey, { files: [...REFERENCE_ADAPTER_FILES] });
      await policy.loadReferenceAdapter([...files].map(([name, data]) => ({ name, data })));
      log.info('reference adapter loaded beside the policy', { runId: input.runId, step: input.step, checkpointKey: input.policyStartKey });
    }
    return { responseLogprobs: (batch, temperature) => policy.referenceLogprobs(batch, temperature) };
  }

  /** A frozen model of the run (its reference or reward model) at checkpoint `key`, offloaded when the config says so. */
  async function loaded(input: RlStepInput, slot: string, key: string): Promise<Engine> {
    const { engine, checkpointKey } = await engines.slot(slot, frozenEngineOptionsOf(input.config));
    if (checkpointKey !== key) {
      await loadEngineCheckpoint(store, key, engine, INFERENCE_ONLY);
      engines.mark(slot, key);
    }
    return engine;
  }

  return withFailureMapping({
    async rolloutStep(input: RlStepInput): Promise<RolloutOutput> {
      await data.assertStorage(input);
      const rl = rlSettings(input.config);
      let examples = await promptsOf(input);
      const rolloutsKey = keyOf(input, 'rollouts.json');
      const who = { workerQueue: deps.workerQueue, worker: deps.identity };
      return engines.exclusive(async () => {
        Context.current().heartbeat({ step: input.step, phase: 'rollouts' });
        const { engine, at, events } = await policyAt(input);
        const recovered = events.length > 0 ? { events } : {};
        if (at !== input.step - 1) return { rolloutsKey, rewindTo: at, meanLength: 0, stoppedRate: 0, ...who, ...recovered };
        const timing: RolloutTiming = { seconds: 0, weightSyncSeconds: 0, generatedTokens: 0 };
        const settings = { n: rl.groupSize, temperature: rl.temperature, topP: rl.topP, maxTokens: rl.maxTokens, seed: input.config.seed * 7919 + input.step, promptsPerBatch: examples.length };
        let rollouts = await sampleRollouts(engine, examples, settings, { timing });
        let dynamic: RolloutOutput['dynamic'];
        if (rl.dynamicSampling) {
          const more = async (round: number) => {
            // Each round is another sampling of a batch: a heartbeat per round, so many rounds never outlast the timeout.
            Context.current().heartbeat({ step: input.step, phase: `rollouts (dynamic sampling, round ${round + 1})` });
            const batch = await promptsOf(input, round);
            return { examples: batch, rollouts: await sampleRollouts(engine, batch, { ...settings, seed: settings.seed + 104_729 * round }, { timing }) };
          };
          const kept = await keepMixedGroups({ examples, rollouts }, more, rl.promptsPerStep, rl.dynamicSampling.maxRounds);
          dynamic = { rounds: kept.rounds, sampledGroups: kept.sampledGroups, keptGroups: kept.examples.length };
          if (kept.examples.length > 0) {
            examples = kept.examples;
            rollouts = kept.rollouts;
          } // (none kept: the first round as it is; its groups have no outcome signal, which the metrics show)
        }
        Context.current().heartbeat({ step: input.step, phase: 'reference logprobs' });
        const reference = referenceIsAdapter(input.config) ? await referenceAdapter(input, engine) : await loaded(input, `${input.runId}/reference`, input.policyStartKey);
        const refLogprobs = await referenceLogprobs(reference, examples, rollouts, rl.temperature, rl.microBatch);
        const stored: StoredRollouts = { step: input.step, exampleIds: examples.map((e) => e.id), rollouts, refLogprobs };
        await putJson(data.storage, rolloutsKey, stored);
        return {
          rolloutsKey,
          rewindTo: undefined,
          meanLength: rollouts.reduce((a, r) => a + r.tokens.length, 0) / rollouts.length,
          stoppedRate: rollouts.filter((r) => r.stopped).length / rollouts.length,
          rolloutSeconds: timing.seconds,
          weightSyncSeconds: timing.weightSyncSeconds,
          rolloutTokensPerSecond: timing.seconds > 0 ? timing.generatedTokens / timing.seconds : 0,
          ...(dynamic ? { dynamic } : {}),
          ...who,
          ...recovered,
        };
      });
    },

    async outcomeRewards(input: RlStepInput): Promise<OutcomeOutput> {
      await data.assertStorage(input);
      const { rollouts, exampleIds } = await readJson<StoredRollouts>(keyOf(input, 'rollouts.json'));
      const byId = await data.byId(input.dataRunId, 'train');
      const graded = rollouts.map((r) => {
        const example = byId.get(exampleIds[r.group]!)!;
        return grade(example.answerType, r.text, example.answer);
      });
      const outcomeKey = keyOf(input, 'outcome.json');
      await putJson(data.storage, outcomeKey, { rewards: graded.map((g) => g.reward), formatOk: graded.map((g) => g.formatOk) });
      const n = Math.max(1, graded.length);
      return {
        outcomeKey,
        meanOutcome: graded.reduce((a, g) => a + g.reward, 0) / n,
        accuracy: graded.filter((g) => g.reward >= 1).length / n,
        formatRate: graded.filter((g) => g.formatOk).length / n,
      };
    },

    async thinkingRewards(input: RlStepInput & { rewardModelKey: string }): Promise<ThinkingOutput> {
      await data.assertStorage(input);
      const { rollouts, exampleIds } = await readJson<StoredRollouts>(keyOf(input, 'rollouts.json'));
      const byId = await data.byId(input.dataRunId, 'train');
      const scores = await engines.exclusive(async () => {
        Context.current().heartbeat({ step: input.step, phase: 'thinking rewards' });
        const rm = await loaded(input, `${input.runId}/reward-model`, input.rewardModelKey);
        return scoreResponses(rm, byId, rollouts.map((r) => ({ exampleId: exampleIds[r.group]!, response: r.text })), rlSettings(input.config).microBatch);
      });
      const thinkingKey = keyOf(input, 'thinking.json');
      await putJson(data.storage, thinkingKey, { scores });
      return { thinkingKey, meanThinking: scores.reduce((a, s) => a + s, 0) / Math.max(1, scores.length) };
    },

    async computeAdvantages(input: RlStepInput & { thinkingKey: string | undefined }): Promise<AdvantagesOutput> {
      await data.assertStorage(input);
      const rl = rlSettings(input.config);
      const { rollouts, exampleIds } = await readJson<StoredRollouts>(keyOf(input, 'rollouts.json'));
      const outcome = (await readJson<{ rewards: number[] }>(keyOf(input, 'outcome.json'))).rewards;
      const thinking = input.thinkingKey ? (await readJson<{ scores: number[] }>(input.thinkingKey)).scores : undefined;
      const groups: GroupRewards[] = [];
      const advantages = new Array<number>(rollouts.length).fill(0);
      for (let g = 0; g < exampleIds.length; g++) {
        const members = rollouts.map((r, i) => (r.group === g ? i : -1)).filter((i) => i >= 0);
        const result = groupRewards({
          outcome: members.map((i) => outcome[i]!),
          thinking: thinking ? members.map((i) => thinking[i]!) : [],
          step: input.step - 1,
          totalSteps: rl.steps,
          alpha: rl.alpha,
          variant: rl.variant,
          emptyGroup: rl.emptyGroup,
          ...(rl.annealTemperature !== undefined ? { annealTemperature: rl.annealTemperature } : {}),
          threshold: rl.correctThreshold,
          std: rl.std,
          // Absent from configs recorded before it existed: the paper's.
          semantics: rl.semantics ?? 'paper',
          where: `step ${input.step} group ${g}`,
        });
        members.forEach((i, k) => (advantages[i] = result.advantages[k]!));
        groups.push(result);
      }
      const advantagesKey = keyOf(input, 'advantages.json');
      await putJson(data.storage, advantagesKey, { advantages, groups });
      const rewards = groups.flatMap((g) => g.rewards);
      return { advantagesKey, stats: batchStats(groups), meanReward: rewards.reduce((a, r) => a + r, 0) / Math.max(1, rewards.length) };
    },

    /** Commits the policy as it is now (a stop): a checkpoint at `step` if the engine is there, else the newest one. */
    async checkpointPolicy(input: RlStepInput): Promise<{ checkpointKey: string | undefined; step: number }> {
      await data.assertStorage(input);
      return engines.exclusive(async () => {
        await writerOf(input.runId).flush();
        const latest = await store.latest(input.runId, GRPO_STAGE);
        if (latest && latest.step >= input.step) return { checkpointKey: latest.key, step: latest.step };
        const { engine, checkpointKey } = await engines.slot(`${input.runId}/policy`, engineOptionsOf(input.config));
        if (checkpointKey !== tag(input.step) || input.step === 0) return { checkpointKey: latest?.key, step: latest?.step ?? 0 };
        const manifest = await saveEngineCheckpoint(store, engine, { runId: input.runId, stage: GRPO_STAGE, step: input.step, configHash: input.configHash, meta: { stopped: true } }, undefined, keepAlive);
        return { checkpointKey: manifest.key, step: input.step };
      });
    },

    async policyUpdate(input: RlStepInput & { metrics: Record<string, number> }): Promise<UpdateOutput> {
      await data.assertStorage(input);
      const rl = rlSettings(input.config);
      const { rollouts, refLogprobs, exampleIds } = await readJson<StoredRollouts>(keyOf(input, 'rollouts.json'));
      const { advantages } = await readJson<{ advantages: number[] }>(keyOf(input, 'advantages.json'));
      const examples = await storedExamples(input, exampleIds);
      const who = { workerQueue: deps.workerQueue, worker: deps.identity };
      return engines.exclusive(async () => {
        const slot = `${input.runId}/policy`;
        const { engine, at, events } = await policyAt(input);
        if (at !== input.step - 1) return { step: at, rewindTo: at, checkpointKey: undefined, metrics: {}, ...who, ...(events.length > 0 ? { events } : {}) };
        engines.mark(slot, undefined); // mid-update: not a known step until it succeeds
        Context.current().heartbeat({ step: input.step, phase: 'update' });
        const began = performance.now();
        const update = await grpoUpdate(engine, examples, rollouts, refLogprobs, advantages, {
          lr: rl.lr,
          weightDecay: rl.weightDecay,
          maxGradNorm: rl.maxGradNorm,
          clipEps: rl.clipEps,
          klCoef: rl.klCoef,
          entropyCoef: rl.entropyCoef,
          temperature: rl.temperature,
          microBatch: rl.microBatch,
          // Configs recorded before these existed: one update per RL step.
          ppoEpochs: rl.ppoEpochs ?? 1,
          miniBatches: rl.miniBatches ?? 1,
          ...(rl.tisCap !== undefined ? { tisCap: rl.tisCap } : {}),
        });
        if (!update.applied) throw new Error(`RL step ${input.step}: gradients are not finite; the update was not applied`);
        engines.mark(slot, tag(input.step));
        const metrics = {
          ...input.metrics,
          loss: update.loss,
          kl: update.kl,
          entropy: update.entropy,
          clipFraction: update.clipFraction,
          gradNorm: update.gradNorm,
          optimizerSteps: update.optimizerSteps,
          logprobDiffMean: update.logprobDiffMean,
          logprobDiffMax: update.logprobDiffMax,
          updateSeconds: (performance.now() - began) / 1000,
          ...(update.importanceEss !== undefined ? { importanceEss: update.importanceEss } : {}),
          ...(update.tisCappedFraction !== undefined ? { tisCappedFraction: update.tisCappedFraction } : {}),
        };
        await appendMetrics(data.storage, input.runId, [{ stage: GRPO_STAGE, kind: 'step', step: input.step, time: new Date().toISOString(), ...metrics }]);
        let checkpointKey: string | undefined;
        if (rlCheckpointsAt(rl, input.step)) {
          const writer = writerOf(input.runId);
          const where = { runId: input.runId, stage: GRPO_STAGE, step: input.step };
          checkpointKey = await writer.save(engine, { ...where, configHash: input.configHash, metrics }, async (manifest) => {
            await store.retain(input.runId, GRPO_STAGE, { keepLast: input.config.checkpoints.keepLast });
            log.info('checkpoint committed', { ...where, checkpointKey: manifest.key, bytes: manifest.totalBytes });
          });
          log.info('checkpoint', { ...where, checkpointKey });
        }
        // The workflow evaluates the newest checkpoint after this step, or the stage ends: it must be committed.
        if (rlNeedsCommittedAt(rl, input.step)) await writerOf(input.runId).flush();
        return { step: input.step, rewindTo: undefined, checkpointKey, metrics, ...who };
      });
    },
  });
}

export type RlActivities = ReturnType<typeof createRlActivities>;
