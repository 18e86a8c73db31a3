/**
 * MathVerse (testmini, `AI4Math/MathVerse`): scoring after github.com/ZrrSkywalker/MathVerse
 * `evaluation/extract_answer_s1.py` + `evaluation/score_answer_s2.py`, with its per-category report by
 * `problem_version` (Text Dominant … Vision Only), `metadata.subject` and `metadata.subfield`.
 *
 * The official pipeline is two GPT steps: extract the answer from the response, then judge whether it is
 * "consistent" with the standard answer (its `--quick_match` option replaces the judge by exact string equality).
 * Here both steps are rule based (the default; an optional LLM step belongs to the evaluation stage):
 *  - extraction: the last `<answer>…</answer>` (else the whole response), cleaned by `cleanAnswer`
 *    (`\boxed{}`, "The answer is", a final full stop);
 *  - multi-choice (the answer is a letter): the prediction's letter (`B`, `(B)`, `B.`, `B:2√{3}`, `Option B`),
 *    or, when it is an option's text, that option's letter, with the options read from the `Choices:` block of
 *    `question` (`A:2`, `B:2√{3}` … one per line). Correct when the letter is the answer's; as in the judge's own
 *    examples, `B:2√{3}` against `C` is wrong and the correct option's text is right;
 *  - free-form: correct when the prediction equals the answer once spacing, case and math delimiters (`$`, `\(`,
 *    `\)`, `\left`, `\right`) are ignored, or when both read as the same number (`parseNumber` of the outcome
 *    reward: `14 cm` = `14`, `\frac{1}{2}` = `0.5`).
 * Deviation: the GPT judge also accepts answers equal in meaning but not in form (`0.5m` and `50cm`, equivalent
 * expressions or intervals written differently); rule-based scoring counts those as wrong, so it is a lower
 * bound of the judged score. Unreadable multiple-choice predictions are wrong, as the judge rules for "null".
 */
import { parseNumber, rationalsEqual } from '../tasks/grading';
import { cleanAnswer, extractPrediction } from './extract';
import { readEnum, readOptionalObject, readOptionalString, readString, RowFieldError } from './fields';
import { binaryScore, type BenchmarkScore, type Categories, defineBenchmark } from './types';

const QUESTION_TYPES = ['multi-choice', 'free-form'] as const;

/** The fields of a MathVerse testmini row that scoring and the category report use. */
export interface MathVerseRow {
  /** `question_type`. */
  questionType: (typeof QUESTION_TYPES)[number];
  /** `answer`: an option letter (multi-choice, uppercased here) or the answer's text ("14", "(-2,1]"). */
  answer: string;
  /** Options parsed from `question`'s `Choices:` block, letter → text; empty when it has none. */
  choices: ReadonlyMap<string, string>;
  /** `problem_version`, e.g. "Vision Dominant". */
  problemVersion: string | undefined;
  /** `metadata.subject`, e.g. "Plane Geometry". */
  subject: string | undefined;
  /** `metadata.subfield`, e.g. "Length". */
  subfield: string | undefined;
}

/** Option lines after `Choices:`: `A:2`, `B. 3`, `(C) 4`. */
const CHOICE_LINE = /^\s*\(?([A-Z])\)?\s*[:.：)]\s*(.*?)\s*$/gm;

/** The options of a MathVerse question (letter → text), read from its last `Choices:` block. */
export function parseChoices(question: string): Map<string, string> {
  const at = question.toLowerCase().lastIndexOf('choices:');
  const choices = new Map<string, string>();
  if (at < 0) return choices;
  for (const m of question.slice(at + 'choices:'.length).matchAll(CHOICE_LINE)) choices.set(m[1]!, m[2]!);
  return choices;
}

