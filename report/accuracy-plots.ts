/**
 * The per-family greedy accuracy plots every report shows (`accuracy-test.png`, `accuracy-ood.png`): one bar series
 * per evaluated policy, families on the x axis. Shared by the pipeline's run report and `sophia sft`'s report.
 */
import { type EvalReport, NO_EXAMPLES } from '../evaluation/evaluate';
import { renderBarChart } from './charts';
import type { ReportPlot } from './report';

/** A policy's evaluation on both splits, named as the plot's legend shows it. */
export interface PlottedPolicy {
  name: string;
  test: EvalReport;
  ood: EvalReport;
}

export function accuracyPlots(policies: readonly PlottedPolicy[]): ReportPlot[] {
  const last = policies.at(-1);
  const chart = (split: 'test' | 'ood') => {
    const families = Object.keys(last![split].byFamily);
    return renderBarChart({
      title: `Greedy accuracy per family (${split})`,
      categories: families,
      yLabel: 'accuracy',
      yMin: 0,
      yMax: 1,
      valueLabels: true,
      series: policies.map((p) => ({ name: p.name, values: families.map((f) => (p[split].byFamily[f] ?? NO_EXAMPLES).accuracy) })),
    });
  };
  // A split without examples (a real dataset's ood) has no plot.
  return (['test', 'ood'] as const).filter((split) => last && last[split].overall.examples > 0).map((split) => ({ name: `accuracy-${split}`, title: `Accuracy per family (${split})`, chart: chart(split) }));
}
