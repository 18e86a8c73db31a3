/**
 * MMMU (validation, `MMMU/MMMU`): the official rule-based parsing and evaluation of
 * github.com/MMMU-Benchmark/MMMU `mmmu/utils/eval_utils.py` (`parse_multi_choice_response`,
 * `parse_open_response`, `eval_multi_choice`, `eval_open`), applied to the prediction (the last
 * `<answer>…</answer>`, else the whole response), with the per-category report of `mmmu/utils/data_utils.py`:
 * `subject` (from the row's `id`, `validation_Art_Theory_12` → Art_Theory) and its `discipline` (Art and Design …).
 *
 * Multiple choice (`answer` is a letter; `options` the published stringified list): strip `,.!?;:'` from both
 * ends (one character kind after another, as the official loop does), pad with spaces, then the candidates are
 * the letters written `(B)`; else the letters standing alone (` B `); else, when the prediction has more than 5
 * words, the options whose text occurs in it (ignoring case). Of several candidates the one written last wins.
 * Correct when it is the answer's letter.
 * Open (`answer` a string, or a stringified list of accepted answers): the prediction's "key" parts (per line, the
 * shortest tail after "could be", "so", "is", "thus", "therefore", "final", "answer", "result", and on the last
 * line also "="; the whole prediction when there is none) plus every number in them; numbers normalised to
 * Python's `round(float, 2)`, texts lowercased. Correct when a candidate number equals an answer's number, or an
 * answer's text occurs inside a candidate text (a one-character answer must sit beside a space).
 *
 * Deviation: when no letter or option can be parsed the official code picks a random letter (seeded); here that
 * prediction is incorrect (`extracted` null), so a score is deterministic and never credits a guess the model
 * did not make. Numbers are read with Python's `float` syntax except for `_` separators.
 */
import { extractPrediction } from './extract';
import { readEnum, readOptionalString, readString, RowFieldError } from './fields';
import { parsePythonFloat, parsePythonStringList, pythonRound } from './python-compat';
import { binaryScore, type BenchmarkScore, type Categories, defineBenchmark } from './types';

/** MMMU's six disciplines and their 30 subjects (`DOMAIN_CAT2SUB_CAT` of the official `data_utils.py`). */
export const MMMU_DISCIPLINES: Readonly<Record<string, readonly string[]>> = {
  'Art and Design': ['Art', 'Art_Theory', 'Design', 'Music'],
  Business: ['Accounting', 'Economics', 'Finance', 'Manage', 'Marketing'],
  Science: ['Biology', 'Chemistry', 'Geography', 'Math', 'Physics'],
  'Health and Medicine': ['Basic_Medical_Science', 'Clinical_Medicine', 'Diagnostics_and_Laboratory_Medicine', 'Pharmacy', 'Public_Health'],
  'Humanities and Social Science': ['History', 'Literature', 'Sociology', 'Psychology'],
  'Tech and Engineering': ['Agriculture', 'Architecture_and_Engineering', 'Computer_Science', 'Electronics', 'Energy_and_Power', 'Materials', 'Mechanical_Engineering'],
};

const DISCIPLINE_OF = new Map(Object.entries(MMMU_DISCIPLINES).flatMap(([discipline, subjects]) => subjects.map((s) => [s, discipline] as const)));

const QUESTION_TYPES = ['multiple-choice', 'open'] as const;

/** The fields of an MMMU validation row that scoring and the category report use. */
export type MmmuRow = (
  | {
      questionType: 'multiple-choice';
      /** `options`, parsed: the option texts, lettered A, B, C… in order. */
      options: string[];
      /** `answer`: the correct option's letter. */
      answer: string;
    }
  | {
      questionType: 'open';
      /** `answer`: the accepted answers (one, or several when published as a stringified list). */
      answers: string[];
    }
) & {
  /** The subject and its discipline, from `id` (absent without one). */
  category: { subject: string; discipline: string } | undefined;
};