/** Reads a MathVerse testmini row; throws `RowFieldError` naming the first bad field. */
export function validateMathVerseRow(record: Readonly<Record<string, unknown>>): MathVerseRow {
  const questionType = readEnum(record, 'question_type', QUESTION_TYPES);
  let answer = readString(record, 'answer');
  if (questionType === 'multi-choice') {
    answer = answer.trim().toUpperCase();
    if (!/^[A-Z]$/.test(answer)) throw new RowFieldError('answer', 'an option letter (A, B, C…) for a multi-choice row', record.answer);
  } else if (answer.trim() === '') {
    throw new RowFieldError('answer', 'a non-empty answer', record.answer);
  }
  const question = readOptionalString(record, 'question');
  const metadata = readOptionalObject(record, 'metadata');
  return {
    questionType,
    answer,
    choices: question === undefined ? new Map() : parseChoices(question),
    problemVersion: readOptionalString(record, 'problem_version'),
    subject: metadata && readOptionalString(metadata, 'subject', 'metadata'),
    subfield: metadata && readOptionalString(metadata, 'subfield', 'metadata'),
  };
}

// A leading letter label: `B`, `(B)`, `B.`, `B)`, `B:` (then possibly the option's text), after "Option"/"Choice".
const LETTER = /^(?:[Oo]ption\s+|[Cc]hoice\s+)?(?:\(([A-Z])\)|([A-Z])(?=[.:：)]|$))/;

/** Spacing, case, math delimiters and a final full stop do not count when comparing texts. */
export function normalizeMathText(text: string): string {
  return text
    .replace(/\\left|\\right|\\[()[\]]|\$/g, '')
    .replace(/\s+/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
}

/** The option letter a multiple-choice prediction selects, or null. */
function readLetter(prediction: string, choices: ReadonlyMap<string, string>): string | null {
  const label = LETTER.exec(prediction);
  if (label) return label[1] ?? label[2]!;
  const text = normalizeMathText(prediction);
  const matches = [...choices].filter(([, option]) => option !== '' && normalizeMathText(option) === text);
  return matches.length === 1 ? matches[0]![0] : null;
}

/** Scores one response against a MathVerse row (see the module comment for the rules). */
export function scoreMathVerse(row: MathVerseRow, response: string): BenchmarkScore {
  const prediction = cleanAnswer(extractPrediction(response));
  if (prediction === '') return binaryScore(false, null);
  if (row.questionType === 'multi-choice') {
    const letter = readLetter(prediction, row.choices);
    return binaryScore(letter === row.answer, letter);
  }
  if (normalizeMathText(prediction) === normalizeMathText(row.answer)) return binaryScore(true, prediction);
  const got = parseNumber(prediction);
  const want = parseNumber(row.answer);
  return binaryScore(got !== null && want !== null && rationalsEqual(got, want), prediction);
}

/** The row's problem version, subject and subfield, MathVerse's three breakdowns. */
export function mathVerseCategories(row: MathVerseRow): Categories {
  const entries = [
    ['problem_version', row.problemVersion],
    ['subject', row.subject],
    ['subfield', row.subfield],
  ] as const;
  return Object.fromEntries(entries.flatMap(([key, value]) => (value === undefined ? [] : [[key, [value]]])));
}

export const MATHVERSE = defineBenchmark({
  title: 'MathVerse testmini',
  categoryKeys: ['problem_version', 'subject', 'subfield'],
  fields: {
    scoring: 'question_type (multi-choice|free-form), answer; question (its Choices: block, to match option text)',
    categories: 'problem_version, metadata.subject, metadata.subfield',
  },
  rule: "multi-choice: the letter, or an option's text → its letter, equal to answer; free-form: same text (spacing, case, $ ignored) or same number",
  exampleLine: JSON.stringify({
    question_type: 'multi-choice',
    answer: 'C',
    question: 'As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2√{3}\nC:√{3}\nD:2√{2}',
    problem_version: 'Text Lite',
    metadata: { subject: 'Plane Geometry', subfield: 'Length' },
    response: '<think>…</think><answer>C</answer>',
  }),
  validate: validateMathVerseRow,
  score: scoreMathVerse,
  categories: mathVerseCategories,
});
