import { describe, expect, it } from 'vitest';
import { SophiaError } from '../common/errors';
import { BENCHMARK_NAMES, BENCHMARKS, benchmarkByName, isBenchmarkName } from './index';

describe('the benchmark registry', () => {
  it('names the five benchmarks the paper reports, in its order', () => {
    expect(BENCHMARK_NAMES).toEqual(['mathvista', 'mathverse', 'mmmu', 'chartqa', 'mmstar']);
    expect(isBenchmarkName('mmmu')).toBe(true);
    expect(isBenchmarkName('toString')).toBe(false);
  });

  it('refuses an unknown name, listing the known ones', () => {
    let err: unknown;
    try {
      benchmarkByName('mathvista-test');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SophiaError);
    expect((err as SophiaError).category).toBe('input');
    expect((err as Error).message).toBe('--benchmark: unknown benchmark "mathvista-test"; known benchmarks: mathvista, mathverse, mmmu, chartqa, mmstar');
  });

  // The example each benchmark shows in `sophia score --help` and in its errors is a valid, correctly answered
  // row with every category field, so what users copy works.
  it.each(BENCHMARK_NAMES)('%s: its example line validates, scores correct and fills every category key', (name) => {
    const benchmark = BENCHMARKS[name];
    const record = JSON.parse(benchmark.exampleLine) as Record<string, unknown>;
    const row = benchmark.read(record);
    expect(row.score(record.response as string)).toMatchObject({ correct: true, score: 1 });
    expect(Object.keys(row.categories).sort()).toEqual([...benchmark.categoryKeys].sort());
    expect(row.score('<answer>Z</answer>').correct).toBe(false);
  });
});
