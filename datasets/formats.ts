/**
 * The two source formats: each maps one raw record to a `Draft` (everything but the image bytes and the rendered
 * prompt) or to the reason it is bad. Pure functions; the reader (reader.ts) does the I/O.
 *
 * `sophiavl`, read from SophiaVL-R1's code and data (github kxfan2002/SophiaVL-R1: verl/data/demo.json,
 * verl/data/dataset_info.json, verl/utils/dataset.py; the README points at the Hugging Face set
 * bunny127/SophiaVL-R1-130k for RL training): JSON arrays of Video-R1-style records
 *     { "problem_id": 37216, "problem": "Who did he shoot in November 1963?", "data_type": "image",
 *       "problem_type": "text", "options": [], "solution": "<answer>Lee Harvey Oswald</answer>",
 *       "path": "./Knowledge/viquae/images/512px-CE5301C.jpg", "data_source": "viquae" }
 *   with `path` relative to an image root (`image_base_path` there), one JSON file per category (chart, ocr, math,
 *   knowledge…), and the category as the image path's top folder. Its loader appends the options to the question
 *   and treats `data_type` other than "image" as text/video; Sophia reads image rows only.
 *
 * `easyr1`, read from EasyR1 (github hiyouga/EasyR1: verl/utils/dataset.py, verl/trainer/config.py,
 * examples/config.yaml; example sets hiyouga/geometry3k, hiyouga/journeybench-multi-image-vqa): parquet or JSON rows
 * with a prompt column (`prompt_key`, "problem" in its examples), `answer_key` ("answer") and `image_key` ("images"):
 * a list of Hugging Face `Image` structs `{bytes, path}` or of paths under `image_dir`. `<image>` markers in the
 * prompt place the images; Sophia shows them before the question, so the markers are removed. EasyR1 has no problem
 * type column (its reward function is chosen per run); one is read when present, else `defaultProblemType`.
 */
import { createHash } from 'node:crypto';
import type { AnswerType } from '../tasks/grading';
import { answerTypeOf, choiceLetters, groundTruthText, KNOWN_PROBLEM_TYPES, labelOptions } from './answers';
import type { BadReason, DatasetFormat, EasyR1Columns, RawRow } from './types';

/** An image as a row names it: embedded bytes, or a path under the image root. */
export type ImageRef = { bytes: Uint8Array } | { path: string };

export interface Draft {
  /** The row's own id, when the format has one. */
  ownId?: string;
  source?: string;
  category?: string;
  rawQuestion: string;
  images: ImageRef[];
  answer: string;
  answerType: AnswerType;
  problemType: string;
  options?: string[];
}

export type Mapped = { draft: Draft } | { bad: BadReason; detail: string };

export const EASYR1_DEFAULT_COLUMNS: Required<Omit<EasyR1Columns, 'id'>> = {
  prompt: 'problem',
  answer: 'answer',
  images: 'images',
  problemType: 'problem_type',
  options: 'options',
  source: 'data_source',
  category: 'category',
};

/** EasyR1's math reward (mathruler's equivalence check) is the nearest Sophia rule: numeric. */
export const EASYR1_DEFAULT_PROBLEM_TYPE = 'numerical';

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return undefined;
}

function stringList(value: unknown): string[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const out = value.map(text).filter((v): v is string => v !== undefined && v.trim() !== '');
  return out.length > 0 ? out : undefined;
}

