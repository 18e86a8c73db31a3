/**
 * The report sections of the method's stages: the thinking reward model (agreement with held-out annotations,
 * trained vs untrained, the score-bin balance) and Trust-GRPO (per-step rewards, trust weight γ and annealing,
 * KL/entropy, accuracy of the periodic evaluations), built from metrics.jsonl records and the reward-model report.
 */
import { STORAGE_STAGES } from '../common/run-layout';
import type { OnPolicyMixedGroups } from '../activities/reward-model';
import type { RewardModelMetrics } from '../rewards/metrics';
import type { MetricRecord } from '../storage/metrics-log';
import { renderLineChart } from './charts';
import { type ReportPlot, markdownTable } from './report';

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : '—');

export interface RewardModelSummary {
  trained: RewardModelMetrics;
  untrained: RewardModelMetrics;
  annotator: string;
  train: number;
  heldOut: number;
  /** The held-out parts: validation picks the checkpoint, test is what the table measures (absent in reports written before the split). */
  validation?: number;
  test?: number;
  binsBefore?: number[];
  binsAfter?: number[];
  /** The reward model on the policy's own samples (activities/reward-model.ts `OnPolicyMixedGroups`). */
  onPolicy?: OnPolicyMixedGroups;
}

export interface MethodSections {
  markdown: string;
  json: Record<string, unknown>;
  plots: ReportPlot[];
}

const num = (x: number | undefined, digits = 3) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));

function series(records: readonly MetricRecord[], field: string): [number, number][] {
  return records.filter((r) => typeof r[field] === 'number' && Number.isFinite(r[field])).map((r) => [r.step, r[field] as number]);
}

