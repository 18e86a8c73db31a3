/**
 * What a model is shown for a benchmark row: the question text as the benchmark's published data phrases it, and its
 * images, read from the row in the benchmark's most-used published layout (its Hugging Face dataset's parquet files:
 * an image column is a struct `{bytes, path}`, or raw bytes).
 *
 *   benchmark  question text                                     images
 *   mathvista  `query` (the question with its hint and choices)    `decoded_image` (else `image` when it holds bytes)
 *   mathverse  `query_cot` (else `question`)                       `image`
 *   mmmu       `question`, then the `options` lettered "A. …"      `image_1` … `image_7`, where `<image k>` stands
 *   chartqa    `query`                                             `image`
 *   mmstar     `question` (its options are in the text)            `image`
 *
 * The model's prompt is then the evaluation template around that text (`renderEvalPrompt`: by default the
 * instruction to reason in <think>…</think> and answer in <answer>…</answer>, which is what the scoring reads first).
 * MMMU's `<image k>` markers become the images themselves, in place; the other benchmarks' single image comes first.
 */
import { SophiaError } from '../common/errors';
import type { BenchmarkName } from './index';
import { parsePythonStringList } from './python-compat';

/** One piece of a benchmark question: text, or an image's encoded bytes (PNG, JPEG, …). */
export type QuestionPart = { type: 'text'; text: string } | { type: 'image'; bytes: Uint8Array; field: string };

/** The default evaluation template: `{question}` is the row's question text. */
export const DEFAULT_EVAL_TEMPLATE =
  '{question}\n' +
  'First think the problem through step by step between <think> and </think>, then give the final answer between ' +
  '<answer> and </answer>: only the option letter for a multiple-choice question, otherwise only the answer itself.';

/** Refuses a template without `{question}` (the model would never see the question), naming `field`. */
export function validateEvalTemplate(template: string, field: string): void {
  if (!template.includes('{question}')) {
    throw new SophiaError('input', `${field}: the evaluation template has no {question} placeholder, so no prompt would hold the question`, {
      hint: 'Put {question} where the question goes, e.g. "{question}\\nAnswer in <answer></answer>."',
    });
  }
}

/**
 * The prompt's parts: the template's text around the question, the question's own parts in place of `{question}`
 * (its first text part joined to the template's text before it, the rest after).
 */
export function renderEvalPrompt(template: string, question: readonly QuestionPart[]): QuestionPart[] {
  const at = template.indexOf('{question}');
  const before = template.slice(0, at);
  const after = template.slice(at + '{question}'.length);
  const parts: QuestionPart[] = [];
  const pushText = (text: string) => {
    if (text === '') return;
    const last = parts[parts.length - 1];
    if (last?.type === 'text') parts[parts.length - 1] = { type: 'text', text: last.text + text };
    else parts.push({ type: 'text', text });
  };
  pushText(before);
  for (const part of question) {
    if (part.type === 'text') pushText(part.text);
    else parts.push(part);
  }
  pushText(after);
  return parts;
}

/** An image column's bytes: a struct with `bytes`, raw bytes, or base64 text (MMStar's TSV copies); else undefined. */
export function imageBytes(value: unknown): Uint8Array | undefined {
  if (value instanceof Uint8Array) return value.length > 0 ? value : undefined;
  if (value !== null && typeof value === 'object' && 'bytes' in value) return imageBytes(value.bytes);
  if (typeof value === 'string' && value.length > 64 && /^[A-Za-z0-9+/=\s]+$/.test(value.slice(0, 256))) {
    const bytes = Buffer.from(value, 'base64');
    return bytes.length > 0 ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : undefined;
  }
  return undefined;
}

/** Why a row cannot be shown to a model (it is then counted and skipped, never scored as wrong). */
export class QuestionError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

function text(record: Readonly<Record<string, unknown>>, ...fields: string[]): string {
  for (const field of fields) {
    const value = record[field];
    if (typeof value === 'string' && value.trim() !== '') return value;
  }
  throw new QuestionError(fields[0]!, `no question text (${fields.join(' or ')} must be a non-empty string)`);
}

function image(record: Readonly<Record<string, unknown>>, ...fields: string[]): QuestionPart {
  for (const field of fields) {
    const bytes = imageBytes(record[field]);
    if (bytes) return { type: 'image', bytes, field };
  }
  throw new QuestionError(fields[0]!, `no image bytes (${fields.join(' or ')} must hold the image: {bytes: …} as the published parquet files do)`);
}

/** MMMU: the question with its `<image k>` markers replaced by the images, then the options lettered A, B, …. */
function mmmuQuestion(record: Readonly<Record<string, unknown>>): QuestionPart[] {
  const question = text(record, 'question');
  const parts: QuestionPart[] = [];
  const used = new Set<number>();
  let last = 0;
  for (const m of question.matchAll(/<image (\d)>/g)) {
    const k = Number(m[1]);
    const bytes = imageBytes(record[`image_${k}`]);
    if (!bytes) throw new QuestionError(`image_${k}`, `the question shows <image ${k}> but image_${k} holds no image bytes`);
    if (m.index > last) parts.push({ type: 'text', text: question.slice(last, m.index) });
    parts.push({ type: 'image', bytes, field: `image_${k}` });
    used.add(k);
    last = m.index + m[0].length;
  }
  if (last < question.length) parts.push({ type: 'text', text: question.slice(last) });
  // Images the question does not mark (some options are images: "<image 2>" in an option) go before the question.
  const unmarked: QuestionPart[] = [];
  for (let k = 1; k <= 7; k++) {
    const bytes = used.has(k) ? undefined : imageBytes(record[`image_${k}`]);
    if (bytes) unmarked.push({ type: 'image', bytes, field: `image_${k}` });
  }
  const raw = record.options;
  const options = Array.isArray(raw) ? raw.map(String) : typeof raw === 'string' ? parsePythonStringList(raw) : null;
  if (record.question_type === 'multiple-choice') {
    if (!options || options.length === 0) throw new QuestionError('options', 'a multiple-choice question without options');
    parts.push({ type: 'text', text: `\n${options.map((o, i) => `${String.fromCharCode(65 + i)}. ${o}`).join('\n')}` });
  }
  if (!parts.some((p) => p.type === 'image') && unmarked.length === 0) throw new QuestionError('image_1', 'no image bytes in image_1 … image_7');
  return [...unmarked, ...parts];
}

const QUESTIONS: Record<BenchmarkName, (record: Readonly<Record<string, unknown>>) => QuestionPart[]> = {
  mathvista: (r) => [image(r, 'decoded_image', 'image'), { type: 'text', text: text(r, 'query', 'question') }],
  mathverse: (r) => [image(r, 'image'), { type: 'text', text: text(r, 'query_cot', 'question') }],
  mmmu: mmmuQuestion,
  chartqa: (r) => [image(r, 'image'), { type: 'text', text: text(r, 'query') }],
  mmstar: (r) => [image(r, 'image'), { type: 'text', text: text(r, 'question') }],
};

/** The question of a published row of `benchmark`; throws a `QuestionError` naming the field it lacks. */
export function questionOf(benchmark: BenchmarkName, record: Readonly<Record<string, unknown>>): QuestionPart[] {
  return QUESTIONS[benchmark](record);
}
