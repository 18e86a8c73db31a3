/**
 * bench/likelihood-judge: how well the SFT policy's own likelihood ranks responses, against the thinking reward model
 * trained from that policy, on the same held-out annotations (the test part of a rewardModel stage's data).
 *
 * For each run given: the policy its responses were sampled from (`reward-data/samples.json`) scores every held-out
 * response by its mean log-probability per token (`likelihoodScores`), and the run's trained reward model (the
 * checkpoint its report names) scores them too; both go through the stage's own metrics (`rewardModelMetrics`).
 * Prints pairwise accuracy (same-prompt pairs with different annotations) and mixed-group accuracy (held-out prompts
 * with right and wrong answers), and the ratio of the likelihood's pairwise accuracy to the reward model's. The
 * on-policy comparison is part of every rewardModel stage's report (`policyLikelihood`).
 *
 *   npx tsx bench/likelihood-judge.ts rm-lever-A400 rm-lever-E         # runs in .sophia/storage
 *   npx tsx bench/likelihood-judge.ts --storage DIR --data RUN RUN_ID   # the data's run, when not the policy's
 */
import { parseArgs } from 'node:util';
import { INFERENCE_ONLY, loadEngineCheckpoint } from '../activities/engine-checkpoints';
import type { AnnotatedData, RewardReport } from '../activities/reward-model';
import { RunData } from '../activities/run-data';
import { createEngine } from '../engine/factory';
import { rewardModelMetrics } from '../rewards/metrics';
import { CheckpointStore } from '../storage/checkpoints';
import { getJson } from '../storage/json';
import { LocalStorage } from '../storage/local';
import { grade } from '../tasks/grading';
import { likelihoodScores, scoreResponses } from '../training/reward-model';
import { machineLine, printTable } from './report';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { storage: { type: 'string', default: '.sophia/storage' }, data: { type: 'string' }, batch: { type: 'string', default: '64' } },
});
if (positionals.length === 0) {
  console.error('usage: npx tsx bench/likelihood-judge.ts [--storage DIR] [--data RUN_ID] RUN_ID ... (runs with a completed rewardModel stage)');
  process.exit(2);
}

async function main(): Promise<void> {
  const storage = new LocalStorage(values.storage);
  const store = new CheckpointStore(storage);
  const data = new RunData(storage);
  const batch = Number(values.batch);
  const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : '—');
  const rows: string[][] = [];
  for (const runId of positionals) {
    const { policyCheckpointKey } = await getJson<{ policyCheckpointKey: string }>(storage, `runs/${runId}/reward-data/samples.json`);
    const report = await getJson<RewardReport>(storage, `runs/${runId}/reports/reward-model.json`);
    const { test } = await getJson<AnnotatedData>(storage, `runs/${runId}/reward-data/annotated.json`);
    // The data's run: given, else the run whose SFT checkpoint sampled the responses (runs/{run}/sft/…).
    const dataRunId = values.data ?? /^runs\/([^/]+)\//.exec(policyCheckpointKey)?.[1];
    if (!dataRunId) throw new Error(`${runId}: cannot tell the data's run from ${policyCheckpointKey}; pass --data RUN_ID`);
    const byId = await data.byId(dataRunId, 'train');
    const correct = test.map((i) => {
      const example = byId.get(i.exampleId);
      if (!example) throw new Error(`${runId}: held-out item ${i.exampleId} is not in ${dataRunId}'s train split; pass --data RUN_ID`);
      return grade(example.answerType, i.response, example.answer).reward >= 0.5;
    });
    const measure = async (checkpointKey: string, score: typeof scoreResponses) => {
      const engine = createEngine({ kind: 'onnx' });
      try {
        await loadEngineCheckpoint(store, checkpointKey, engine, INFERENCE_ONLY);
        const predictions = await score(engine, byId, test, batch);
        return rewardModelMetrics(predictions, test.map((i) => i.score), test.map((i) => i.exampleId), correct);
      } finally {
        await engine.dispose();
      }
    };
    const trained = await measure(report.checkpointKey, scoreResponses);
    const likelihood = await measure(policyCheckpointKey, likelihoodScores);
    rows.push([
      runId,
      String(test.length),
      String(trained.pairs),
      trained.pairwiseAccuracy.toFixed(3),
      likelihood.pairwiseAccuracy.toFixed(3),
      String(trained.mixedGroups ?? 0),
      pct(trained.mixedGroupAccuracy ?? Number.NaN),
      pct(likelihood.mixedGroupAccuracy ?? Number.NaN),
      (likelihood.pairwiseAccuracy / trained.pairwiseAccuracy).toFixed(2),
    ]);
  }
  await store.close();
  printTable(['run', 'held-out responses', 'pairs', 'pairwise: reward model', 'pairwise: likelihood', 'mixed groups', 'mixed: reward model', 'mixed: likelihood', 'ratio (pairwise)'], rows);
  console.log(machineLine());
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
