/**
 * Evaluating a policy on a benchmark: every row of the benchmark's published data is shown to the model (its question
 * and images, `inputs.ts`, inside the evaluation template), answered greedily, and scored by the benchmark's own rule
 * (`index.ts`, the same functions `sophia score` runs); accuracy overall and per category, and every prediction.
 *
 * A row that cannot be scored or shown (a field its rule needs is missing or ill-typed, no image bytes, an image that
 * does not decode) is skipped and counted by reason, with the first few named by row and field: never scored as wrong,
 * never dropped silently. Images are checked and, when larger than the processor keeps, shrunk as the datasets'
 * images are (datasets/images.ts), then handed to the engine as RGB pixels.
 */
import { decodeChecked } from '../datasets/images';
import type { ImageOptions } from '../datasets/types';
import type { ChatPart, ChatPrompt, Engine, RgbImage } from '../engine/types';
import { RowFieldError } from './fields';
import { BENCHMARKS, type BenchmarkName } from './index';
import { QuestionError, type QuestionPart, questionOf, renderEvalPrompt } from './inputs';
import type { Categories, ScorableRow } from './types';

export interface BenchmarkEvalSettings {
  /** Most response tokens per answer. */
  maxTokens: number;
  /** Prompts per engine call. */
  promptsPerBatch: number;
  /** Only the first `limit` rows (a quick look); all when absent. */
  limit?: number;
  /** The evaluation template (`{question}` is the row's question). */
  template: string;
  seed: number;
  /** How images are shrunk before the engine sees them (the processor's bounds). */
  images?: ImageOptions;
  /**
   * An answer extraction step before scoring (e.g. a judge model, as VLMEvalKit does): the answer it reads from a
   * response, or null when it reads none. The rule then scores `<answer>{extracted}</answer>`; without it (or when it
   * returns null) the rule reads the response itself.
   */
  extract?: (benchmark: BenchmarkName, record: Readonly<Record<string, unknown>>, response: string) => Promise<string | null>;
  /**
   * Adapts each row's prompt (written for a real vision-language model) to a model that reads less, after it is built
   * and before the engine sees it: e.g. Sophia's own model, which reads one small square image and a fixed alphabet
   * (`fitPromptToModel` in engine/onnx-prompts.ts). Absent: the prompt as built.
   */
  fit?: (prompt: ChatPrompt) => ChatPrompt;
}

export interface BenchmarkPrediction {
  /** The row's place in the benchmark's data (0-based, in file order). */
  index: number;
  /** The row's own id when it has one (MathVista pid, MMMU id, MMStar index, MathVerse sample_index). */
  id?: string;
  response: string;
  /** What the extraction step read (null: nothing, so the rule read the response); absent without one. */
  judgeExtracted?: string | null;
  correct: boolean;
  score: number;
  extracted: string | null;
  categories: Categories;
  /** Response tokens, and whether the response ended (false: it ran into maxTokens). */
  tokens: number;
  stopped: boolean;
}

export interface Tally {
  examples: number;
  correct: number;
  /** correct / examples (0 when there are none). */
  accuracy: number;
}

export interface SkippedRow {
  index: number;
  field: string;
  message: string;
}

export interface BenchmarkResult {
  benchmark: BenchmarkName;
  title: string;
  overall: Tally;
  /** Category key → value → tally (a MathVista row counts once for each of its skills). */
  byCategory: Record<string, Record<string, Tally>>;
  skipped: { rows: number; byField: Record<string, number>; first: SkippedRow[] };
  /** Mean response length in tokens, and the share that ran into maxTokens. */
  meanTokens: number;
  truncatedShare: number;
  predictions: BenchmarkPrediction[];
}

/** Skipped rows named in a result (the rest are counted). */
const FIRST_SKIPPED = 10;

const ID_FIELDS = ['pid', 'id', 'sample_index', 'index'];

function idOf(record: Readonly<Record<string, unknown>>): string | undefined {
  for (const field of ID_FIELDS) {
    const v = record[field];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint') return String(v);
  }
  return undefined;
}

/** An image's RGB pixels, shrunk to the processor's bounds first; throws a `QuestionError` naming `field`. */
export function rgbOf(bytes: Uint8Array, field: string, options: ImageOptions = {}): RgbImage {
  const checked = decodeChecked(bytes, options);
  if ('bad' in checked) throw new QuestionError(field, `${checked.bad}: ${checked.detail}`);
  const { pixels } = checked; // decoded once, by the check
  const rgb = new Uint8Array(pixels.width * pixels.height * 3);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    rgb[j] = pixels.rgba[i]!;
    rgb[j + 1] = pixels.rgba[i + 1]!;
    rgb[j + 2] = pixels.rgba[i + 2]!;
  }
  return { width: pixels.width, height: pixels.height, rgb };
}

