/**
 * The pipeline run's report (`runs/{runId}/reports/report.md` and `report.json`): how long the run and each of its
 * stages really took, and the accuracy of every policy the evaluation stage measured, side by side: the initial
 * (untrained) policy, the policy after SFT, and the final one (after RL when the run has it). All of them are
 * measured in the same run on the same test and ood examples. The SFT warmup's loss curve and the method's
 * sections (reward model, Trust-GRPO: `rl-report.ts`) complete it.
 *
 * Stage times come from the caller (the evaluation activity reads them from Temporal's records of the stage
 * workflows); when they could not be read, the report says why instead of guessing.
 */
import { type EvalReport, familyRows } from '../evaluation/evaluate';
import type { SftResult } from '../training/sft';
import { sftLossChart } from '../training/sft-report';
import { accuracyPlots } from './accuracy-plots';
import { type Report, type ReportPlot, markdownTable, pct } from './report';

/** One evaluated policy: `key` names it in report.json (`initial`, `sft`, `final`), `name` in tables and plots. */
export interface PolicyEvaluation {
  key: string;
  name: string;
  checkpointKey: string;
  test: EvalReport;
  ood: EvalReport;
}

/** A stage's wall time: first start to close (continue-as-new runs included); `endedAt` undefined: still running. */
export interface StageTime {
  stage: string;
  startedAt: string;
  endedAt: string | undefined;
  seconds: number;
}

export interface RunTimes {
  /** From the pipeline's start to the report. */
  totalSeconds: number;
  stages: StageTime[];
}

export interface RunReportInput {
  runId: string;
  preset: string;
  parameters: number;
  trainExamples: number;
  /** Real wall times, or why there are none. */
  times: RunTimes | { unavailable: string };
  /** The SFT warmup's curves, when the run trained it (`sft.steps` 0: it did not). */
  sft: Omit<SftResult, 'bestState'> & { seconds: number };
  /** In order: the initial policy, after SFT, final. The last one is the run's result. */
  policies: PolicyEvaluation[];
}

/** `4m12s`-style duration (reports are read by people; the JSON keeps the seconds). */
function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

const clock = (iso: string) => iso.slice(11, 19);

function timesSection(times: RunReportInput['times']): string {
  if ('unavailable' in times) return `## Wall time\n\nStage times are not available for this run: ${times.unavailable}.`;
  const rows = times.stages.map((t) => [t.stage, clock(t.startedAt), t.endedAt ? clock(t.endedAt) : 'this report', duration(t.seconds)]);
  return (
    `## Wall time\n\n${duration(times.totalSeconds)} from the pipeline's start to this report. Per stage (UTC; from Temporal's records of ` +
    `the stage workflows, first start to close, restarts and continue-as-new included):\n\n${markdownTable(['stage', 'started', 'ended', 'wall time'], rows)}`
  );
}

function accuracySection(policies: readonly PolicyEvaluation[]): { markdown: string; plots: ReportPlot[] } {
  const final = policies.at(-1)!;
  const rows: string[][] = [];
  for (const split of ['test', 'ood'] as const) {
    for (const row of familyRows(final[split])) {
      const of = (p: PolicyEvaluation) => row.of(p[split]);
      const f = of(final);
      rows.push([split, row.label, String(f.examples), ...policies.map((p) => pct(of(p).accuracy)), ...policies.map((p) => pct(of(p).formatRate)), f.meanReward.toFixed(3), f.meanLength.toFixed(1), pct(f.passAtK)]);
    }
  }
  const k = final.test.k;
  const table = markdownTable(
    ['split', 'family', 'n', ...policies.map((p) => `accuracy ${p.name}`), ...policies.map((p) => `format ${p.name}`), `mean reward ${final.name}`, `length ${final.name}`, `pass@${k} ${final.name}`],
    rows,
  );
  const evaluated = policies.map((p) => `${p.name}: \`${p.checkpointKey}\``).join('; ');
  const markdown =
    `## Accuracy\n\nAccuracy = share of greedy responses with outcome reward 1; every policy is measured in this run on the same examples ` +
    `(${evaluated}).\n\n${table}`;
  return { markdown, plots: accuracyPlots(policies) };
}

export function buildRunReport(input: RunReportInput): Report {
  const final = input.policies.at(-1);
  if (!final) throw new Error('buildRunReport: policies is empty; it needs at least the final evaluation');
  const { sft } = input;
  const accuracy = accuracySection(input.policies);
  const sftText =
    sft.steps > 0
      ? `\n\n## SFT warmup\n\n${sft.steps} steps${sft.stoppedEarly ? ' (stopped early)' : ''}, ${duration(sft.seconds)} from its first to its last step; ` +
        `best validation loss ${sft.bestValLoss.toFixed(4)} at step ${sft.bestStep}.`
      : '';
  const markdown =
    `Run \`${input.runId}\`, preset \`${input.preset}\`: policy with ${input.parameters.toLocaleString('en-US')} parameters, ` +
    `${input.trainExamples} training examples. Evaluated checkpoint: \`${final.checkpointKey}\`.\n\n` +
    `${timesSection(input.times)}\n\n${accuracy.markdown}${sftText}\n`;
  const summary = (r: EvalReport) => ({ overall: r.overall, byFamily: r.byFamily, k: r.k });
  const evaluations = Object.fromEntries(input.policies.map((p) => [p.key, { name: p.name, checkpointKey: p.checkpointKey, test: summary(p.test), ood: summary(p.ood) }]));
  return {
    title: `Run report — ${input.runId}`,
    markdown,
    json: {
      runId: input.runId,
      preset: input.preset,
      parameters: input.parameters,
      trainExamples: input.trainExamples,
      times: input.times,
      checkpointKey: final.checkpointKey,
      sft: { steps: sft.steps, seconds: sft.seconds, stoppedEarly: sft.stoppedEarly, bestStep: sft.bestStep, bestValLoss: sft.bestValLoss, validations: sft.validations, history: sft.history },
      evaluations,
      // The final policy (the run's result), under the name it had before the other policies were reported beside it.
      after: evaluations[final.key],
      samples: final.test.examples.slice(0, 20),
    },
    plots: [...(sft.steps > 0 ? [{ name: 'loss', title: 'SFT loss', chart: sftLossChart(sft) }] : []), ...accuracy.plots],
  };
}
