/**
 * Evaluation activities. `evaluateCheckpoint` (GPU queue) runs a committed checkpoint on the test and ood splits
 * (greedy and sampled@k, graded per family) and stores the full results in storage; only summaries come back.
 * `writeRunReport` (CPU queue) turns metrics.jsonl and the stored results into the run's report with plots.
 */
import { Context, log } from '@temporalio/activity';
import { NotFoundError } from '../common/errors';
import type { RunConfig } from '../config/run-config';
import { loadEngineCheckpoint } from '../engine/checkpoint';
import { parameterCount } from '../engine/model/config';
import { type EvalReport, type FamilySummary, evaluate } from '../evaluation/evaluate';
import { writeReport } from '../report/report';
import { type RewardModelSummary, methodSections } from '../report/rl-report';
import type { CheckpointStore } from '../storage/checkpoints';
import { getJson, putJson } from '../storage/json';
import { joinKey, reportKey, runPrefix } from '../storage/keys';
import { appendMetrics, readMetrics } from '../storage/metrics-log';
import { FAMILIES, type Family } from '../tasks/types';
import { buildSftReport } from '../training/sft-report';
import type { EnginePool } from './engine-pool';
import { withFailureMapping } from './failures';
import type { RunData } from './run-data';

export interface EvaluateInput {
  runId: string;
  config: RunConfig;
  storage: string;
  /** The run whose test/ood data to use (default: this run). */
  dataRunId?: string;
  /** "initial", "sft", … — names the results in storage and the report. */
  label: string;
  checkpointKey: string;
  /** Evaluate only the first N examples of each family (periodic evaluation during training). */
  limitPerFamily?: number;
  /** Greedy only (no pass@k samples). */
  greedyOnly?: boolean;
  /** Also append `{ stage, kind: 'eval', step, testAccuracy, oodAccuracy, … }` to metrics.jsonl. */
  metrics?: { stage: string; step: number };
}

export interface SplitSummary {
  resultsKey: string;
  overall: FamilySummary;
  byFamily: Record<Family, FamilySummary>;
}

export interface EvaluateOutput {
  label: string;
  checkpointKey: string;
  splits: { test: SplitSummary; ood: SplitSummary };
}

export interface ReportInput {
  runId: string;
  config: RunConfig;
  storage: string;
  /** Evaluation of the untrained weights (baseline) and of the final checkpoint. */
  before: EvaluateOutput | undefined;
  after: EvaluateOutput;
  startedAt: string;
}

const resultsKeyOf = (runId: string, label: string, split: string) => joinKey(runPrefix(runId), 'eval', label, `${split}.json`);

