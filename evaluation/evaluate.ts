/**
 * Benchmark evaluation: run a policy on a split (greedy, and sampled@k), grade every response with the outcome
 * rules (`tasks/grading.ts`, the same code the trainer uses), and summarize per family:
 *
 *   accuracy      share of greedy responses that are fully correct (reward 1)
 *   meanReward    mean outcome reward of the greedy responses (partial credit for OCR)
 *   formatRate    share of responses that pass the <think>…</think><answer>…</answer> format gate
 *   meanLength    mean response length in tokens
 *   passAtK       share of examples with at least one fully correct response among k samples
 */
import type { Engine } from '../engine/types';
import { grade } from '../tasks/grading';
import { promptsOf } from '../tasks/prompt';
import { type Example, familiesOf } from '../tasks/types';

export interface EvalSettings {
  /** Samples per example for pass@k (0 = greedy only). */
  k: number;
  /** Temperature of the k samples. */
  temperature: number;
  /** Most response tokens. */
  maxTokens: number;
  /** Prompts per engine call. */
  promptsPerBatch: number;
  seed: number;
}

export interface ExampleResult {
  id: string;
  family: string;
  response: string;
  reward: number;
  formatOk: boolean;
  length: number;
  /** Fully correct samples among k. */
  sampledCorrect: number;
}

export interface FamilySummary {
  examples: number;
  accuracy: number;
  meanReward: number;
  formatRate: number;
  meanLength: number;
  passAtK: number | undefined;
}

/** A summary of no examples (a family one policy's evaluation lacks). */
export const NO_EXAMPLES: FamilySummary = { examples: 0, accuracy: 0, meanReward: 0, formatRate: 0, meanLength: 0, passAtK: undefined };

/**
 * The rows a per-family table of `split` shows: each family of the report, then "all"; each row reads its summary
 * from any policy's evaluation of the same examples. None when the split has no examples (a real dataset's ood).
 */
export function familyRows(report: Pick<EvalReport, 'overall' | 'byFamily'>): { label: string; of: (r: Pick<EvalReport, 'overall' | 'byFamily'>) => FamilySummary }[] {
  if (report.overall.examples === 0) return [];
  return [...Object.keys(report.byFamily).map((f) => ({ label: f, of: (r: Pick<EvalReport, 'overall' | 'byFamily'>) => r.byFamily[f] ?? NO_EXAMPLES })), { label: 'all', of: (r: Pick<EvalReport, 'overall' | 'byFamily'>) => r.overall }];
}

export interface EvalReport {
  split: string;
  k: number;
  overall: FamilySummary;
  /** Per family, in `familiesOf` order (a real dataset's: per category or problem type). */
  byFamily: Record<string, FamilySummary>;
  examples: ExampleResult[];
}

interface Generation {
  text: string;
  length: number;
}

async function generate(engine: Engine, examples: readonly Example[], n: number, temperature: number, maxTokens: number, seed: number): Promise<Generation[][]> {
  const out = await engine.generate({ prompts: promptsOf(examples), n, temperature, topP: 1, maxTokens, seed });
  const byPrompt: Generation[][] = examples.map(() => []);
  for (const s of out.sequences) byPrompt[s.promptIndex]!.push({ text: s.text, length: s.tokens.length });
  return byPrompt;
}

function summarize(results: readonly ExampleResult[], k: number): FamilySummary {
  const n = results.length;
  const mean = (f: (r: ExampleResult) => number) => (n === 0 ? 0 : results.reduce((a, r) => a + f(r), 0) / n);
  return {
    examples: n,
    accuracy: mean((r) => (r.reward >= 1 ? 1 : 0)),
    meanReward: mean((r) => r.reward),
    formatRate: mean((r) => (r.formatOk ? 1 : 0)),
    meanLength: mean((r) => r.length),
    passAtK: k > 0 ? mean((r) => (r.sampledCorrect > 0 ? 1 : 0)) : undefined,
  };
}

export async function evaluate(
  engine: Engine,
  examples: readonly Example[],
  split: string,
  settings: EvalSettings,
  onProgress?: (done: number, total: number) => void,
): Promise<EvalReport> {
  const results: ExampleResult[] = [];
  for (let start = 0; start < examples.length; start += settings.promptsPerBatch) {
    const chunk = examples.slice(start, start + settings.promptsPerBatch);
    const greedy = await generate(engine, chunk, 1, 0, settings.maxTokens, settings.seed + start);
    const sampled = settings.k > 0 ? await generate(engine, chunk, settings.k, settings.temperature, settings.maxTokens, settings.seed + start + 1) : undefined;
    chunk.forEach((e, i) => {
      const g = greedy[i]![0]!;
      const graded = grade(e.answerType, g.text, e.answer);
      const sampledCorrect = sampled ? sampled[i]!.filter((s) => grade(e.answerType, s.text, e.answer).reward >= 1).length : 0;
      results.push({ id: e.id, family: e.family, response: g.text, reward: graded.reward, formatOk: graded.formatOk, length: g.length, sampledCorrect });
    });
    onProgress?.(Math.min(examples.length, start + chunk.length), examples.length);
  }
  const byFamily = Object.fromEntries(familiesOf(examples).map((f) => [f, summarize(results.filter((r) => r.family === f), settings.k)]));
  return { split, k: settings.k, overall: summarize(results, settings.k), byFamily, examples: results };
}
