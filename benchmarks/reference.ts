/**
 * Published accuracies (%) to read an evaluation against, with where each number comes from. Only numbers with a
 * source are listed; a blank is a number not recorded here, not a zero.
 *
 * - SophiaVL-R1-7B: the SophiaVL-R1 paper (Fan et al. 2025, arXiv 2505.17018), the method this system implements.
 * - Qwen2.5-VL-7B-Instruct: its model card's benchmark table (the starting point of SophiaVL-R1-7B). The SophiaVL-R1
 *   paper re-evaluates it under its own prompts; those numbers are not recorded here.
 */
import type { BenchmarkName } from './index';

export interface ReferenceModel {
  name: string;
  source: string;
  accuracy: Partial<Record<BenchmarkName, number>>;
}

export const REFERENCE_MODELS: readonly ReferenceModel[] = [
  { name: 'Qwen2.5-VL-7B-Instruct', source: 'model card', accuracy: { mathvista: 68.2, mmmu: 58.6, chartqa: 87.3, mmstar: 63.9 } },
  { name: 'SophiaVL-R1-7B', source: 'SophiaVL-R1 paper', accuracy: { mathvista: 71.3, mathverse: 48.8, mmmu: 61.3 } },
];
