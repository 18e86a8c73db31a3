/**
 * Evaluation activities. `evaluateCheckpoint` (GPU queue) runs a committed checkpoint on the test and ood splits
 * (greedy and sampled@k, graded per family) and stores the full results in storage; only summaries come back.
 * `writeRunReport` (CPU queue) turns metrics.jsonl, the stored results and Temporal's records of the run's stage
 * workflows (their real start and close times) into the run's report with plots.
 */
import { Context, log } from '@temporalio/activity';
import { NotFoundError, SophiaError } from '../common/errors';
import { benchmarkRecords } from '../benchmarks/data';
import { type BenchmarkResult, type Tally, evaluateBenchmark } from '../benchmarks/evaluate';
import type { BenchmarkName } from '../benchmarks/index';
import { DEFAULT_EVAL_TEMPLATE } from '../benchmarks/inputs';
import { type BenchmarkDataConfig, evaluationSettings, modelConfig, type RunConfig } from '../config/run-config';
import { parameterCount } from '../engine/model/config';
import { fitPromptToModel } from '../engine/onnx-prompts';
import { type ChatPrompt, type ModelSpec, isPretrained } from '../engine/types';
import { type EvalReport, type FamilySummary, evaluate } from '../evaluation/evaluate';
import { runTimes } from '../clients/stage-times';
import { pipelineWorkflowId, STORAGE_STAGES } from '../common/run-layout';
import { writeReport } from '../report/report';
import { type PolicyEvaluation, buildRunReport } from '../report/run-report';
import { type RewardModelSummary, methodSections } from '../report/rl-report';
import { benchmarkSection } from '../report/benchmarks-report';
import type { CheckpointStore } from '../storage/checkpoints';
import { getJson, putJson } from '../storage/json';
import { joinKey, reportKey, runPrefix } from '../storage/keys';
import { appendMetrics, readMetrics } from '../storage/metrics-log';
import { readDatasetManifest } from '../tasks/dataset';
import { FAMILIES, familiesOf } from '../tasks/types';
import { dataSection } from '../report/data-report';
import { INFERENCE_ONLY, loadEngineCheckpoint } from './engine-checkpoints';
import { type EnginePool, engineOptionsOf } from './engine-pool';
import { DEFAULT_TEMPORAL_CONFIG } from '../temporal.config';
import { withFailureMapping } from './failures';
import type { RunData, RunStore } from './run-data';

export interface EvaluateInput extends RunStore {
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
  byFamily: Record<string, FamilySummary>;
}

/** One real benchmark's result for a policy (the whole result, predictions included, is at `resultsKey`). */
export interface BenchmarkSummary {
  resultsKey: string;
  overall: Tally;
  byCategory: BenchmarkResult['byCategory'];
  skippedRows: number;
  meanTokens: number;
  truncatedShare: number;
}

export interface EvaluateOutput {
  label: string;
  checkpointKey: string;
  splits: { test: SplitSummary; ood: SplitSummary };
  /** evaluation.benchmarks, by name (absent when the config has none, and for periodic evaluations). */
  benchmarks?: Partial<Record<BenchmarkName, BenchmarkSummary>>;
}

export interface ReportInput extends RunStore {
  runId: string;
  /** The run whose dataset the run trained on (default: this run). */
  dataRunId?: string;
  config: RunConfig;
  storage: string;
  /** The baselines evaluated, in order: the initial policy (`label` "initial"), the SFT checkpoint ("sft"). */
  baselines?: EvaluateOutput[];
  /** The final checkpoint's evaluation: the run's result. */
  after: EvaluateOutput;
  /** The pipeline's workflow id, whose records give the stage times (absent in old inputs: `sophia-{runId}`, the default deployment's, the only one then). */
  pipelineWorkflowId?: string;
  /** Inputs of workflows from before `evaluate-initial-policy`: their one baseline and their stage's start. */
  before?: EvaluateOutput | undefined;
  startedAt?: string;
}

/** What a policy is called in the report, by evaluation label. */
const POLICY_NAMES: Record<string, string> = { initial: 'initial', sft: 'after SFT' };

const resultsKeyOf = (runId: string, label: string, split: string) => joinKey(runPrefix(runId), 'eval', label, `${split}.json`);
const benchmarkKeyOf = (runId: string, label: string, name: string) => joinKey(runPrefix(runId), 'eval', label, 'benchmarks', `${name}.json`);