/** Reads a value that MMMU publishes as a stringified Python list (a JSON array is accepted too). */
function readListField(record: Readonly<Record<string, unknown>>, field: string, expected: string): string[] | null {
  const value = record[field];
  if (Array.isArray(value) && value.every((v): v is string => typeof v === 'string')) return value;
  if (typeof value !== 'string') throw new RowFieldError(field, expected, value);
  return parsePythonStringList(value);
}

/** The subject named by an MMMU id (`validation_Art_Theory_12` → Art_Theory) and its discipline. */
function categoryOf(id: string): { subject: string; discipline: string } {
  const subject = /^(?:dev|validation|test)_(.+)_\d+$/.exec(id)?.[1];
  const discipline = subject === undefined ? undefined : DISCIPLINE_OF.get(subject);
  if (subject === undefined || discipline === undefined) {
    throw new RowFieldError('id', 'an MMMU id such as "validation_Art_Theory_12" (split_Subject_number, one of the 30 subjects)', id);
  }
  return { subject, discipline };
}

/** Reads an MMMU validation row; throws `RowFieldError` naming the first bad field. */
export function validateMmmuRow(record: Readonly<Record<string, unknown>>): MmmuRow {
  const questionType = readEnum(record, 'question_type', QUESTION_TYPES);
  const id = readOptionalString(record, 'id');
  const category = id === undefined ? undefined : categoryOf(id);
  if (questionType === 'open') {
    const text = readString(record, 'answer');
    const list = text.trim().startsWith('[') ? parsePythonStringList(text) : null;
    return { questionType, answers: list ?? [text], category };
  }
  const optionsHelp = `a list of the option texts, as published: a string like "['4', '6', '8']"`;
  const options = readListField(record, 'options', optionsHelp);
  if (options === null || options.length === 0) throw new RowFieldError('options', optionsHelp, record.options);
  const letters = options.map((_, i) => String.fromCharCode(65 + i));
  const answer = readString(record, 'answer').trim();
  if (!letters.includes(answer)) {
    throw new RowFieldError('answer', `the correct option's letter, one of ${letters.join(', ')}`, record.answer);
  }
  return { questionType, options, answer, category };
}

/** Python's `s.strip(c)` for one character. */
function stripChar(s: string, c: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && s[start] === c) start++;
  while (end > start && s[end - 1] === c) end--;
  return s.slice(start, end);
}

/** The first index of the largest value (numpy's argmax). */
const argmax = (values: readonly number[]) => values.indexOf(Math.max(...values));

/** The option letter an MMMU multiple-choice prediction selects (official rule), or null where it guesses. */
export function parseMultiChoice(prediction: string, options: readonly string[]): string | null {
  let s = prediction;
  for (const c of [',', '.', '!', '?', ';', ':', "'"]) s = stripChar(s, c);
  s = ` ${s} `;
  const letters = options.map((_, i) => String.fromCharCode(65 + i));

  let candidates = letters.filter((l) => s.includes(`(${l})`));
  let position = (l: string) => s.lastIndexOf(`(${l})`);
  if (candidates.length === 0) {
    candidates = letters.filter((l) => s.includes(` ${l} `));
    position = (l) => s.lastIndexOf(` ${l} `);
  }
  if (candidates.length === 0 && s.split(/\s+/).filter((w) => w !== '').length > 5) {
    const lower = s.toLowerCase();
    candidates = letters.filter((_, i) => lower.includes(options[i]!.toLowerCase()));
    position = (l) => lower.lastIndexOf(options[l.charCodeAt(0) - 65]!.toLowerCase());
  }
  if (candidates.length === 0) return null; // the official code picks a random letter here
  return candidates[argmax(candidates.map(position))]!;
}

/** A candidate or an answer after `normalize_str`: a number rounded to 2 decimals, or lowercased text. */
type Normalized = number | string;

/** The official `normalize_str`: a number (commas dropped) rounded to 2 decimals, else the lowercased text. */
export function normalizeOpen(text: string): Normalized[] {
  const s = text.trim();
  const value = parsePythonFloat(s.replaceAll(',', ''));
  if (value !== null) return [pythonRound(value, 2)];
  const lower = s.toLowerCase();
  // A one-character answer only matches beside a space, so "a" does not match every word with an a.
  return Array.from(lower).length === 1 ? [` ${lower}`, `${lower} `] : [lower];
}

