import { describe, expect, it } from 'vitest';
import type { BenchmarkSummary } from '../activities/evaluation';
import { benchmarkSection } from './benchmarks-report';

const summary = (correct: number, examples: number, extra: Partial<BenchmarkSummary> = {}): BenchmarkSummary => ({
  resultsKey: 'k',
  overall: { examples, correct, accuracy: correct / examples },
  byCategory: {},
  skippedRows: 0,
  meanTokens: 100,
  truncatedShare: 0,
  ...extra,
});

describe('benchmarkSection', () => {
  it('is absent without benchmarks', () => {
    expect(benchmarkSection([{ name: 'after SFT', benchmarks: {} }])).toBeUndefined();
  });

  it('tables every policy against the published numbers, with the final policy\'s notes and categories', () => {
    const section = benchmarkSection([
      { name: 'initial', benchmarks: { mathvista: summary(50, 100) } },
      {
        name: 'after trust-grpo',
        benchmarks: {
          mathvista: summary(62, 100, { skippedRows: 3, truncatedShare: 0.25, byCategory: { task: { 'figure question answering': { examples: 40, correct: 30, accuracy: 0.75 } } } }),
          chartqa: summary(9, 10),
        },
      },
    ])!;
    const lines = section.markdown.split('\n');
    expect(lines).toContain('| policy | mathvista | chartqa |');
    expect(lines).toContain('| initial | 50.0 (100) | — |');
    expect(lines).toContain('| after trust-grpo | 62.0 (100) | 90.0 (10) |');
    expect(lines).toContain('| SophiaVL-R1-7B (SophiaVL-R1 paper) | 71.3 | — |');
    expect(lines).toContain('| Qwen2.5-VL-7B-Instruct (model card) | 68.2 | 87.3 |');
    expect(section.markdown).toContain('MathVista testmini: mean answer 100 tokens, 25.0 % cut off by the token limit; 3 rows skipped');
    expect(section.markdown).toContain('**mathvista, by task** (after trust-grpo): figure question answering 75.0 (40)');
    expect(Object.keys(section.json.benchmarks as object)).toEqual(['initial', 'after trust-grpo']);
  });
});
