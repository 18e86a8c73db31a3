/**
 * Stage `evaluation`: the final checkpoint (and, when the run has them, the untrained initial weights as a
 * baseline) on test and ood (GPU queue), then the run report (CPU queue).
 */
import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { EvaluationActivities } from '../../activities/evaluation';
import { toActivityOptions } from '../../temporal.config';
import type { StageInput, StageOutput } from '../types';
import { simpleStageProgress } from './progress';

export async function evaluationStage(input: StageInput): Promise<StageOutput> {
  const gpu = proxyActivities<EvaluationActivities>(toActivityOptions(input.profiles.gpu));
  const cpu = proxyActivities<EvaluationActivities>(toActivityOptions(input.profiles.cpu));
  const final = input.inputCheckpointKey;
  if (!final) {
    throw ApplicationFailure.nonRetryable('evaluation needs a checkpoint: run sftWarmup first or set startFrom.checkpointKey', 'ConfigError');
  }
  const common = { runId: input.runId, config: input.config, storage: input.storage, ...(input.artifacts.dataRunId ? { dataRunId: input.artifacts.dataRunId } : {}) };
  // The baseline: the SFT checkpoint when RL trained on top of it, else the untrained initial weights.
  const baseline = input.artifacts.sft ? { label: 'sft', key: input.artifacts.sft } : input.artifacts.initial ? { label: 'initial', key: input.artifacts.initial } : undefined;
  const say = simpleStageProgress(input, { stage: 'evaluation', step: 0, totalSteps: 1, metrics: {}, checkpointKey: final, worker: undefined });
  let before;
  // `baseline` is absent from configs recorded before it existed: those evaluated it.
  if (baseline && baseline.key !== final && input.config.evaluation.baseline !== false) {
    await say(baseline.label === 'sft' ? 'evaluating the SFT checkpoint (baseline)' : 'evaluating the initial weights (baseline)');
    before = await gpu.evaluateCheckpoint({ ...common, label: baseline.label, checkpointKey: baseline.key });
  }
  await say(`evaluating ${final}`);
  const after = await gpu.evaluateCheckpoint({ ...common, label: 'final', checkpointKey: final });
  await say('writing the report');
  const report = await cpu.writeRunReport({ ...common, before, after, startedAt: new Date(workflowInfo().runStartTime.getTime()).toISOString() });
  return {
    stage: 'evaluation',
    checkpointKey: final,
    artifacts: { ...input.artifacts, report: report.reportKey, evalTest: after.splits.test.resultsKey, evalOod: after.splits.ood.resultsKey },
    metrics: {
      testAccuracy: after.splits.test.overall.accuracy,
      oodAccuracy: after.splits.ood.overall.accuracy,
      testFormatRate: after.splits.test.overall.formatRate,
      ...(before ? { baselineTestAccuracy: before.splits.test.overall.accuracy } : {}),
    },
    stopped: false,
  };
}
