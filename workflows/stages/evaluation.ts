/**
 * Stage `evaluation`: on test and ood (GPU queue), the baselines the run has — the initial policy (the untrained
 * weights the SFT stage committed before its first step: the `initial` artifact) and the SFT checkpoint RL started
 * from (the `sft` artifact) — then the final checkpoint; then the run report (CPU queue), with all of them side by
 * side and the run's real wall time per stage.
 */
import { ApplicationFailure, patched } from '@temporalio/workflow';
import type { EvaluateOutput } from '../../activities/evaluation';
import { toActivityOptions } from '../../temporal.config';
import { cpuActivities, gpuActivities } from '../proxies';
import type { StageInput, StageOutput } from '../types';
import { simpleStageProgress } from './progress';

/** Since this patch the initial policy is evaluated beside the SFT checkpoint (before it: one baseline). */
const EVALUATE_INITIAL_POLICY = 'evaluate-initial-policy';

export async function evaluationStage(input: StageInput): Promise<StageOutput> {
  const gpu = gpuActivities(toActivityOptions(input.profiles.gpu));
  const cpu = cpuActivities(input.profiles);
  const final = input.inputCheckpointKey;
  if (!final) {
    throw ApplicationFailure.nonRetryable('evaluation needs a checkpoint: run sftWarmup first or set startFrom.checkpointKey', 'ConfigError');
  }
  const common = { runId: input.runId, config: input.config, storage: input.storage, storeId: input.storeId, ...(input.artifacts.dataRunId ? { dataRunId: input.artifacts.dataRunId } : {}) };
  const say = simpleStageProgress(input, { stage: 'evaluation', step: 0, totalSteps: 1, metrics: {}, checkpointKey: final, worker: undefined });
  const wanted = input.config.evaluation.baseline !== false; // absent from configs recorded before it existed: those evaluated it
  const baselines: { label: 'initial' | 'sft'; key: string }[] = [];
  if (patched(EVALUATE_INITIAL_POLICY)) {
    // The initial policy (its weights as committed before SFT) and the SFT checkpoint RL started from, each once.
    for (const [label, key] of [['initial', input.artifacts.initial], ['sft', input.artifacts.sft]] as const) {
      if (wanted && key && key !== final && !baselines.some((b) => b.key === key)) baselines.push({ label, key });
    }
  } else {
    // Histories from before: one baseline, the SFT checkpoint when RL trained on top of it, else the initial weights.
    const baseline = input.artifacts.sft ? { label: 'sft' as const, key: input.artifacts.sft } : input.artifacts.initial ? { label: 'initial' as const, key: input.artifacts.initial } : undefined;
    if (wanted && baseline && baseline.key !== final) baselines.push(baseline);
  }
  const evaluated: EvaluateOutput[] = [];
  for (const baseline of baselines) {
    await say(baseline.label === 'sft' ? 'evaluating the SFT checkpoint (baseline)' : 'evaluating the initial policy (baseline, before SFT)');
    evaluated.push(await gpu.evaluateCheckpoint({ ...common, label: baseline.label, checkpointKey: baseline.key }));
  }
  await say(`evaluating the final checkpoint ${final}`);
  const after = await gpu.evaluateCheckpoint({ ...common, label: 'final', checkpointKey: final });
  await say('writing the report');
  const report = await cpu.writeRunReport({ ...common, baselines: evaluated, after, pipelineWorkflowId: input.parentWorkflowId });
  // `baselineTestAccuracy`: the policy the final one is compared with (RL's start, else the initial one), as before.
  const baseline = evaluated.find((e) => e.label === 'sft') ?? evaluated[0];
  const hasOod = after.splits.ood.overall.examples > 0;
  return {
    stage: 'evaluation',
    checkpointKey: final,
    artifacts: { ...input.artifacts, report: report.reportKey, evalTest: after.splits.test.resultsKey, evalOod: after.splits.ood.resultsKey },
    metrics: {
      testAccuracy: after.splits.test.overall.accuracy,
      // (a real dataset has no ood split: no ood numbers rather than 0s from no examples)
      ...(hasOod ? { oodAccuracy: after.splits.ood.overall.accuracy } : {}),
      testFormatRate: after.splits.test.overall.formatRate,
      // The real benchmarks of evaluation.benchmarks: mathvistaAccuracy, chartqaAccuracy, …
      ...Object.fromEntries(Object.entries(after.benchmarks ?? {}).map(([name, b]) => [`${name}Accuracy`, b.overall.accuracy])),
      ...(baseline ? { baselineTestAccuracy: baseline.splits.test.overall.accuracy } : {}),
      // initialTestAccuracy, initialOodAccuracy, sftTestAccuracy, sftOodAccuracy
      ...Object.fromEntries(evaluated.flatMap((e): [string, number][] => [[`${e.label}TestAccuracy`, e.splits.test.overall.accuracy], ...(hasOod ? [[`${e.label}OodAccuracy`, e.splits.ood.overall.accuracy] as [string, number]] : [])])),
    },
    stopped: false,
  };
}
