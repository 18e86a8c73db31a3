/**
 * MathVista (testmini, `AI4Math/MathVista`): scoring as in the official `evaluation/calculate_score.py`
 * (`normalize_extracted_answer`, `safe_equal`) of github.com/lupantech/MathVista, with its per-category report by
 * `metadata.task` and `metadata.skills` (a row counts towards each of its skills).
 *
 * The official pipeline first asks GPT to extract a short answer from the response (`extract_answer.py`, which
 * keeps the response as it is when it already is an option's text or a plain number). Here that step is rule
 * based (the default; an optional LLM extraction step belongs to the evaluation stage): the prediction is the
 * last `<answer>…</answer>` (else the whole response), cleaned by `cleanAnswer` (`\boxed{}`, "The answer is", a
 * final full stop). Then the official normalisation, by the row's `question_type` and `answer_type`:
 *  - multi_choice (the answer is the option's TEXT, e.g. "145°"): the prediction as an option's exact text; else
 *    its letter (`(C)` anywhere, or `C`, `C.`, `C)`, `C: 145°`, `Option C`) mapped to that option; else, as the
 *    official script does, the option nearest by edit distance, so every non-empty prediction picks an option;
 *  - integer: the number, truncated as Python's `int(float(x))` does (3.7 → 3), equal to the answer;
 *  - float: the number rounded to the row's `precision` decimals with Python's `round` (half to even on the exact
 *    value), equal to the answer;
 *  - list: the same numbers (or strings) in the same order, e.g. `[2014, 2016]`.
 * Numbers are read by the outcome reward's parser (`parseNumber`): `$1.45`, `12 cm`, `\frac{1}{2}`, `1,000`.
 *
 * Deviations from the official script, all where it compares strings the GPT extractor is prompted to format:
 * values are compared as numbers (an answer written "1.50" matches 1.5; the official `str(round(…)) == answer`
 * would not), list items are compared one by one (spacing and brackets do not matter), and an empty prediction
 * is incorrect (the official `--ignore_empty_extractions`; without it the empty string is mapped to the nearest
 * option). A free_form row with answer_type text (none in testmini; the official script fails on it) is compared
 * as trimmed text, ignoring case.
 */
import { parseNumber, type Rational, rationalsEqual } from '../tasks/grading';
import { cleanAnswer, extractPrediction } from './extract';
import { readEnum, readOptionalObject, readOptionalString, readString, readStringList, RowFieldError } from './fields';
import { levenshtein, parsePythonFloat, pythonRound } from './python-compat';
import { binaryScore, type BenchmarkScore, type Categories, defineBenchmark } from './types';

const QUESTION_TYPES = ['multi_choice', 'free_form'] as const;
const ANSWER_TYPES = ['text', 'integer', 'float', 'list'] as const;

/** The fields of a MathVista testmini row that scoring and the category report use. */
export interface MathVistaRow {
  /** `question_type`. */
  questionType: (typeof QUESTION_TYPES)[number];
  /** `answer_type`: how a free_form answer is normalised. */
  answerType: (typeof ANSWER_TYPES)[number];
  /** `precision`: decimals a float answer is rounded to; null unless answerType is float. */
  precision: number | null;
  /** `choices`: the options' texts (multi_choice), else null. */
  choices: string[] | null;
  /** `answer`: an option's text for multi_choice, else the value as text ("3", "1.45", "[2014, 2016]"). */
  answer: string;
  /** `unit` (e.g. "cm"): not used for scoring (the answer holds the value only), kept for reports. */
  unit: string | undefined;
  /** `metadata.task`, e.g. "geometry problem solving". */
  task: string | undefined;
  /** `metadata.skills`, e.g. ["algebraic reasoning"]. */
  skills: string[] | undefined;
}

/** Reads a MathVista testmini row; throws `RowFieldError` naming the first bad field. */
export function validateMathVistaRow(record: Readonly<Record<string, unknown>>): MathVistaRow {
  const questionType = readEnum(record, 'question_type', QUESTION_TYPES);
  const answerType = readEnum(record, 'answer_type', ANSWER_TYPES);
  const answer = readString(record, 'answer');
  const choices = questionType === 'multi_choice' ? readStringList(record, 'choices', { allowEmpty: false }) : null;
  if (choices !== null && !choices.includes(answer)) {
    throw new RowFieldError('answer', "one of the row's choices (MathVista publishes the option's text, not its letter)", answer);
  }
  const precision = record.precision ?? null;
  const validPrecision = typeof precision === 'number' && Number.isInteger(precision) && precision >= 0;
  if (answerType === 'float' ? !validPrecision : precision !== null && !validPrecision) {
    const expected = answerType === 'float' ? 'a whole number of decimals (e.g. 1 or 2.0) for a float answer' : 'null or a whole number of decimals';
    throw new RowFieldError('precision', expected, record.precision);
  }
  const metadata = readOptionalObject(record, 'metadata');
  return {
    questionType,
    answerType,
    precision: validPrecision ? precision : null,
    choices,
    answer,
    unit: readOptionalString(record, 'unit'),
    task: metadata && readOptionalString(metadata, 'task', 'metadata'),
    skills: metadata?.skills == null ? undefined : readStringList(metadata, 'skills', { allowEmpty: true, parent: 'metadata' }),
  };
}

