/**
 * `sophia grade --jsonl FILE`: grades responses with the outcome-reward rules, through the same `grade` function
 * the trainer calls, so a rule can be checked on hand-written or logged responses without running anything.
 *
 * Input: one JSON object per line, `{"type": "numeric"|"choice"|"ocr"|"text", "response": "...", "answer": "..."}`
 * (blank lines ignored, other fields ignored). Output: one line per input, in order,
 * `{"reward": number, "formatOk": boolean, "extracted": string|null}`. Every line is validated before anything is
 * written, so a bad file produces an error and no partial output. `GRADE_HELP` (`sophia grade --help`) tells a
 * user what each answer type counts as correct; the rules themselves are in `tasks/grading.ts`.
 */
import { SophiaError } from '../common/errors';
import { readJsonLines } from './jsonl';
import { ANSWER_TYPES, type AnswerType, grade } from '../tasks/grading';

interface GradeRequest {
  type: AnswerType;
  response: string;
  answer: string;
}

/** What `sophia grade --help` prints: the input, the output, and what each answer type counts as correct. */
export const GRADE_HELP = `usage: sophia grade --jsonl FILE

Grades responses with the outcome-reward rules the trainer uses. FILE has one JSON object per line:
  {"type": "numeric"|"choice"|"ocr"|"text", "response": "<think>…</think><answer>…</answer>", "answer": "ground truth"}
and one line is printed per input, in order: {"reward": 0…1, "formatOk": true|false, "extracted": "…"|null}.

Every type first checks the format: the response must be <think>…</think> followed by <answer>…</answer>;
if not, the reward is 0 and formatOk false. Then the text inside the answer tags is compared with "answer":

  type     counts as correct                                             reward
  numeric  the same value: plain numbers exactly (1,000 = 1000;          1 or 0
           \\frac{1}{2} = 0.5; \\boxed{7} = 7; 1/3 ≠ 0.333), LaTeX
           expressions by value (\\sqrt{12} = 2\\sqrt{3}; 2\\pi = \\pi \\cdot 2;
           x+1 = 1+x; a decimal within 1e-9: 0.8660254037844386 =
           \\frac{\\sqrt{3}}{2}, 0.866 is not); two values ("7 or 8",
           "x = 1, 2", \\pm), other variables, or none is wrong
  choice   the same set of option letters A–Z ("C, A" = "A,C";           1 or 0
           "(B) 12 apples" = "B"); a letter missing or extra is wrong;
           "A or B", a listing "A. 3 B. 4" or "B) 4 because A) …" choose
           nothing (several labelled options count only joined by "and"
           or commas: "(A) 3 and (C) 5" = "A,C")
  ocr      the same words (case and spacing ignored); partial credit     exp(−WER): 1 when exact,
           that decays with the word error rate                          ≈ 0.37 when all wrong
  text     the same text once normalised (case, punctuation, spacing     1 when exact, else mean
           ignored); otherwise partial credit for overlapping words      ROUGE-1/2/L F1`;

const EXAMPLE_LINE = '{"type": "numeric", "response": "<think>…</think><answer>7</answer>", "answer": "7"}';

/** Validates one parsed line; `where` is "FILE line N" for messages. */
function toRequest(value: unknown, where: string): GradeRequest {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SophiaError('input', `${where}: expected a JSON object like ${EXAMPLE_LINE}`);
  }
  const record = value as Record<string, unknown>;
  const type = record.type;
  if (typeof type !== 'string' || !(ANSWER_TYPES as readonly string[]).includes(type)) {
    const got = type === undefined ? 'it is missing' : `got ${JSON.stringify(type)}`;
    throw new SophiaError('input', `${where}: field "type": expected one of ${ANSWER_TYPES.map((t) => `"${t}"`).join(', ')}; ${got}`);
  }
  for (const field of ['response', 'answer'] as const) {
    if (typeof record[field] !== 'string') {
      const got = record[field] === undefined ? 'it is missing' : `got ${JSON.stringify(record[field])}`;
      throw new SophiaError('input', `${where}: field "${field}": expected a string; ${got}`);
    }
  }
  return { type: type as AnswerType, response: record.response as string, answer: record.answer as string };
}

/** Reads and validates every line of a JSONL file of grading requests. */
async function readRequests(file: string): Promise<GradeRequest[]> {
  return readJsonLines(file, 'request', EXAMPLE_LINE, toRequest);
}

/** Grades every request in `file` and writes one JSON result per line to `out`. */
export async function gradeCommand(file: string, out: NodeJS.WritableStream): Promise<void> {
  const requests = await readRequests(file);
  const lines = requests.map(({ type, response, answer }) => {
    const { reward, formatOk, extracted } = grade(type, response, answer);
    return `${JSON.stringify({ reward, formatOk, extracted })}\n`;
  });
  if (lines.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    out.write(lines.join(''), (err) => (err ? reject(err) : resolve()));
  });
}
