/**
 * Real training datasets: the types of the adapters layer (docs/datasets.md).
 *
 * The tiny world (tasks/) generates its examples; this layer reads published ones. Two source formats are read,
 * each from a local file or directory or an `s3://bucket/prefix`, streamed row by row:
 *  - `sophiavl`: the rows SophiaVL-R1 trains on (its released SophiaVL-R1-130k set and `verl/data/demo.json`):
 *    Video-R1-style JSON records with `problem_id`, `problem`, `data_type`, `problem_type`, `options`,
 *    `solution` ("<answer>…</answer>"), `path` (an image path under an image root) and `data_source`;
 *  - `easyr1`: EasyR1's rows (parquet, JSONL or JSON): a prompt column (`problem` in its examples), an answer column
 *    and an images column (a list of `{bytes, path}` structs as Hugging Face writes an `Image` feature, or of paths
 *    under `image_dir`), with the column names configurable as EasyR1 allows.
 *
 * Abstractions:
 *  - `DatasetRow`: one normalised, engine-neutral example (prompt rendered, images decoded and checked, answer in the
 *    notation tasks/grading.ts reads for its `AnswerType`);
 *  - `DatasetImage`: an image's encoded bytes with its size (re-encoded PNG when it had to be shrunk);
 *  - `DatasetOptions`: what a run config says about a dataset (plain serializable data);
 *  - `BadReason` and `ReadReport`: why rows were skipped, counted per reason, with the first few located;
 *  - `RawRow`: a record as a format adapter sees it, with where it came from.
 */
import type { AnswerType } from '../tasks/grading';

export const DATASET_FORMATS = ['sophiavl', 'easyr1'] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];

export interface DatasetImage {
  /** PNG or JPEG bytes: the file's own bytes, or a PNG re-encoded after shrinking (`resizedFrom` set). */
  bytes: Uint8Array;
  mime: 'image/png' | 'image/jpeg';
  width: number;
  height: number;
  /** The original size when the image was larger than `images.maxPixels` and was shrunk. */
  resizedFrom?: { width: number; height: number };
}

export interface DatasetRow {
  /** The row's own id (`problem_id`, or the configured id column), else a stable hash of file, row index and content. */
  id: string;
  /** `data_source` (or the configured source column), else the data file's path under the dataset root. */
  source: string;
  /** The data's category when the format has one (sophiavl: the image's top folder, e.g. "chart", "ocr", "math"). */
  category?: string;
  /** The prompt the policy sees: the template applied to the question, its options and its answer type. */
  question: string;
  /** The question as the dataset wrote it, `<image>` markers removed. */
  rawQuestion: string;
  /** One or more images, in the order the row lists them (shown before the question). */
  images: DatasetImage[];
  /** Ground truth in the grader's notation: "B" or "A,C" for choice, "3.5" for numeric, text otherwise. */
  answer: string;
  answerType: AnswerType;
  /** The problem type as the dataset wrote it ("multiple choice", "numerical", …), or the configured default. */
  problemType: string;
  /** Multiple-choice options as "A. text" lines, when the row has them. */
  options?: string[];
}

/** Why a row was skipped. Each is counted in the report; none is dropped silently. */
export const BAD_REASONS = [
  'missing-question', // no question text
  'missing-image', // no image listed, or an image entry with neither bytes nor path
  'image-not-found', // an image path that names no file
  'image-outside-root', // an image path that leaves the image root ("../", an absolute path elsewhere)
  'unreadable-image', // bytes that are not a decodable PNG or JPEG (truncated, corrupt)
  'unsupported-image', // a format other than PNG or JPEG (GIF, WebP, BMP…)
  'bad-aspect-ratio', // longer side over 200 × the shorter: the Qwen2-VL processor refuses it
  'empty-answer', // no ground truth after removing <answer> tags and spaces
  'bad-choice-answer', // a multiple-choice answer that is not option letters (or names a letter past the options)
  'unknown-problem-type', // a problem type with no grading rule (see answer-types.ts)
  'unsupported-data-type', // sophiavl `data_type` other than "image" (video rows)
  'duplicate-id', // an id already seen in this dataset
  'malformed-record', // a JSON line that does not parse, or a record that is not an object
] as const;
export type BadReason = (typeof BAD_REASONS)[number];

