/**
 * Stage `trustGrpo`: reinforcement learning of the policy with Trust-GRPO (docs/architecture.md §3), one RL step at a time:
 * rollouts (GPU) → outcome rewards (CPU) → thinking rewards (GPU; not for `grpo`) → trust weight, annealing and
 * advantages (CPU) → the `grpo` update (GPU). Activities pass storage keys, never rollouts.
 *
 * - GPU activities go to the queue of the worker that holds the run's models (the policy, the frozen reference
 *   and the reward model stay loaded between steps); if it is gone they fall back to the shared GPU queue, where
 *   a worker reloads the newest committed checkpoint and answers `rewindTo`: the stage redoes the steps since it
 *   (same prompts, same seeds, so the same steps).
 * - `pause` waits between steps; `stop` commits the policy as it is and ends the stage; periodic evaluation on
 *   test and ood every `rl.evalEvery` steps; continue-as-new every `STEPS_PER_RUN` steps or when suggested.
 * - The stage's output is the final policy; the SFT checkpoint it started from is the `sft` artifact (the
 *   evaluation stage's baseline).
 */
import { ApplicationFailure, continueAsNew, patched, workflowInfo } from '@temporalio/workflow';
import type { RunEvent } from '../../activities/checkpoint-recovery';
import type { RlStepInput } from '../../activities/rl';
import { cpuActivities, gpuActivities, localActivities } from '../proxies';
import { rlEvaluatesAt } from '../../common/rl-schedule';
import { STORAGE_STAGES } from '../../common/run-layout';
import type { StageInput, StageOutput } from '../types';
import { StageControl, isStartTimeout } from './chunked';

/** RL steps per workflow run before continue-as-new (each step is ~30 history events). */
const STEPS_PER_RUN = 50;
/** At most one progress signal to the pipeline per this much workflow time (the `stageProgress` query is always current). */
const REPORT_EVERY_MS = 2000;

export interface TrustGrpoCarry {
  step: number;
  checkpointKey: string | undefined;
  queue: string | undefined;
  worker: string | undefined;
  paused: boolean;
  stopRequested: boolean;
  metrics: Record<string, number>;
  stepsThisRun: number;
  /** Corrupt checkpoints quarantined so far (absent in carries of older histories). */
  events?: RunEvent[];
}