function chatPromptOf(parts: readonly QuestionPart[], images: ImageOptions | undefined): ChatPrompt {
  const content: ChatPart[] = parts.map((p) => (p.type === 'text' ? p : { type: 'image', image: rgbOf(p.bytes, p.field, images) }));
  return { messages: [{ role: 'user', content }] };
}

function tally(examples: number, correct: number): Tally {
  return { examples, correct, accuracy: examples === 0 ? 0 : correct / examples };
}

interface Pending {
  index: number;
  id?: string;
  record: Readonly<Record<string, unknown>>;
  row: ScorableRow;
  prompt: ChatPrompt;
}

/**
 * Evaluates `engine`'s model on the rows of `benchmark` (published records, in order). `onProgress` is called after
 * each batch with the rows answered so far.
 */
export async function evaluateBenchmark(
  engine: Engine,
  benchmark: BenchmarkName,
  records: AsyncIterable<Readonly<Record<string, unknown>>>,
  settings: BenchmarkEvalSettings,
  onProgress?: (answered: number, skipped: number) => void,
): Promise<BenchmarkResult> {
  const definition = BENCHMARKS[benchmark];
  const predictions: BenchmarkPrediction[] = [];
  const skipped: BenchmarkResult['skipped'] = { rows: 0, byField: {}, first: [] };
  let batch: Pending[] = [];

  const flush = async () => {
    if (batch.length === 0) return;
    const result = await engine.generate({ prompts: batch.map((p) => p.prompt), n: 1, temperature: 0, topP: 1, maxTokens: settings.maxTokens, seed: settings.seed });
    for (const sequence of result.sequences) {
      const pending = batch[sequence.promptIndex]!;
      const extracted = settings.extract ? await settings.extract(benchmark, pending.record, sequence.text) : null;
      const score = pending.row.score(extracted === null ? sequence.text : `<answer>${extracted}</answer>`);
      predictions.push({
        index: pending.index,
        ...(pending.id !== undefined ? { id: pending.id } : {}),
        response: sequence.text,
        ...(settings.extract ? { judgeExtracted: extracted } : {}),
        ...score,
        categories: pending.row.categories,
        tokens: sequence.tokens.length,
        stopped: sequence.stopped,
      });
    }
    batch = [];
    onProgress?.(predictions.length, skipped.rows);
  };

  let index = 0;
  for await (const record of records) {
    if (settings.limit !== undefined && index >= settings.limit) break;
    const at = index++;
    let pending: Pending;
    try {
      const row = definition.read(record);
      const built = chatPromptOf(renderEvalPrompt(settings.template, questionOf(benchmark, record)), settings.images);
      const prompt = settings.fit ? settings.fit(built) : built;
      const id = idOf(record);
      pending = { index: at, record, row, prompt, ...(id !== undefined ? { id } : {}) };
    } catch (err) {
      if (!(err instanceof RowFieldError || err instanceof QuestionError)) throw err;
      skipped.rows++;
      skipped.byField[err.field] = (skipped.byField[err.field] ?? 0) + 1;
      if (skipped.first.length < FIRST_SKIPPED) skipped.first.push({ index: at, field: err.field, message: err.message });
      continue;
    }
    batch.push(pending);
    if (batch.length >= settings.promptsPerBatch) await flush();
  }
  await flush();

  const byCategory: Record<string, Record<string, Tally>> = {};
  for (const key of definition.categoryKeys) {
    const counts = new Map<string, [number, number]>();
    for (const p of predictions) {
      for (const value of p.categories[key] ?? []) {
        const c = counts.get(value) ?? [0, 0];
        counts.set(value, [c[0] + 1, c[1] + (p.correct ? 1 : 0)]);
      }
    }
    if (counts.size > 0) byCategory[key] = Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)).map(([v, [n, c]]) => [v, tally(n, c)]));
  }
  const n = predictions.length;
  return {
    benchmark,
    title: definition.title,
    overall: tally(n, predictions.filter((p) => p.correct).length),
    byCategory,
    skipped,
    meanTokens: n === 0 ? 0 : predictions.reduce((s, p) => s + p.tokens, 0) / n,
    truncatedShare: n === 0 ? 0 : predictions.filter((p) => !p.stopped).length / n,
    predictions,
  };
}