/** Where a bad row is, and why. */
export interface BadRowExample {
  /** Data file path under the dataset root. */
  file: string;
  /** 0-based row index within the file. */
  row: number;
  reason: BadReason;
  /** The specific fault, e.g. the missing path or the unknown type. */
  detail: string;
}

export interface ReadReport {
  /** Rows read, good and bad. */
  read: number;
  /** Rows yielded. */
  kept: number;
  /** Skipped rows per reason (only reasons that occurred). */
  bad: Partial<Record<BadReason, number>>;
  /** The first bad rows, in reading order (at most `MAX_BAD_EXAMPLES`). */
  examples: BadRowExample[];
  /** Rows per data file, in reading order. */
  files: { file: string; rows: number }[];
  /** Images shrunk to `images.maxPixels`. */
  resizedImages: number;
}

export const MAX_BAD_EXAMPLES = 10;

/** Column names of an `easyr1` dataset (EasyR1's `data.prompt_key`, `answer_key`, `image_key`, plus optional ones). */
export interface EasyR1Columns {
  /** Default "problem" (EasyR1's examples/config.yaml; its dataclass default is "prompt"). */
  prompt?: string;
  /** Default "answer". */
  answer?: string;
  /** Default "images". */
  images?: string;
  /** Default "problem_type"; rows without it take `defaultProblemType`. */
  problemType?: string;
  /** Default "options". */
  options?: string;
  /** Optional id column; without it ids are content hashes. */
  id?: string;
  /** Default "data_source". */
  source?: string;
  /** Default "category". */
  category?: string;
}

export interface ImageOptions {
  /** Images whose Qwen2-VL `smart_resize` target exceeds this are shrunk to it (default 12845056, Qwen2.5-VL's). */
  maxPixels?: number;
  /** The processor's lower bound, used in the resize arithmetic (default 3136). */
  minPixels?: number;
  /** Patch size × merge size (default 28). */
  factor?: number;
}

/** A dataset as a run config names it. Plain data: validated once by `validateDatasetOptions`. */
export interface DatasetOptions {
  format: DatasetFormat;
  /** An absolute local path (a data file or a directory of them) or `s3://bucket/prefix`. */
  location: string;
  /**
   * Which data files under a directory location to read: paths relative to it, `*` matching within one path
   * segment (e.g. "data/train-*.parquet"). Default: every .parquet, .jsonl and .json file under it.
   */
  files?: string[];
  /**
   * Where relative image paths resolve (EasyR1's `image_dir`, SophiaVL's `image_base_path`): an absolute local
   * directory, `s3://bucket/prefix`, or a path relative to the location's directory. Default: the location's directory.
   */
  imageRoot?: string;
  /** easyr1 only: column names. */
  columns?: EasyR1Columns;
  /** easyr1 only: the problem type of rows that have none (default "numerical": EasyR1's math reward). */
  defaultProblemType?: string;
  /** The prompt template (prompt.ts); default `DEFAULT_PROMPT_TEMPLATE`. */
  template?: string;
  images?: ImageOptions;
  /** Largest share of bad rows tolerated (default 0.01). Past it the read stops with a `DatasetQualityError`. */
  maxBadShare?: number;
  /** The bad share is checked once after this many rows (default 1000) and again at the end. */
  earlyCheckRows?: number;
  /** Stop after this many good rows (a first run on part of a large set); the bad share is checked on what was read. */
  limit?: number;
}

/** One source record as read from a data file, before normalisation. */
export interface RawRow {
  /** Data file path under the dataset root. */
  file: string;
  /** 0-based row index within the file. */
  row: number;
  record: unknown;
}