export function methodSections(metrics: readonly MetricRecord[], rewardModel: RewardModelSummary | undefined): MethodSections {
  const parts: string[] = [];
  const plots: ReportPlot[] = [];
  const json: Record<string, unknown> = {};
  if (rewardModel) {
    // (mixed-group accuracy and calibration: absent from reports written before they were measured)
    const row = (name: string, m: RewardModelMetrics) => [name, num(m.mae), num(m.pearson), num(m.spearman), num(m.pairwiseAccuracy), String(m.pairs), m.mixedGroupAccuracy === undefined ? '—' : `${num(m.mixedGroupAccuracy)} (${m.mixedGroups})`, m.calibrationError === undefined ? '—' : num(m.calibrationError)];
    parts.push(
      `## Thinking reward model\n\nAnnotator \`${rewardModel.annotator}\`; ${rewardModel.train} training and ${rewardModel.heldOut} held-out responses ` +
        (rewardModel.test !== undefined && rewardModel.validation !== undefined
          ? `(held out by prompt: ${rewardModel.validation} for validation, which picked the checkpoint, and ${rewardModel.test} for test, which the table measures). `
          : '(held out by prompt). ') +
        `Pairwise accuracy: share of same-prompt response pairs with different annotations that the model orders the same way. ` +
        `Mixed-group accuracy: among held-out prompts with both right and wrong final answers (by the outcome grader; groups in brackets), ` +
        `the share where the model scores the right ones higher on average — what the trust weight reacts to (RL's rmMixedGroupAccuracy ` +
        `tracks it on the policy's own samples, step by step). Calibration error: expected calibration error of the scores against the ` +
        `annotations (ten bins).\n\n` +
        markdownTable(['model', 'MAE', 'Pearson', 'Spearman', 'pairwise accuracy', 'pairs', 'mixed-group accuracy', 'calibration error'], [row('trained', rewardModel.trained), row('untrained (same init)', rewardModel.untrained)]) +
        (rewardModel.onPolicy
          ? `\n\nOn the policy's own samples (${rewardModel.onPolicy.responses} responses to ${rewardModel.onPolicy.prompts} held-out test prompts at RL's group size and ` +
            `temperature, before RL): ${rewardModel.onPolicy.mixedGroups} groups have right and wrong answers; the trained model scores the right ones higher ` +
            `in ${pct(rewardModel.onPolicy.trained)} of them, the untrained one in ${pct(rewardModel.onPolicy.untrained)}` +
            (rewardModel.onPolicy.policyLikelihood !== undefined
              ? `, and the policy's own likelihood of each response (mean log-probability per token, the baseline a reward model has to beat) in ${pct(rewardModel.onPolicy.policyLikelihood)}.`
              : '.')
          : '') +
        (rewardModel.binsBefore && rewardModel.binsAfter
          ? `\n\nScore bins (0.0–0.1 … 0.9–1.0) before balancing: ${rewardModel.binsBefore.join(' / ')}; after: ${rewardModel.binsAfter.join(' / ')}.`
          : ''),
    );
    json.rewardModel = rewardModel;
    const rmSteps = metrics.filter((m) => m.stage === STORAGE_STAGES.rewardModel && m.kind === 'step');
    const rmVal = metrics.filter((m) => m.stage === STORAGE_STAGES.rewardModel && m.kind === 'validation');
    if (rmSteps.length > 0) {
      plots.push({
        name: 'reward-model-loss',
        title: 'Reward model training',
        chart: renderLineChart({
          title: 'Reward model: training loss and validation MAE',
          xLabel: 'step',
          yLabel: 'loss / MAE',
          series: [
            { name: 'train loss', points: series(rmSteps, 'loss') },
            { name: 'validation MAE', points: series(rmVal, 'valLoss') },
          ],
        }),
      });
    }
  }
  const steps = metrics.filter((m) => m.stage === STORAGE_STAGES.grpo && m.kind === 'step');
  const evals = metrics.filter((m) => m.stage === STORAGE_STAGES.grpo && m.kind === 'eval');
  if (steps.length > 0) {
    const mean = (field: string, from: number, to: number) => {
      const xs = steps.slice(from, to).map((r) => r[field]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
    };
    const tenth = Math.max(1, Math.floor(steps.length / 10));
    const fields = ['outcomeReward', 'thinkingReward', 'reward', 'gamma', 'distrustedShare', 'mixedGroupShare', 'rmMixedGroupAccuracy', 'anneal', 'zeroVarianceShare', 'kl', 'entropy', 'clipFraction', 'logprobDiffMax', 'responseLength', 'formatRate'];
    parts.push(
      `## Trust-GRPO\n\n${steps.length} RL steps. Means over the first and the last tenth of the steps:\n\n` +
        markdownTable(['metric', `steps 1–${tenth}`, `last ${tenth}`], fields.map((f) => [f, num(mean(f, 0, tenth)), num(mean(f, steps.length - tenth, steps.length))])) +
        (evals.length > 0 ? `\n\nPeriodic greedy evaluation (a subset per family):\n\n${markdownTable(['step', 'test accuracy', 'ood accuracy'], evals.map((e) => [String(e.step), num(e.testAccuracy as number), num(e.oodAccuracy as number)]))}` : ''),
    );
    json.trustGrpo = { steps: steps.length, first: Object.fromEntries(fields.map((f) => [f, mean(f, 0, tenth)])), last: Object.fromEntries(fields.map((f) => [f, mean(f, steps.length - tenth, steps.length)])), evals };
    const line = (name: string, title: string, yLabel: string, fields2: [string, string][]) =>
      plots.push({ name, title, chart: renderLineChart({ title, xLabel: 'RL step', yLabel, series: fields2.map(([field, label]) => ({ name: label, points: series(steps, field) })).filter((s) => s.points.length > 0) }) });
    line('rl-rewards', 'Rewards per RL step', 'mean reward', [
      ['outcomeReward', 'outcome R^o'],
      ['thinkingReward', 'thinking R^t'],
      ['reward', 'final R'],
    ]);
    line('rl-trust', 'Trust weight and annealing', 'value', [
      ['gamma', 'mean γ'],
      ['distrustedShare', 'share of groups with γ < 1'],
      ['rmMixedGroupAccuracy', 'RM prefers the correct (mixed groups)'],
      ['anneal', 'annealing factor'],
      ['zeroVarianceShare', 'zero-variance groups'],
    ]);
    line('rl-kl-entropy', 'KL to the reference and entropy', 'nats per token', [
      ['kl', 'KL (k3)'],
      ['entropy', 'entropy'],
    ]);
    if (evals.length > 0) {
      plots.push({
        name: 'rl-accuracy',
        title: 'Accuracy during RL',
        chart: renderLineChart({ title: 'Greedy accuracy during RL', xLabel: 'RL step', yLabel: 'accuracy', yMin: 0, yMax: 1, series: [{ name: 'test', points: series(evals, 'testAccuracy') }, { name: 'ood', points: series(evals, 'oodAccuracy') }] }),
      });
    }
  }
  return { markdown: parts.join('\n\n'), json, plots };
}