/** Question, type, options and answer: the checks both formats share, in the order their reasons are counted. */
function common(question: unknown, problemType: unknown, options: unknown, answer: unknown): { bad: BadReason; detail: string } | Omit<Draft, 'images'> {
  const rawQuestion = (text(question) ?? '').replace(/<image>/g, '').trim();
  if (rawQuestion === '') return { bad: 'missing-question', detail: 'no question text' };
  const type = text(problemType);
  const answerType = type === undefined ? undefined : answerTypeOf(type);
  if (answerType === undefined) {
    return { bad: 'unknown-problem-type', detail: `${type === undefined ? 'no problem type' : JSON.stringify(type)}; known: ${KNOWN_PROBLEM_TYPES.join(', ')}` };
  }
  const labelled = answerType === 'choice' ? labelOptions(stringList(options) ?? []) : stringList(options);
  let truth = groundTruthText(text(answer) ?? '');
  if (truth === '') return { bad: 'empty-answer', detail: 'the answer is empty' };
  if (answerType === 'choice') {
    const letters = choiceLetters(truth, labelled);
    if ('error' in letters) return { bad: 'bad-choice-answer', detail: letters.error };
    truth = letters.letters;
  }
  return { rawQuestion, answer: truth, answerType, problemType: type!, ...(labelled && labelled.length > 0 ? { options: labelled } : {}) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The image path's top folder ("./Chart/x/1.png" → "chart"), when it has one. */
function topFolder(p: string): string | undefined {
  const segments = p.replace(/^\.\//, '').split('/').filter((s) => s !== '' && s !== '.');
  return segments.length >= 2 ? segments[0]!.toLowerCase() : undefined;
}

export function mapSophiaVL(raw: RawRow): Mapped {
  const r = raw.record;
  if (!isRecord(r)) return { bad: 'malformed-record', detail: 'not a JSON object' };
  if (r.data_type !== undefined && r.data_type !== 'image') return { bad: 'unsupported-data-type', detail: `data_type ${JSON.stringify(r.data_type)} (only "image" rows are read)` };
  const base = common(r.problem, r.problem_type, r.options, r.solution);
  if ('bad' in base) return base;
  const imagePath = text(r.path)?.trim();
  if (!imagePath) return { bad: 'missing-image', detail: 'no "path"' };
  const draft: Draft = { ...base, images: [{ path: imagePath }] };
  const id = text(r.problem_id);
  if (id !== undefined && id.trim() !== '') draft.ownId = id.trim();
  const source = text(r.data_source);
  if (source) draft.source = source;
  const category = topFolder(imagePath);
  if (category) draft.category = category;
  return { draft };
}

function imageRef(entry: unknown): ImageRef | undefined {
  if (typeof entry === 'string') return entry.trim() === '' ? undefined : { path: entry.trim() };
  if (isRecord(entry)) {
    if (entry.bytes instanceof Uint8Array && entry.bytes.length > 0) return { bytes: entry.bytes };
    if (typeof entry.path === 'string' && entry.path.trim() !== '') return { path: entry.path.trim() };
  }
  return undefined;
}

export function mapEasyR1(raw: RawRow, columns: EasyR1Columns = {}, defaultProblemType = EASYR1_DEFAULT_PROBLEM_TYPE): Mapped {
  const r = raw.record;
  if (!isRecord(r)) return { bad: 'malformed-record', detail: 'not a JSON object' };
  const c = { ...EASYR1_DEFAULT_COLUMNS, ...columns };
  const base = common(r[c.prompt], r[c.problemType] ?? defaultProblemType, r[c.options], r[c.answer]);
  if ('bad' in base) return base;
  const column = r[c.images];
  const listed: unknown[] = Array.isArray(column) ? (column as unknown[]) : column === undefined || column === null ? [] : [column];
  if (listed.length === 0) return { bad: 'missing-image', detail: `no images in column "${c.images}"` };
  const images: ImageRef[] = [];
  for (const [i, entry] of listed.entries()) {
    const ref = imageRef(entry);
    if (!ref) return { bad: 'missing-image', detail: `image ${i} in column "${c.images}" has neither bytes nor a path` };
    images.push(ref);
  }
  const draft: Draft = { ...base, images };
  const id = columns.id === undefined ? undefined : text(r[columns.id]);
  if (id !== undefined && id.trim() !== '') draft.ownId = id.trim();
  const source = text(r[c.source]);
  if (source) draft.source = source;
  const category = text(r[c.category]);
  if (category) draft.category = category;
  return { draft };
}

export function mapRow(format: DatasetFormat, raw: RawRow, columns?: EasyR1Columns, defaultProblemType?: string): Mapped {
  return format === 'sophiavl' ? mapSophiaVL(raw) : mapEasyR1(raw, columns, defaultProblemType);
}

/**
 * The id of a row without one: a hash of where it is and what it says, stable across machines (the file path is
 * relative to the dataset root).
 */
export function contentId(raw: RawRow, draft: Draft): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([raw.file, raw.row, draft.rawQuestion, draft.answer]));
  for (const image of draft.images) h.update('bytes' in image ? image.bytes : `path:${image.path}`);
  return `h${h.digest('hex').slice(0, 24)}`;
}