export function createEvaluationActivities({ store, data, engines }: { store: CheckpointStore; data: RunData; engines: EnginePool }) {
  return withFailureMapping({
    async evaluateCheckpoint(input: EvaluateInput): Promise<EvaluateOutput> {
      await data.assertStorage(input);
      const ctx = Context.current();
      return engines.exclusive(async () => {
        const slot = `${input.runId}/eval`;
        const { engine, checkpointKey } = await engines.slot(slot, engineOptionsOf(input.config));
        if (checkpointKey !== input.checkpointKey) {
          await loadEngineCheckpoint(store, input.checkpointKey, engine, INFERENCE_ONLY);
          engines.mark(slot, input.checkpointKey);
        }
        const settings = { ...evaluationSettings(input.config), ...(input.greedyOnly ? { k: 0 } : {}) };
        const splits = {} as EvaluateOutput['splits'];
        for (const split of ['test', 'ood'] as const) {
          const all = await data.split(input.dataRunId ?? input.runId, split);
          const limit = input.limitPerFamily;
          const examples = limit === undefined ? all : familiesOf(all).flatMap((f) => all.filter((e) => e.family === f).slice(0, limit));
          const report = await evaluate(engine, examples, split, settings, (done, total) => ctx.heartbeat({ label: input.label, split, done, total }));
          const resultsKey = resultsKeyOf(input.runId, input.label, split);
          await putJson(data.storage, resultsKey, report);
          splits[split] = { resultsKey, overall: report.overall, byFamily: report.byFamily };
          log.info('evaluated', { runId: input.runId, stage: 'evaluation', label: input.label, split, accuracy: report.overall.accuracy });
        }
        // The real benchmarks (evaluation.benchmarks), on every policy the evaluation stage looks at; not on the
        // periodic evaluations during training (they take a few examples per family).
        const benchmarks: Partial<Record<BenchmarkName, BenchmarkSummary>> = {};
        if (input.limitPerFamily === undefined) {
          for (const [name, bench] of Object.entries(input.config.evaluation.benchmarks ?? {}) as [BenchmarkName, BenchmarkDataConfig][]) {
            const records = benchmarkRecords(bench.data, `evaluation.benchmarks.${name}.data`, bench.files ? { files: bench.files } : {});
            const maxTokens = bench.maxTokens ?? input.config.evaluation.maxTokens;
            // Sophia's own model reads one small square image and a fixed alphabet in a few positions: each prompt is
            // adapted to that (docs/benchmarks.md), so the path runs; its numbers say nothing about a real VLM.
            const model = input.config.engine.kind === 'onnx' ? modelConfig(input.config, data.tokenizer.vocabSize) : undefined;
            const result = await evaluateBenchmark(
              engine,
              name,
              records,
              {
                maxTokens,
                promptsPerBatch: input.config.evaluation.promptsPerBatch,
                template: DEFAULT_EVAL_TEMPLATE,
                seed: input.config.seed,
                ...(bench.limit !== undefined ? { limit: bench.limit } : {}),
                ...(model ? { fit: (prompt: ChatPrompt) => fitPromptToModel(prompt, model, maxTokens).prompt } : {}),
              },
              (answered, skipped) => ctx.heartbeat({ label: input.label, benchmark: name, answered, skipped }),
            );
            const resultsKey = benchmarkKeyOf(input.runId, input.label, name);
            await putJson(data.storage, resultsKey, result);
            benchmarks[name] = { resultsKey, overall: result.overall, byCategory: result.byCategory, skippedRows: result.skipped.rows, meanTokens: result.meanTokens, truncatedShare: result.truncatedShare };
            log.info('benchmark evaluated', { runId: input.runId, stage: 'evaluation', label: input.label, benchmark: name, accuracy: result.overall.accuracy, examples: result.overall.examples, skipped: result.skipped.rows });
          }
        }
        if (input.metrics) {
          await appendMetrics(data.storage, input.runId, [
            {
              stage: input.metrics.stage,
              kind: 'eval',
              step: input.metrics.step,
              time: new Date().toISOString(),
              testAccuracy: splits.test.overall.accuracy,
              // (a real dataset has no ood split: no ood number rather than a 0 from no examples)
              ...(splits.ood.overall.examples > 0 ? { oodAccuracy: splits.ood.overall.accuracy } : {}),
              testFormatRate: splits.test.overall.formatRate,
              testMeanLength: splits.test.overall.meanLength,
            },
          ]);
        }
        return { label: input.label, checkpointKey: input.checkpointKey, splits, ...(Object.keys(benchmarks).length > 0 ? { benchmarks } : {}) };
      });
    },

    async writeRunReport(input: ReportInput): Promise<{ reportKey: string; plots: string[] }> {
      await data.assertStorage(input);
      const read = async (e: EvaluateOutput, name: string): Promise<PolicyEvaluation> => ({
        key: e.label,
        name,
        checkpointKey: e.checkpointKey,
        test: await getJson<EvalReport>(data.storage, e.splits.test.resultsKey),
        ood: await getJson<EvalReport>(data.storage, e.splits.ood.resultsKey),
      });
      const metrics = await readMetrics(data.storage, input.runId);
      const rlRan = metrics.some((m) => m.stage === STORAGE_STAGES.grpo);
      const policies: PolicyEvaluation[] = [];
      for (const e of input.baselines ?? (input.before ? [input.before] : [])) policies.push(await read(e, POLICY_NAMES[e.label] ?? e.label));
      policies.push(await read(input.after, rlRan ? `after ${input.config.rl?.variant ?? 'RL'}` : 'after SFT'));
      const steps = metrics.filter((m) => m.stage === STORAGE_STAGES.sft && m.kind === 'step');
      const validations = metrics.filter((m) => m.stage === STORAGE_STAGES.sft && m.kind === 'validation');
      const best = validations.reduce<(typeof validations)[number] | undefined>((b, v) => (b === undefined || Number(v.valLoss) < Number(b.valLoss) ? v : b), undefined);
      const manifest = await store.manifest(input.after.checkpointKey).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      // Recorded with the checkpoint (parametersOf); checkpoints from before that record Sophia's model config only.
      const recorded = manifest?.meta.parameters;
      const model = manifest?.meta.model as ModelSpec | undefined;
      const parameters = typeof recorded === 'number' ? recorded : model && !isPretrained(model) ? parameterCount(model) : 0;
      // The worker's client (it throws without one, as in a test's mock environment): the report then says why.
      const times = await (async () => runTimes(Context.current().client, input.pipelineWorkflowId ?? pipelineWorkflowId(DEFAULT_TEMPORAL_CONFIG.deployment, input.runId), new Date()))().catch((err: unknown) => {
        log.warn('stage times unavailable', { runId: input.runId, error: String(err) });
        return { unavailable: `Temporal's records of the run could not be read (${err instanceof Error ? err.message : String(err)})` };
      });
      // (Inputs from before reports read the dataset did not carry dataRunId: an ablation's dataset is another run's.)
      const dataset = await readDatasetManifest(data.storage, input.dataRunId ?? input.runId).catch((err: unknown) => {
        if (err instanceof SophiaError && err.category === 'not-found') return undefined;
        throw err;
      });
      const report = buildRunReport({
        runId: input.runId,
        preset: input.config.name ?? 'custom',
        parameters,
        trainExamples: dataset?.splits.train.count ?? input.config.data.perFamily.train * FAMILIES.length,
        times,
        sft: {
          steps: steps.at(-1)?.step ?? 0,
          seconds: steps.length > 1 ? (Date.parse(steps.at(-1)!.time) - Date.parse(steps[0]!.time)) / 1000 : 0,
          stoppedEarly: (steps.at(-1)?.step ?? 0) < input.config.sft.steps,
          bestStep: best?.step ?? -1,
          bestValLoss: best ? Number(best.valLoss) : Number.NaN,
          history: steps.map((m) => ({ step: m.step, loss: Number(m.loss), lr: Number(m.lr), gradNorm: Number(m.gradNorm), tokens: Number(m.tokens) })),
          validations: validations.map((m) => ({ step: m.step, valLoss: Number(m.valLoss) })),
        },
        policies,
      });
      const rmKey = reportKey(input.runId, 'reward-model.json');
      const rewardModel = (await data.storage.exists(rmKey)) ? await getJson<RewardModelSummary>(data.storage, rmKey) : undefined;
      const method = methodSections(metrics, rewardModel);
      const dataReport = dataset ? dataSection(dataset) : undefined;
      report.markdown = `${report.markdown}${dataReport ? `\n\n${dataReport.markdown}` : ''}\n\n${method.markdown}`;
      report.json = { ...report.json, ...dataReport?.json, ...method.json };
      const evaluated = [...(input.baselines ?? (input.before ? [input.before] : [])), input.after];
      const benchmarks = benchmarkSection(evaluated.map((e, i) => ({ name: policies[i]!.name, benchmarks: e.benchmarks ?? {} })));
      if (benchmarks) {
        report.markdown = `${report.markdown}\n\n${benchmarks.markdown}`;
        report.json = { ...report.json, ...benchmarks.json };
      }
      report.plots = [...report.plots, ...method.plots];
      const written = await writeReport(data.storage, input.runId, report);
      return { reportKey: written.markdown, plots: written.plots };
    },
  });
}

export type EvaluationActivities = ReturnType<typeof createEvaluationActivities>;