// The label forms a GPT extractor would reduce to the letter: `C`, `C.`, `C)`, `C:` (each possibly followed by the
// option's text), optionally after "Option" or "Choice". Uppercase only, so that "a" or "I" in a sentence is no label.
const LABEL = /^(?:[Oo]ption\s+|[Cc]hoice\s+)?([A-Z])(?:[.):]|$)/;

/**
 * The option a multiple-choice prediction selects (the official normalisation, see the module comment), or null
 * for an empty prediction.
 */
export function mapToChoice(prediction: string, choices: readonly string[]): string | null {
  if (prediction === '') return null;
  if (choices.includes(prediction)) return prediction;
  // The official script reads "(c)" anywhere as C, then a lone letter as its option.
  const label = /\(([a-zA-Z])\)/.exec(prediction) ?? LABEL.exec(prediction);
  const letter = label ? label[1]!.toUpperCase() : prediction;
  const index = letter.length === 1 ? letter.charCodeAt(0) - 'A'.charCodeAt(0) : -1;
  if (index >= 0 && index < choices.length) return choices[index]!;
  // Otherwise the nearest option by edit distance (the first of equals), as the official `get_most_similar`.
  let nearest = choices[0]!;
  let best = Infinity;
  for (const choice of choices) {
    const distance = levenshtein(letter, choice);
    if (distance < best) [nearest, best] = [choice, distance];
  }
  return nearest;
}

/** A rational as the nearest double. */
const toDouble = (r: Rational) => Number(r.num) / Number(r.den);

/** Python's `str()` of a float for display: `1.0`, not `1`. */
const pythonFloatText = (x: number) => (Number.isInteger(x) && Math.abs(x) < 1e16 ? x.toFixed(1) : String(x));

/** The items of a list answer, without brackets: `[1, 2]` and `1, 2` both give ["1", "2"]. */
function listItems(text: string): string[] {
  const inner = text.trim().replace(/^\[(.*)\]$/s, '$1').trim();
  return inner === '' ? [] : inner.split(',').map((item) => item.trim());
}

/** Two list items are equal as numbers when both are numbers, else as text. */
function sameItem(a: string, b: string): boolean {
  const x = parseNumber(a);
  const y = parseNumber(b);
  return x !== null && y !== null ? rationalsEqual(x, y) : a === b;
}

/** Scores one response against a MathVista row (see the module comment for the rules). */
export function scoreMathVista(row: MathVistaRow, response: string): BenchmarkScore {
  const prediction = cleanAnswer(extractPrediction(response));
  if (row.choices !== null) {
    const choice = mapToChoice(prediction, row.choices);
    return binaryScore(choice === row.answer, choice);
  }
  switch (row.answerType) {
    case 'integer': {
      const value = parseNumber(prediction);
      if (value === null) return binaryScore(false, null);
      const truncated = value.num / value.den; // bigint division truncates toward zero, as int() does
      const answer = parseNumber(row.answer);
      return binaryScore(answer !== null && rationalsEqual({ num: truncated, den: 1n }, answer), truncated.toString());
    }
    case 'float': {
      const value = parseNumber(prediction);
      if (value === null) return binaryScore(false, null);
      const rounded = pythonRound(toDouble(value), row.precision ?? 0);
      return binaryScore(rounded === parsePythonFloat(row.answer), pythonFloatText(rounded));
    }
    case 'list': {
      const got = listItems(prediction);
      const want = listItems(row.answer);
      if (got.length === 0) return binaryScore(false, null);
      const correct = got.length === want.length && got.every((item, i) => sameItem(item, want[i]!));
      return binaryScore(correct, `[${got.join(', ')}]`);
    }
    case 'text':
      return binaryScore(prediction !== '' && prediction.toLowerCase() === row.answer.trim().toLowerCase(), prediction === '' ? null : prediction);
  }
}

/** The row's `task` and `skills`, the two breakdowns MathVista's leaderboard reports. */
export function mathVistaCategories(row: MathVistaRow): Categories {
  return {
    ...(row.task === undefined ? {} : { task: [row.task] }),
    ...(row.skills === undefined ? {} : { skills: row.skills }),
  };
}

export const MATHVISTA = defineBenchmark({
  title: 'MathVista testmini',
  categoryKeys: ['task', 'skills'],
  fields: {
    scoring: 'question_type (multi_choice|free_form), answer_type (text|integer|float|list), answer, choices (multi_choice), precision (float)',
    categories: 'metadata.task, metadata.skills',
  },
  rule: 'multi_choice: letter or option text → option (else nearest option by edit distance), equal to answer; integer: int() of the number; float: rounded to precision; list: same items',
  exampleLine: JSON.stringify({
    question_type: 'multi_choice',
    answer_type: 'text',
    precision: null,
    choices: ['135°', '140°', '145°', '150°'],
    answer: '145°',
    unit: null,
    metadata: { task: 'geometry problem solving', skills: ['geometry reasoning', 'algebraic reasoning'] },
    response: '<think>…</think><answer>C</answer>',
  }),
  validate: validateMathVistaRow,
  score: scoreMathVista,
  categories: mathVistaCategories,
});
