/**
 * Run reports in storage: `runs/{runId}/reports/report.json` (every number), `report.md` (tables a person
 * reads, with the plots embedded by relative path) and one PNG (+ SVG) per plot, all written through the
 * storage port so they live next to the run's checkpoints, locally or in S3.
 */
import { reportKey } from '../storage/keys';
import type { Storage } from '../storage/types';
import type { RenderedChart } from './charts';

export interface ReportPlot {
  /** File name without extension: `loss` → loss.png, loss.svg. */
  name: string;
  title: string;
  chart: RenderedChart;
}

export interface Report {
  title: string;
  /** Markdown body; `plots` are appended as images under their titles. */
  markdown: string;
  json: Record<string, unknown>;
  plots: ReportPlot[];
}

export interface WrittenReport {
  json: string;
  markdown: string;
  plots: string[];
}

export async function writeReport(storage: Storage, runId: string, report: Report, prefix = ''): Promise<WrittenReport> {
  const path = (name: string) => reportKey(runId, prefix ? `${prefix}/${name}` : name);
  const plots: string[] = [];
  for (const plot of report.plots) {
    await storage.put(path(`${plot.name}.png`), plot.chart.png, { contentType: 'image/png' });
    await storage.put(path(`${plot.name}.svg`), new TextEncoder().encode(plot.chart.svg), { contentType: 'image/svg+xml' });
    plots.push(path(`${plot.name}.png`));
  }
  const images = report.plots.map((p) => `### ${p.title}\n\n![${p.title}](${p.name}.png)\n`).join('\n');
  const markdown = `# ${report.title}\n\n${report.markdown.trim()}\n\n${images ? `## Plots\n\n${images}` : ''}`;
  await storage.put(path('report.md'), new TextEncoder().encode(markdown), { contentType: 'text/markdown' });
  await storage.put(path('report.json'), new TextEncoder().encode(`${JSON.stringify({ title: report.title, ...report.json, plots }, null, 2)}\n`), {
    contentType: 'application/json',
  });
  return { json: path('report.json'), markdown: path('report.md'), plots };
}

/** A markdown table from a header and rows of cells. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export const pct = (x: number | undefined) => (x === undefined ? '–' : `${(100 * x).toFixed(1)} %`);
