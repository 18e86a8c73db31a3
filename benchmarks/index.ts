/**
 * The benchmark registry: every benchmark Sophia reports, by the name used in `sophia score --benchmark`, in run
 * configs (`evaluation.benchmarks`) and in reports. This table is the one place a name is declared; the list of
 * names, the CLI's help and its errors derive from it. Each entry's scoring rules, fields and deviations from the
 * official pipeline are documented in its module and in docs/benchmarks.md.
 */
import { SophiaError } from '../common/errors';
import { CHARTQA } from './chartqa';
import { MATHVERSE } from './mathverse';
import { MATHVISTA } from './mathvista';
import { MMMU } from './mmmu';
import { MMSTAR } from './mmstar';
import { type Benchmark } from './types';

export const BENCHMARKS = {
  mathvista: MATHVISTA,
  mathverse: MATHVERSE,
  mmmu: MMMU,
  chartqa: CHARTQA,
  mmstar: MMSTAR,
} as const satisfies Readonly<Record<string, Benchmark>>;

export type BenchmarkName = keyof typeof BENCHMARKS;

/** The known names, in the order the paper's tables list the benchmarks. */
export const BENCHMARK_NAMES = Object.keys(BENCHMARKS) as BenchmarkName[];

export function isBenchmarkName(name: string): name is BenchmarkName {
  return Object.hasOwn(BENCHMARKS, name);
}

/** The benchmark called `name`; an unknown name is an input error that lists the known ones. */
export function benchmarkByName(name: string, field = '--benchmark'): Benchmark {
  if (!isBenchmarkName(name)) {
    throw new SophiaError('input', `${field}: unknown benchmark ${JSON.stringify(name)}; known benchmarks: ${BENCHMARK_NAMES.join(', ')}`);
  }
  return BENCHMARKS[name];
}
