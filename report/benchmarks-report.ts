/**
 * The run report's "Benchmarks" section: each evaluated policy's accuracy on the real benchmarks of
 * `evaluation.benchmarks` (benchmarks/evaluate.ts, each benchmark's own scoring), side by side with published numbers
 * (benchmarks/reference.ts), and the final policy's per-category accuracies. Absent when the run has no benchmarks.
 */
import type { BenchmarkSummary } from '../activities/evaluation';
import type { BenchmarkName } from '../benchmarks/index';
import { BENCHMARKS } from '../benchmarks/index';
import { REFERENCE_MODELS } from '../benchmarks/reference';

export interface PolicyBenchmarks {
  /** "initial", "after SFT", "after trust-grpo", … as the report names the policy. */
  name: string;
  benchmarks: Partial<Record<BenchmarkName, BenchmarkSummary>>;
}

const pct = (x: number) => (100 * x).toFixed(1);

export function benchmarkSection(policies: readonly PolicyBenchmarks[]): { markdown: string; json: Record<string, unknown> } | undefined {
  const names = [...new Set(policies.flatMap((p) => Object.keys(p.benchmarks)))] as BenchmarkName[];
  const final = policies.at(-1);
  if (names.length === 0 || !final) return undefined;
  const header = `| policy | ${names.join(' | ')} |\n|---|${names.map(() => '---:').join('|')}|`;
  const rows = policies.map((p) => `| ${p.name} | ${names.map((n) => { const b = p.benchmarks[n]; return b ? `${pct(b.overall.accuracy)} (${b.overall.examples})` : '—'; }).join(' | ')} |`);
  const references = REFERENCE_MODELS.map((m) => `| ${m.name} (${m.source}) | ${names.map((n) => (m.accuracy[n] === undefined ? '—' : m.accuracy[n].toFixed(1))).join(' | ')} |`);
  const notes = names.flatMap((n) => {
    const b = final.benchmarks[n];
    if (!b) return [];
    const parts = [`${BENCHMARKS[n].title}: mean answer ${b.meanTokens.toFixed(0)} tokens, ${pct(b.truncatedShare)} % cut off by the token limit`];
    if (b.skippedRows > 0) parts.push(`${b.skippedRows} rows skipped (a field or image missing: the stored results name them)`);
    return [`- ${parts.join('; ')}.`];
  });
  const categories = names.flatMap((n) => {
    const b = final.benchmarks[n];
    if (!b) return [];
    return Object.entries(b.byCategory).map(
      ([key, values]) => `**${n}, by ${key}** (${final.name}): ${Object.entries(values).map(([v, t]) => `${v} ${pct(t.accuracy)} (${t.examples})`).join('; ')}`,
    );
  });
  const markdown =
    `## Benchmarks\n\nAccuracy (%) with each benchmark's own answer extraction and scoring (docs/benchmarks.md), greedy, ` +
    `examples in parentheses; published numbers below for reference (their prompts and settings differ).\n\n` +
    `${[header, ...rows, ...references].join('\n')}\n\n${notes.join('\n')}${categories.length ? `\n\n${categories.join('\n\n')}` : ''}`;
  return { markdown, json: { benchmarks: Object.fromEntries(policies.map((p) => [p.name, p.benchmarks])) } };
}
