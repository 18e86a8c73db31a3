/**
 * MMStar (`Lin-Chen/MMStar`, 1,500 multiple-choice questions): the official rule of
 * github.com/MMStar-Benchmark/MMStar `eval/vlmeval/evaluate/mmstar.py` (`MMStar_eval`), with its report per
 * `category` (6 core capabilities, 250 questions each) and `l2_category` (18 axes).
 *
 * The prediction (the last `<answer>…</answer>`, else the whole response) is lowercased, trimmed and its line
 * breaks made spaces; it is correct when the answer letter is its first character, or the character after a
 * leading `(`, `option ` or `the answer is `. So `B`, `B. 12 apples`, `(B)`, `Option B`, `The answer is B` all
 * choose B; an option's text alone does not, and the official rule's quirk is kept: a prediction that starts
 * with a word beginning with the answer's letter (`a dog` for A, `both` for B) counts as that letter. With the
 * answer in its own `<answer>` tags that rarely matters; a response without tags whose first word starts with
 * the letter is where it does.
 *
 * No deviation from the official rule. (VLMEvalKit, which later adopted MMStar, scores it with its generic
 * multiple-choice matcher and a GPT fallback instead.)
 */
import { extractPrediction } from './extract';
import { readOptionalString, readString, RowFieldError } from './fields';
import { binaryScore, type BenchmarkScore, type Categories, defineBenchmark } from './types';

/** The fields of an MMStar row that scoring and the category report use. */
export interface MmstarRow {
  /** `answer`: the correct option's letter, lowercased here. */
  answer: string;
  /** `category`, e.g. "coarse perception". */
  category: string | undefined;
  /** `l2_category`, e.g. "image scene and topic". */
  l2Category: string | undefined;
}

/** Reads an MMStar row; throws `RowFieldError` naming the first bad field. */
export function validateMmstarRow(record: Readonly<Record<string, unknown>>): MmstarRow {
  const answer = readString(record, 'answer', 'an option letter (A, B, C or D)').trim().toLowerCase();
  if (!/^[a-z]$/.test(answer)) throw new RowFieldError('answer', 'an option letter (A, B, C or D)', record.answer);
  return { answer, category: readOptionalString(record, 'category'), l2Category: readOptionalString(record, 'l2_category') };
}

// Where the official rule reads the letter: after one of these prefixes, else the first character.
const PREFIXES = ['(', 'option ', 'the answer is '];

/** Scores one response against an MMStar row (see the module comment for the rule). */
export function scoreMmstar(row: MmstarRow, response: string): BenchmarkScore {
  const p = extractPrediction(response).toLowerCase().trim().replaceAll('\n', ' ');
  const correct = p[0] === row.answer || PREFIXES.some((prefix) => p.startsWith(prefix) && p[prefix.length] === row.answer);
  // What was read, for inspection: the character after a prefix when there is one, else the first character.
  const prefix = PREFIXES.find((x) => p.startsWith(x));
  const read = p[prefix === undefined ? 0 : prefix.length];
  return binaryScore(correct, read !== undefined && /[a-z]/.test(read) ? read.toUpperCase() : null);
}

/** The row's core capability and axis, MMStar's two breakdowns. */
export function mmstarCategories(row: MmstarRow): Categories {
  return {
    ...(row.category === undefined ? {} : { category: [row.category] }),
    ...(row.l2Category === undefined ? {} : { l2_category: [row.l2Category] }),
  };
}

export const MMSTAR = defineBenchmark({
  title: 'MMStar',
  categoryKeys: ['category', 'l2_category'],
  fields: { scoring: 'answer (the option letter)', categories: 'category, l2_category' },
  rule: "the answer letter is the first character, or follows a leading '(', 'option ' or 'the answer is ' (case ignored)",
  exampleLine: JSON.stringify({
    question: 'Which option describes the object relationship in the image correctly?\nOptions: A: The suitcase is on the book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is beneath the book.',
    answer: 'A',
    category: 'coarse perception',
    l2_category: 'image scene and topic',
    response: '<think>…</think><answer>A</answer>',
  }),
  validate: validateMmstarRow,
  score: scoreMmstar,
  categories: mmstarCategories,
});
