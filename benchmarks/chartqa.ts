/**
 * ChartQA (test, `HuggingFaceM4/ChartQA`): relaxed accuracy, the metric of the ChartQA paper (Masry et al. 2022,
 * §5.1, after Methani et al. 2020) as implemented by pix2struct's `relaxed_correctness` and VLMEvalKit
 * (`vlmeval/dataset/utils/vqa_eval.py`, `process_line(…, 'relaxed_accuracy')`): a numeric answer is correct
 * within 5 % relative of the target, |prediction − target| ≤ 0.05 · |target|; any other answer needs an exact
 * match, ignoring case. A row whose `label` lists several answers takes the best match. The report is per
 * `human_or_machine` (the paper's "human" and "augmented" test sets; the score is usually their mean).
 *
 * The prediction is the last `<answer>…</answer>` (else the whole response), trimmed. A number is the whole
 * prediction in Python's float syntax once commas and a trailing `%` are removed (`1,234` → 1234, `45%` → 45);
 * `45 million` or `$45` is text.
 *
 * Deviations from pix2struct's reference: a `%` is stripped rather than dividing by 100, so `45%` matches a
 * label of 45 (ChartQA's labels for percentages are plain numbers) and no longer matches 0.45; thousands
 * separators are read; the 5 % bound is checked in exact decimal arithmetic, so a prediction exactly 5 % off is
 * correct (in floating point 0.525 against 0.5 is 5.000000000000004 % off); a target of 0 needs the prediction 0
 * by value (`0.0` counts), where the reference compares the strings.
 */
import { type Rational } from '../tasks/grading';
import { extractPrediction } from './extract';
import { RowFieldError } from './fields';
import { binaryScore, type BenchmarkScore, type Categories, defineBenchmark } from './types';

/** The fields of a ChartQA test row that scoring and the category report use. */
export interface ChartQaRow {
  /** `label`: the accepted answers (published as a list of one string; a plain string is accepted too). */
  labels: string[];
  /** `human_or_machine`: which test set the question is from ("human" or "machine", i.e. augmented). */
  source: 'human' | 'machine' | undefined;
}

/** `human_or_machine`: the published class label (0 human, 1 machine) or its name; absent or null is allowed. */
function readSource(value: unknown): ChartQaRow['source'] {
  if (value === undefined || value === null) return undefined;
  // The published parquet column is an int64 class label: a parquet reader hands it over as a bigint.
  if (value === 0 || value === 0n || value === 'human') return 'human';
  if (value === 1 || value === 1n || value === 'machine') return 'machine';
  throw new RowFieldError('human_or_machine', '0 (human), 1 (machine), "human" or "machine"', value);
}

/** Reads a ChartQA test row; throws `RowFieldError` naming the first bad field. */
export function validateChartQaRow(record: Readonly<Record<string, unknown>>): ChartQaRow {
  const label = record.label;
  const labels: unknown = typeof label === 'string' ? [label] : label;
  if (!Array.isArray(labels) || labels.length === 0 || !labels.every((l) => typeof l === 'string' && l.trim() !== '')) {
    throw new RowFieldError('label', 'a non-empty list of answer strings, as published (e.g. ["45"]), or one string', label);
  }
  return { labels: labels as string[], source: readSource(record.human_or_machine) };
}

// Python float syntax without inf/nan: sign, digits with optional point and fraction, optional exponent.
const NUMBER = /^([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;

/** The value of a ChartQA number (commas and a trailing `%` removed) as an exact rational, or null for text. */
export function chartNumber(text: string): Rational | null {
  const m = NUMBER.exec(text.trim().replaceAll(',', '').replace(/%$/, '').trim());
  if (!m) return null;
  const fraction = m[3] ?? m[4] ?? '';
  const exponent = Number(m[5] ?? 0);
  if (Math.abs(exponent) > 400) return null; // beyond any double; not a chart value
  let num = BigInt(`${m[2] ?? ''}${fraction}` || '0') * (m[1] === '-' ? -1n : 1n);
  let den = 10n ** BigInt(fraction.length);
  if (exponent >= 0) num *= 10n ** BigInt(exponent);
  else den *= 10n ** BigInt(-exponent);
  return { num, den };
}

const abs = (x: bigint) => (x < 0n ? -x : x);

/** Relaxed correctness of one prediction against one label. */
export function relaxedMatch(prediction: string, label: string): boolean {
  const p = chartNumber(prediction);
  const t = chartNumber(label);
  if (p !== null && t !== null) {
    // |p − t| ≤ |t| / 20, cross-multiplied: |p.num·t.den − t.num·p.den| · 20 ≤ |t.num| · p.den.
    return abs(p.num * t.den - t.num * p.den) * 20n <= abs(t.num) * p.den;
  }
  return prediction.trim().toLowerCase() === label.trim().toLowerCase();
}

/** Scores one response against a ChartQA row (see the module comment for the rules). */
export function scoreChartQa(row: ChartQaRow, response: string): BenchmarkScore {
  const prediction = extractPrediction(response);
  if (prediction === '') return binaryScore(false, null);
  return binaryScore(
    row.labels.some((label) => relaxedMatch(prediction, label)),
    prediction,
  );
}

/** The row's test set, ChartQA's one breakdown. */
export function chartQaCategories(row: ChartQaRow): Categories {
  return row.source === undefined ? {} : { human_or_machine: [row.source] };
}

export const CHARTQA = defineBenchmark({
  title: 'ChartQA test',
  categoryKeys: ['human_or_machine'],
  fields: { scoring: 'label (list of accepted answers)', categories: 'human_or_machine (0 human, 1 machine)' },
  rule: 'relaxed accuracy: a number within 5 % of the label (commas and % stripped), else the same text ignoring case',
  exampleLine: JSON.stringify({
    query: 'What is the value of the largest bar?',
    label: ['45'],
    human_or_machine: 0,
    response: '<think>…</think><answer>45.8</answer>',
  }),
  validate: validateChartQaRow,
  score: scoreChartQa,
  categories: chartQaCategories,
});
