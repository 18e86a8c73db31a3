/**
 * The per-family greedy accuracy plots every report shows (`accuracy-test.png`, `accuracy-ood.png`): one bar series
 * per evaluated policy, families on the x axis. Shared by the pipeline's run report and `sophia sft`'s report.
 */
import type { EvalReport } from '../evaluation/evaluate';
import { FAMILIES } from '../tasks/types';
import { renderBarChart } from './charts';
import type { ReportPlot } from './report';

/** A policy's evaluation on both splits, named as the plot's legend shows it. */
export interface PlottedPolicy {
  name: string;
  test: EvalReport;
  ood: EvalReport;
}

export function accuracyPlots(policies: readonly PlottedPolicy[]): ReportPlot[] {
  const chart = (split: 'test' | 'ood') =>
    renderBarChart({
      title: `Greedy accuracy per family (${split})`,
      categories: FAMILIES,
      yLabel: 'accuracy',
      yMin: 0,
      yMax: 1,
      valueLabels: true,
      series: policies.map((p) => ({ name: p.name, values: FAMILIES.map((f) => p[split].byFamily[f].accuracy) })),
    });
  return [
    { name: 'accuracy-test', title: 'Accuracy per family (test)', chart: chart('test') },
    { name: 'accuracy-ood', title: 'Accuracy per family (ood)', chart: chart('ood') },
  ];
}
