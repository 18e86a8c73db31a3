/**
 * The prompt template: config text, not code (issue "Training data"). A pure function renders it per row.
 *
 * Placeholders are `{name}` with a lowercase name; any other brace is literal text (so `\boxed{}` stays as it is):
 *   {question}        the question as the dataset wrote it (`<image>` markers removed); required
 *   {options}         the options, one "A. …" line each, after a line break; empty when the row has none
 *   {answer_format}   one sentence on what to put inside the answer tags, per answer type (`ANSWER_FORMATS`)
 * An unknown placeholder is refused too: it is almost always a typo that would reach the model verbatim.
 *
 * The default follows the instruction SophiaVL-R1 trains with (`QUESTION_TEMPLATE` + `TYPE_TEMPLATE` in its
 * verl/utils/dataset.py: think as a person would, in an inner dialogue, verify yourself, reasoning in
 * <think> </think> then the answer in <answer> </answer>, plus a per-type line), reworded and shortened here.
 */
import { ConfigError } from '../common/errors';
import type { AnswerType } from '../tasks/grading';

export const PROMPT_PLACEHOLDERS = ['question', 'options', 'answer_format'] as const;

export const DEFAULT_PROMPT_TEMPLATE =
  '{question}{options}\n' +
  'Think it through the way a careful person would, as an inner dialogue ("let me think", "wait", "hmm", ' +
  '"oh, I see", "let\'s break it down"), checking and correcting yourself along the way. ' +
  'Write that reasoning between <think> and </think>, then give the final answer between <answer> and </answer>. ' +
  '{answer_format}';

export const ANSWER_FORMATS: Record<AnswerType, string> = {
  choice: 'Inside the answer tags write only the letter of the correct option (e.g. B), or the letters separated by commas (e.g. A,C) when several are correct.',
  numeric: 'Inside the answer tags write only the number (e.g. 42 or 3.14).',
  ocr: 'Inside the answer tags write the text from the image exactly as it appears.',
  text: 'Inside the answer tags write a short text answer.',
};

const PLACEHOLDER = /\{([a-z_]+)\}/g;

/** Checks a template once, at config time; throws a `ConfigError` naming `field`. */
export function validateTemplate(template: string, field: string): void {
  const names = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
  const unknown = names.filter((n) => !(PROMPT_PLACEHOLDERS as readonly string[]).includes(n));
  if (unknown.length > 0) {
    throw new ConfigError(field, `unknown placeholder ${unknown.map((n) => `{${n}}`).join(', ')}`, {
      hint: `The placeholders are ${PROMPT_PLACEHOLDERS.map((n) => `{${n}}`).join(', ')}`,
    });
  }
  if (!names.includes('question')) {
    throw new ConfigError(field, 'has no {question} placeholder, so every prompt would omit the question', {
      hint: 'Put {question} where the question goes, e.g. "{question}{options}\\n… {answer_format}"',
    });
  }
}

export interface PromptInput {
  question: string;
  /** Labelled options ("A. …"), if any. */
  options?: readonly string[];
  answerType: AnswerType;
}

/** The prompt for one row. The template must have passed `validateTemplate`. */
export function renderPrompt(template: string, input: PromptInput): string {
  const values: Record<string, string> = {
    question: input.question,
    options: input.options && input.options.length > 0 ? `\n${input.options.join('\n')}` : '',
    answer_format: ANSWER_FORMATS[input.answerType],
  };
  return template.replace(PLACEHOLDER, (whole, name: string) => values[name] ?? whole).trim();
}