// The official `extract_numbers`: comma-grouped numbers, scientific notation, then plain numbers.
const NUMBER_PATTERNS = [/-?\b\d{1,3}(?:,\d{3})+\b/g, /-?\d+(?:\.\d+)?[eE][+-]?\d+/g, /-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])/g];

/** Every number written in `text`, as the official `extract_numbers` finds them (in its order). */
export function extractNumbers(text: string): string[] {
  return NUMBER_PATTERNS.flatMap((pattern) => [...text.matchAll(pattern)].map((m) => m[0]));
}

const KEY_INDICATORS = ['could be ', 'so ', 'is ', 'thus ', 'therefore ', 'final ', 'answer ', 'result '];
const TRIVIAL = new Set([':', ',', '.', '!', '?', ';', "'"]);

/** The official `get_key_subresponses`: per line, the shortest tail after an indicator word. */
function keyParts(prediction: string): string[] {
  const text = stripChar(prediction.trim(), '.').toLowerCase();
  // The official split also breaks at ". " before a capital, which never occurs after lowercasing: lines remain.
  const lines = text.split('\n');
  const keys: string[] = [];
  for (const [i, line] of lines.entries()) {
    const indicators = i === lines.length - 1 ? [...KEY_INDICATORS, '='] : KEY_INDICATORS;
    let shortest: string | null = null;
    for (const indicator of indicators) {
      if (!line.includes(indicator)) continue;
      const tail = line.split(indicator).at(-1)!.trim();
      if (!shortest || tail.length < shortest.length) shortest = tail;
    }
    if (shortest && !TRIVIAL.has(shortest.trim())) keys.push(shortest);
  }
  return keys.length === 0 ? [text] : keys;
}

/** The official `parse_open_response`: the normalised candidates, without duplicates. */
export function parseOpenResponse(prediction: string): Normalized[] {
  const keys = keyParts(prediction);
  const raw = [...keys, ...keys.flatMap(extractNumbers)];
  return [...new Set(raw.flatMap(normalizeOpen))];
}

/** The official `eval_open`: a number equal to an answer's, or an answer's text inside a candidate text. */
export function evalOpen(answers: readonly string[], candidates: readonly Normalized[]): boolean {
  const normalized = answers.flatMap(normalizeOpen);
  return candidates.some((c) =>
    typeof c === 'string' ? normalized.some((a) => typeof a === 'string' && c.includes(a)) : normalized.some((a) => a === c),
  );
}

/** Scores one response against an MMMU row (see the module comment for the rules). */
export function scoreMmmu(row: MmmuRow, response: string): BenchmarkScore {
  const prediction = extractPrediction(response);
  if (row.questionType === 'multiple-choice') {
    const letter = parseMultiChoice(prediction, row.options);
    return binaryScore(letter === row.answer, letter);
  }
  if (prediction === '') return binaryScore(false, null);
  const candidates = parseOpenResponse(prediction);
  return binaryScore(evalOpen(row.answers, candidates), JSON.stringify(candidates));
}

/** The row's discipline and subject, MMMU's two breakdowns. */
export function mmmuCategories(row: MmmuRow): Categories {
  return row.category === undefined ? {} : { discipline: [row.category.discipline], subject: [row.category.subject] };
}

export const MMMU = defineBenchmark({
  title: 'MMMU validation',
  categoryKeys: ['discipline', 'subject'],
  fields: {
    scoring: 'question_type (multiple-choice|open), answer, options (multiple-choice; the stringified list)',
    categories: 'id (its subject, e.g. validation_Art_Theory_12)',
  },
  rule: "official parsing: (B) / B / option text (>5 words), last written wins, else wrong; open: numbers to 2 decimals or answer text inside a key phrase",
  exampleLine: JSON.stringify({
    id: 'validation_Accounting_1',
    question_type: 'multiple-choice',
    options: "['$6', '$7', '$8', '$9']",
    answer: 'B',
    response: '<think>…</think><answer>B</answer>',
  }),
  validate: validateMmmuRow,
  score: scoreMmmu,
  categories: mmmuCategories,
});