export async function trustGrpoStage(input: StageInput, carry?: TrustGrpoCarry): Promise<StageOutput> {
  const rl = input.config.rl;
  const policyStartKey = input.inputCheckpointKey;
  if (!rl) throw ApplicationFailure.nonRetryable('the trustGrpo stage needs an rl section in the run config', 'ConfigError');
  if (!policyStartKey) throw ApplicationFailure.nonRetryable('the trustGrpo stage needs a policy checkpoint: run sftWarmup first or set startFrom.checkpointKey', 'ConfigError');
  const needsThinking = rl.variant !== 'grpo';
  const rewardModelKey = rl.variant === 'untrained-rm' ? input.artifacts.rewardModelInitial : input.artifacts.rewardModel;
  if (needsThinking && !rewardModelKey) {
    throw ApplicationFailure.nonRetryable(
      `variant ${rl.variant} needs a ${rl.variant === 'untrained-rm' ? 'untrained ' : ''}reward model: run the rewardModel stage first or set startFrom.rewardModelKey`,
      'ConfigError',
    );
  }
  const state: TrustGrpoCarry = carry ?? { step: 0, checkpointKey: undefined, queue: undefined, worker: undefined, paused: false, stopRequested: input.stopped, metrics: {}, stepsThisRun: 0 };
  const control = new StageControl(input, 'trustGrpo', state, rl.steps);
  const cpu = cpuActivities(input.profiles);
  const cpuLocal = localActivities(input.profiles);
  const evalActs = gpuActivities(control.gpuOptions(undefined, false));
  const dataRunId = input.artifacts.dataRunId ?? input.runId;

  let lastReport = 0;
  while (state.step < rl.steps && !state.stopRequested) {
    if (state.paused) {
      await control.waitWhilePaused();
      continue;
    }
    const step = state.step + 1;
    const stepInput: RlStepInput = { runId: input.runId, config: input.config, configHash: input.configHash, storage: input.storage, storeId: input.storeId, dataRunId, step, policyStartKey };
    const gpu = gpuActivities(control.gpuOptions(state.queue, false));
    // Since 'rl-step-v2': progress goes to the pipeline at most every REPORT_EVERY_MS of workflow time (a signal per
    // step was a large share of a short step's orchestration cost), and outcome and thinking rewards run at once.
    // (Since 'progress-by-query' a report costs nothing: the throttle only shapes the signals of older histories.)
    const v2 = patched('rl-step-v2');
    const doing = `RL step ${step}/${rl.steps}${state.queue ? '' : ' (any GPU worker)'}`;
    if (!v2 || step === 1 || Date.now() - lastReport >= REPORT_EVERY_MS) {
      lastReport = Date.now();
      await control.report(doing);
    } else control.activity = doing;
    try {
      const rollouts = await gpu.rolloutStep(stepInput);
      state.queue = rollouts.workerQueue;
      state.worker = rollouts.worker;
      control.record(rollouts.events);
      if (rollouts.rewindTo !== undefined) {
        state.step = rollouts.rewindTo; // the model was lost: redo the steps since its last checkpoint
        continue;
      }
      const pinned = gpuActivities(control.gpuOptions(state.queue, false));
      // Since 'rl-local-rewards': grading and advantages (short, CPU only, storage in and out) run as local activities
      // of the worker that runs this workflow, without a task queue round trip each.
      const small = patched('rl-local-rewards') ? cpuLocal : cpu;
      const thinkingOf = () => (needsThinking ? pinned.thinkingRewards({ ...stepInput, rewardModelKey: rewardModelKey! }) : Promise.resolve(undefined));
      let outcome: Awaited<ReturnType<typeof cpu.outcomeRewards>>;
      let thinking: Awaited<ReturnType<typeof thinkingOf>>;
      if (v2) {
        [outcome, thinking] = await Promise.all([small.outcomeRewards(stepInput), thinkingOf()]);
      } else {
        outcome = await cpu.outcomeRewards(stepInput);
        thinking = await thinkingOf();
      }
      const adv = await small.computeAdvantages({ ...stepInput, thinkingKey: thinking?.thinkingKey });
      const metrics = {
        outcomeReward: outcome.meanOutcome,
        accuracy: outcome.accuracy,
        formatRate: outcome.formatRate,
        ...(thinking ? { thinkingReward: thinking.meanThinking } : {}),
        reward: adv.meanReward,
        gamma: adv.stats.meanGamma,
        distrustedShare: adv.stats.distrustedShare,
        anneal: adv.stats.anneal,
        zeroVarianceShare: adv.stats.zeroVarianceShare,
        thinkingSkippedShare: adv.stats.thinkingSkippedShare,
        // Absent from the results of activities that ran before these existed.
        ...(adv.stats.mixedShare !== undefined ? { mixedGroupShare: adv.stats.mixedShare } : {}),
        ...(adv.stats.rmMixedGroupAccuracy !== undefined ? { rmMixedGroupAccuracy: adv.stats.rmMixedGroupAccuracy } : {}),
        responseLength: rollouts.meanLength,
        stoppedRate: rollouts.stoppedRate,
        ...(rollouts.rolloutSeconds !== undefined ? { rolloutSeconds: rollouts.rolloutSeconds, weightSyncSeconds: rollouts.weightSyncSeconds ?? 0, rolloutTokensPerSecond: rollouts.rolloutTokensPerSecond ?? 0 } : {}),
        // rl.dynamicSampling: rounds sampled, groups sampled, groups kept (with different outcome rewards).
        ...(rollouts.dynamic ? { dynamicRounds: rollouts.dynamic.rounds, sampledGroups: rollouts.dynamic.sampledGroups, keptGroups: rollouts.dynamic.keptGroups } : {}),
      };
      const update = await pinned.policyUpdate({ ...stepInput, metrics });
      control.record(update.events);
      if (update.rewindTo !== undefined) {
        state.step = update.rewindTo;
        continue;
      }
      state.step = step;
      state.metrics = update.metrics;
      if (update.checkpointKey) state.checkpointKey = update.checkpointKey;
    } catch (err) {
      if (state.queue && isStartTimeout(err)) {
        state.queue = undefined; // that worker is gone: any worker reloads from storage
        continue;
      }
      throw err;
    }
    if (rlEvaluatesAt(rl, step) && state.checkpointKey) {
      await control.report(`evaluating at RL step ${step}`);
      const evaluated = await evalActs.evaluateCheckpoint({
        runId: input.runId,
        config: input.config,
        storage: input.storage,
        storeId: input.storeId,
        dataRunId,
        label: `grpo-${step}`,
        checkpointKey: state.checkpointKey,
        limitPerFamily: rl.evalExamples,
        greedyOnly: true,
        metrics: { stage: STORAGE_STAGES.grpo, step },
      });
      state.metrics = { ...state.metrics, testAccuracy: evaluated.splits.test.overall.accuracy, oodAccuracy: evaluated.splits.ood.overall.accuracy };
    }
    state.stepsThisRun++;
    if (state.step < rl.steps && !state.stopRequested && (state.stepsThisRun >= STEPS_PER_RUN || workflowInfo().continueAsNewSuggested)) {
      await continueAsNew<typeof trustGrpoStage>(input, { ...state, stepsThisRun: 0 });
    }
  }
  if (state.stopRequested && state.step > 0) {
    await control.report('committing the policy (stop)');
    const stopInput: RlStepInput = { runId: input.runId, config: input.config, configHash: input.configHash, storage: input.storage, storeId: input.storeId, dataRunId, step: state.step, policyStartKey };
    const commit = (queue: string | undefined) => gpuActivities(control.gpuOptions(queue, false)).checkpointPolicy(stopInput);
    const committed = await commit(state.queue).catch((err: unknown) => {
      if (state.queue && isStartTimeout(err)) return commit(undefined); // the worker is gone: the newest committed one
      throw err;
    });
    if (committed.checkpointKey) state.checkpointKey = committed.checkpointKey;
  }
  await control.report('done');
  return {
    stage: 'trustGrpo',
    checkpointKey: state.checkpointKey ?? policyStartKey,
    artifacts: { ...input.artifacts, sft: policyStartKey },
    metrics: { step: state.step, ...state.metrics },
    stopped: state.stopRequested,
    ...(state.events?.length ? { events: state.events } : {}),
  };
}
