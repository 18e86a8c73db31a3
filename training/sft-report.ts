/**
 * The SFT warmup's report: accuracy per family and split before and after warmup (measured in the same run),
 * format rate, response length, pass@k, and the loss curves.
 */
import { type EvalReport, familyRows } from '../evaluation/evaluate';
import { type RenderedChart, renderLineChart } from '../report/charts';
import { accuracyPlots } from '../report/accuracy-plots';
import { type Report, markdownTable, pct } from '../report/report';
import type { SftResult } from './sft';

export interface SftReportInput {
  runId: string;
  preset: string;
  parameters: number;
  trainExamples: number;
  seconds: { sft: number; total: number };
  sft: SftResult;
  before: { test: EvalReport; ood: EvalReport };
  after: { test: EvalReport; ood: EvalReport };
  checkpointKey: string;
  /** What `before` and `after` are (default: the untrained model and the model after SFT). */
  labels?: { before: string; after: string };
  title?: string;
}

/** Exponential moving average, for a readable training-loss curve. */
function smooth(values: readonly number[], alpha = 0.05): number[] {
  let s = values[0] ?? 0;
  return values.map((v) => (s = alpha * v + (1 - alpha) * s));
}

/** The SFT loss curves: training loss (smoothed) and validation loss by step (also in the pipeline's run report). */
export function sftLossChart(sft: Pick<SftResult, 'history' | 'validations'>): RenderedChart {
  return renderLineChart({
    title: 'SFT loss',
    xLabel: 'step',
    yLabel: 'token cross-entropy',
    series: [
      { name: 'train (smoothed)', points: smooth(sft.history.map((s) => s.loss)).map((v, i) => [sft.history[i]!.step, v] as const) },
      { name: 'validation', points: sft.validations.map((v) => [v.step, v.valLoss] as const) },
    ],
  });
}

export function buildSftReport(input: SftReportInput): Report {
  const labels = input.labels ?? { before: 'untrained', after: 'after SFT' };
  const rows: string[][] = [];
  for (const split of ['test', 'ood'] as const) {
    const before = input.before[split];
    const after = input.after[split];
    for (const row of familyRows(after)) {
      const [b, a] = [row.of(before), row.of(after)];
      rows.push([split, row.label, String(a.examples), pct(b.accuracy), pct(a.accuracy), a.meanReward.toFixed(3), pct(b.formatRate), pct(a.formatRate), a.meanLength.toFixed(1), pct(a.passAtK)]);
    }
  }
  const k = input.after.test.k;
  const table = markdownTable(
    ['split', 'family', 'n', `accuracy ${labels.before}`, `accuracy ${labels.after}`, 'mean reward after', `format ${labels.before}`, 'format after', 'length after', `pass@${k} after`],
    rows,
  );
  const steps = input.sft.history;
  const loss = sftLossChart(input.sft);
  const markdown = `Run \`${input.runId}\`, preset \`${input.preset}\`: policy with ${input.parameters.toLocaleString('en-US')} parameters, ` +
    `${input.trainExamples} training examples. SFT: ${input.sft.steps} steps in ${input.seconds.sft.toFixed(0)} s` +
    `${input.sft.stoppedEarly ? ' (stopped early)' : ''}; best validation loss ${input.sft.bestValLoss.toFixed(4)} at step ${input.sft.bestStep}. ` +
    `Evaluated checkpoint: \`${input.checkpointKey}\`. Wall time with evaluations: ${input.seconds.total.toFixed(0)} s.\n\n` +
    `Accuracy = share of greedy responses with outcome reward 1; "${labels.before}" and "${labels.after}" are measured in the same run.\n\n${table}\n`;
  const summary = (r: EvalReport) => ({ overall: r.overall, byFamily: r.byFamily, k: r.k });
  return {
    title: input.title ?? `SFT warmup — ${input.runId}`,
    markdown,
    json: {
      runId: input.runId,
      preset: input.preset,
      parameters: input.parameters,
      trainExamples: input.trainExamples,
      seconds: input.seconds,
      checkpointKey: input.checkpointKey,
      sft: { steps: input.sft.steps, stoppedEarly: input.sft.stoppedEarly, bestStep: input.sft.bestStep, bestValLoss: input.sft.bestValLoss, validations: input.sft.validations, history: steps },
      before: { test: summary(input.before.test), ood: summary(input.before.ood) },
      after: { test: summary(input.after.test), ood: summary(input.after.ood) },
      samples: input.after.test.examples.slice(0, 20),
    },
    plots: [
      { name: 'loss', title: 'SFT loss', chart: loss },
      ...accuracyPlots([
        { name: labels.before, ...input.before },
        { name: labels.after, ...input.after },
      ]),
    ],
  };
}
