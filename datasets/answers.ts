/**
 * From a dataset's problem type and ground truth to the grader's answer type and notation (tasks/grading.ts).
 *
 * Problem types, as the sources write them (matched ignoring case, and "-", "_" and spaces as the same):
 *
 *   problem type                         answer type   source
 *   multiple choice, multiple_choice,    choice        SophiaVL-R1 `TYPE_TEMPLATE` / Video-R1 (`multiple choice`),
 *     choice, mcq                                      SophiaVL-R1 README (`multiple_choice`)
 *   numerical, numeric, number, math     numeric       SophiaVL-R1 / Video-R1 (`numerical`); EasyR1's math reward
 *   regression                           numeric       Video-R1 (graded there by relative error; Sophia's numeric
 *                                                      rule is exact: the nearest rule it has)
 *   OCR                                  ocr           SophiaVL-R1 / Video-R1 (`OCR`: word error rate)
 *   free-form, free form, text, caption  text          SophiaVL-R1 (`free-form`, `text`: ROUGE), its reward `caption`
 *
 * Anything else is an `unknown-problem-type` bad row: guessing a rule would train on a reward that means nothing.
 *
 * Ground truth: the text inside the first `<answer>…</answer>` when present (SophiaVL-R1's `solution`), else the
 * whole value; `$` signs removed as SophiaVL-R1's reward does; trimmed. A choice answer becomes its option letters
 * ("B", "A,C"): from "B", "(B)", "B.", "B. text", "A, C", or an option's exact text.
 */
import type { AnswerType } from '../tasks/grading';

const PROBLEM_TYPES: Record<string, AnswerType> = {
  'multiple choice': 'choice',
  choice: 'choice',
  mcq: 'choice',
  numerical: 'numeric',
  numeric: 'numeric',
  number: 'numeric',
  math: 'numeric',
  regression: 'numeric',
  ocr: 'ocr',
  'free form': 'text',
  text: 'text',
  caption: 'text',
};

/** The problem types accepted, as written in the table (for messages and docs). */
export const KNOWN_PROBLEM_TYPES = Object.keys(PROBLEM_TYPES);

/** The answer type of a problem type, or undefined when it has no rule. */
export function answerTypeOf(problemType: string): AnswerType | undefined {
  const key = problemType.trim().toLowerCase().replace(/[-_\s]+/g, ' ');
  return Object.hasOwn(PROBLEM_TYPES, key) ? PROBLEM_TYPES[key] : undefined;
}

/** The text inside the first `<answer>…</answer>` (else the whole text), without `$` signs, trimmed. */
export function groundTruthText(value: string): string {
  const match = /<answer>([\s\S]*?)<\/answer>/.exec(value);
  return (match ? match[1]! : value).replace(/\$/g, '').trim();
}

const LETTER_LABEL = /^\(?([A-Z])\)?(?:[.:)]\s*|\s+|$)/;

/** Option lines labelled "A. …", "B. …" (labels added to options that have none). */
export function labelOptions(options: readonly string[]): string[] {
  return options.map((option, i) => {
    const text = option.trim();
    const letter = String.fromCharCode(65 + i);
    return LETTER_LABEL.test(text) && LETTER_LABEL.exec(text)![1] === letter ? text : `${letter}. ${text}`;
  });
}

/** An option's text without its "A." label. */
function optionBody(option: string): string {
  return option.replace(LETTER_LABEL, '').trim();
}

/**
 * The option letters a choice answer names, comma-separated in the order given, or an error message.
 *
 * @param options the row's options (labelled or not); letters past them are refused
 */
export function choiceLetters(answer: string, options: readonly string[] | undefined): { letters: string } | { error: string } {
  const text = answer.trim();
  const parts = text.split(/\s*,\s*/);
  let letters: string[] | undefined;
  if (parts.every((p) => /^\(?[A-Za-z]\)?\.?$/.test(p))) letters = parts.map((p) => p.replace(/[().]/g, '').toUpperCase());
  else if (/^\(?[A-Z]\)?[.:)]\s+\S/.test(text)) letters = [text.replace(/^\(/, '')[0]!]; // "B. 42"
  else if (options) {
    const i = options.findIndex((o) => optionBody(o).toLowerCase() === text.toLowerCase());
    if (i >= 0) letters = [String.fromCharCode(65 + i)];
  }
  if (!letters) return { error: `${JSON.stringify(answer)} is not option letters` };
  if (new Set(letters).size !== letters.length) return { error: `${JSON.stringify(answer)} repeats a letter` };
  if (options && options.length > 0) {
    const last = String.fromCharCode(64 + options.length);
    const past = letters.find((l) => l > last);
    if (past) return { error: `${JSON.stringify(answer)} names ${past} but the row has options A–${last}` };
  }
  return { letters: letters.join(',') };
}