export function createEvaluationActivities({ store, data, engines }: { store: CheckpointStore; data: RunData; engines: EnginePool }) {
  return withFailureMapping({
    async evaluateCheckpoint(input: EvaluateInput): Promise<EvaluateOutput> {
      data.assertStorage(input.storage);
      const ctx = Context.current();
      return engines.exclusive(async () => {
        const slot = `${input.runId}/eval`;
        const { engine, checkpointKey } = await engines.slot(slot);
        if (checkpointKey !== input.checkpointKey) {
          await loadEngineCheckpoint(store, input.checkpointKey, engine);
          engines.mark(slot, input.checkpointKey);
        }
        const settings = { ...input.config.evaluation, seed: input.config.seed + 17, ...(input.greedyOnly ? { k: 0 } : {}) };
        const splits = {} as EvaluateOutput['splits'];
        for (const split of ['test', 'ood'] as const) {
          const all = await data.split(input.dataRunId ?? input.runId, split);
          const limit = input.limitPerFamily;
          const examples = limit === undefined ? all : FAMILIES.flatMap((f) => all.filter((e) => e.family === f).slice(0, limit));
          const report = await evaluate(engine, data.tokenizer, examples, split, settings, (done, total) => ctx.heartbeat({ label: input.label, split, done, total }));
          const resultsKey = resultsKeyOf(input.runId, input.label, split);
          await putJson(data.storage, resultsKey, report);
          splits[split] = { resultsKey, overall: report.overall, byFamily: report.byFamily };
          log.info('evaluated', { runId: input.runId, stage: 'evaluation', label: input.label, split, accuracy: report.overall.accuracy });
        }
        if (input.metrics) {
          await appendMetrics(data.storage, input.runId, [
            {
              stage: input.metrics.stage,
              kind: 'eval',
              step: input.metrics.step,
              time: new Date().toISOString(),
              testAccuracy: splits.test.overall.accuracy,
              oodAccuracy: splits.ood.overall.accuracy,
              testFormatRate: splits.test.overall.formatRate,
              testMeanLength: splits.test.overall.meanLength,
            },
          ]);
        }
        return { label: input.label, checkpointKey: input.checkpointKey, splits };
      });
    },

    async writeRunReport(input: ReportInput): Promise<{ reportKey: string; plots: string[] }> {
      data.assertStorage(input.storage);
      const read = (key: string) => getJson<EvalReport>(data.storage, key);
      const after = { test: await read(input.after.splits.test.resultsKey), ood: await read(input.after.splits.ood.resultsKey) };
      const before = input.before ? { test: await read(input.before.splits.test.resultsKey), ood: await read(input.before.splits.ood.resultsKey) } : after;
      const metrics = await readMetrics(data.storage, input.runId);
      const steps = metrics.filter((m) => m.stage === 'sft' && m.kind === 'step');
      const validations = metrics.filter((m) => m.stage === 'sft' && m.kind === 'validation');
      const best = validations.reduce<(typeof validations)[number] | undefined>((b, v) => (b === undefined || Number(v.valLoss) < Number(b.valLoss) ? v : b), undefined);
      const manifest = await store.manifest(input.after.checkpointKey).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      const model = manifest?.meta.model as Parameters<typeof parameterCount>[0] | undefined;
      const time = (m: { time: string } | undefined) => (m ? Date.parse(m.time) : Date.now());
      const report = buildSftReport({
        runId: input.runId,
        preset: input.config.name ?? 'custom',
        parameters: model ? parameterCount(model) : 0,
        trainExamples: input.config.data.perFamily.train * 5,
        seconds: { sft: steps.length > 0 ? (time(steps.at(-1)) - time(steps[0])) / 1000 : 0, total: (Date.now() - Date.parse(input.startedAt)) / 1000 },
        sft: {
          steps: steps.at(-1)?.step ?? 0,
          stoppedEarly: (steps.at(-1)?.step ?? 0) < input.config.sft.steps,
          bestStep: best?.step ?? -1,
          bestValLoss: best ? Number(best.valLoss) : Number.NaN,
          history: steps.map((m) => ({ step: m.step, loss: Number(m.loss), lr: Number(m.lr), gradNorm: Number(m.gradNorm), tokens: Number(m.tokens) })),
          validations: validations.map((m) => ({ step: m.step, valLoss: Number(m.valLoss) })),
          bestState: undefined,
        },
        before,
        after,
        checkpointKey: input.after.checkpointKey,
        title: `Run report — ${input.runId}`,
        labels: {
          before: input.before?.label === 'sft' ? 'SFT' : 'untrained',
          after: metrics.some((m) => m.stage === 'grpo') ? `after ${input.config.rl?.variant ?? 'RL'}` : 'after SFT',
        },
      });
      const rmKey = reportKey(input.runId, 'reward-model.json');
      const rewardModel = (await data.storage.exists(rmKey)) ? await getJson<RewardModelSummary>(data.storage, rmKey) : undefined;
      const method = methodSections(metrics, rewardModel);
      report.markdown = `${report.markdown}\n\n${method.markdown}`;
      report.json = { ...report.json, ...method.json };
      report.plots = [...report.plots, ...method.plots];
      const written = await writeReport(data.storage, input.runId, report);
      return { reportKey: written.markdown, plots: written.plots };
    },
  });
}

export type EvaluationActivities = ReturnType<typeof createEvaluationActivities>;
