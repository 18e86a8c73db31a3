/**
 * The optional LLM answer-extraction step of benchmark evaluation (`sophia eval --extract-url …`): a judge model
 * behind an OpenAI-compatible chat-completions endpoint reads the final answer out of a model's response, in the form
 * the benchmark's rule compares, as the official MathVista and MathVerse pipelines and VLMEvalKit do with GPT. Its
 * answer is then scored by the benchmark's own rule as `<answer>{answer}</answer>` (`BenchmarkEvalSettings.extract`
 * in evaluate.ts); when it reads none, the rule reads the response itself, as without the step.
 *
 * The prompt (`extractionPrompt`): a system message with the task — copy the final answer the response gives, never
 * solve or correct it, "none" when there is no single final answer — and the reply format, one line
 * `Extracted answer: …`; a user message with a few worked examples of the answer's kind, the question as the model
 * saw it (text only: the judge needs no image to copy an answer), the response between markers, and what to extract
 * for this row:
 *
 *   benchmark  what the judge extracts                              (the rule then)
 *   mathvista  multi_choice: the option letter; free_form: the       maps the letter to the option / compares numbers
 *              integer, the number (unrounded), the [list], the text    with the row's precision
 *   mathverse  multi-choice: the letter; free-form: the expression  compares letters / texts and numbers
 *   mmmu       multiple-choice: the letter; open: the short answer   parses the letter / the open answer
 *   chartqa    the number without units, %, currency; or the text   relaxed accuracy
 *   mmstar     the letter                                           reads the first letter
 *
 * The reply is read strictly (`parseExtraction`): the last line `Extracted answer: …`; a letter answer must be one
 * of the row's option letters. No such line, an empty value, "none", or a letter that is no option → null.
 *
 * The cache (`ExtractionCache`): a directory with one file per request, `<sha256>.json`, where the hash is of the
 * judge model's name and the full prompt (messages) and the file holds `{"model", "answer", "reply"}`. It is read
 * once when the extractor opens and each new entry is written atomically (a temporary file, then rename), so
 * re-scoring the same responses with the same judge sends no request. A file that does not parse as an entry is
 * ignored with a warning (and rewritten when its request is made again).
 *
 * Failures: the client retries network errors, 429 and 5xx (common/openai-chat.ts); when they persist, or the
 * endpoint refuses the request (4xx), `extract` throws and the evaluation fails, naming the endpoint. It does not
 * fall back to the rules for some rows, which would mix two extraction methods in one score; the answers read before
 * the failure are cached, so a rerun asks only for the rest.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { type ChatMessage, OpenAiChatClient, type OpenAiChatOptions } from '../common/openai-chat';
import type { BenchmarkName } from './index';
import { parseChoices } from './mathverse';
import { parsePythonStringList } from './python-compat';

type BenchmarkRecord = Readonly<Record<string, unknown>>;

/** A worked example shown to the judge (question, response, what to extract). */
interface Example {
  question: string;
  response: string;
  answer: string;
}

// Worked examples, by the kind of answer they show. Each target below picks those of its kind, and always one
// where nothing is extracted.
const EXAMPLES = {
  optionText: {
    question: 'Which shape has the most sides?\nChoices:\n(A) triangle\n(B) square\n(C) hexagon\n(D) circle',
    response: 'A triangle has 3 sides, a square 4 and a hexagon 6. <answer>hexagon</answer>',
    answer: 'C',
  },
  optionChanged: {
    question: 'What is the main color of the car?\nA. red\nB. blue\nC. green',
    response: 'At first glance it looks blue (B), but in the sunlight the body is clearly green. The answer is C.',
    answer: 'C',
  },
  optionHedged: {
    question: 'Which animal is closest to the camera?\nOptions: A: dog, B: cat, C: horse',
    response: 'It is hard to tell whether the dog or the horse is nearer; it could be A or C.',
    answer: 'none',
  },
  integer: {
    question: 'How many birds are sitting on the wire?',
    response: '<think>Three on the left, four on the right.</think><answer>7 birds</answer>',
    answer: '7',
  },
  decimal: {
    question: 'What is the length of side AB? (Unit: cm)',
    response: 'Using the cosine of 30°, AB = 5 × 0.866 ≈ 4.33 cm.',
    answer: '4.33',
  },
  percent: {
    question: 'What share of respondents answered "never"?',
    response: 'The bar labelled "never" reaches 23%, so the share is 23%.',
    answer: '23',
  },
  list: {
    question: 'In which two years was the revenue highest?',
    response: 'Revenue peaks twice, in 2015 and again in 2019.',
    answer: '[2015, 2019]',
  },
  text: {
    question: 'Which country has the lowest value?',
    response: 'Comparing all the bars, Chile has the shortest one.',
    answer: 'Chile',
  },
  expression: {
    question: 'Write the range of the function shown in interval notation.',
    response: 'The graph starts just above y = -3 (open circle) and reaches y = 2 (closed circle), so the range is $(-3, 2]$.',
    answer: '(-3, 2]',
  },
  unreadable: {
    question: 'What is the value of x in the diagram?',
    response: 'The labels in the image are too blurry to read, so I cannot determine x.',
    answer: 'none',
  },
} as const satisfies Record<string, Example>;

/** What the judge is asked to read from one row's response. */
export interface ExtractionTarget {
  /** The question as the model saw it, text only. */
  question: string;
  /** What to extract, in words (ends the prompt: "Extract …"). */
  want: string;
  /** The option letters when the answer is one of them; empty when the options are not in the text (any letter). */
  letters?: readonly string[];
  examples: readonly Example[];
}

const text = (record: BenchmarkRecord, ...fields: string[]): string => {
  for (const field of fields) {
    const value = record[field];
    if (typeof value === 'string' && value.trim() !== '') return value;
  }
  return '(not given)';
};

const lettersFor = (count: number) => Array.from({ length: count }, (_, i) => String.fromCharCode(65 + i));

/** The option-letter target: "the letter of the option the response chooses (one of A, B, C, D)". */
function letterTarget(question: string, letters: readonly string[]): ExtractionTarget {
  const which = letters.length > 0 ? `one of ${letters.join(', ')}` : 'a capital letter';
  return {
    question,
    want: `the letter of the option the response chooses (${which}), even when the response names the option by its text`,
    letters,
    examples: [EXAMPLES.optionText, EXAMPLES.optionChanged, EXAMPLES.optionHedged],
  };
}

const NUMBER_NOTE = 'without units, currency or % signs, and as written (do not round)';

const TARGETS: Record<BenchmarkName, (record: BenchmarkRecord) => ExtractionTarget> = {
  mathvista: (r) => {
    const question = text(r, 'query', 'question');
    if (r.question_type === 'multi_choice') return letterTarget(question, lettersFor(Array.isArray(r.choices) ? r.choices.length : 0));
    if (r.answer_type === 'list') return { question, want: 'the final answer as a list in square brackets, e.g. [2, 5]', examples: [EXAMPLES.list, EXAMPLES.integer, EXAMPLES.unreadable] };
    if (r.answer_type === 'text') return { question, want: 'the final answer as a short text, worded as the response words it', examples: [EXAMPLES.text, EXAMPLES.unreadable] };
    const kind = r.answer_type === 'integer' ? 'an integer' : 'a number';
    return { question, want: `the final answer as ${kind}, ${NUMBER_NOTE}`, examples: [EXAMPLES.integer, EXAMPLES.decimal, EXAMPLES.unreadable] };
  },
  mathverse: (r) => {
    const question = text(r, 'question', 'query_cot');
    if (r.question_type === 'multi-choice') return letterTarget(question, [...parseChoices(question).keys()]);
    return {
      question,
      want: 'the final answer alone, as the number or mathematical expression the response gives (keep its notation; no units, no explanation)',
      examples: [EXAMPLES.expression, EXAMPLES.decimal, EXAMPLES.unreadable],
    };
  },
  mmmu: (r) => {
    const raw = r.options;
    const options = Array.isArray(raw) ? raw.map(String) : typeof raw === 'string' ? (parsePythonStringList(raw) ?? []) : [];
    const question = `${text(r, 'question')}${options.length > 0 ? `\n${options.map((o, i) => `${String.fromCharCode(65 + i)}. ${o}`).join('\n')}` : ''}`;
    if (r.question_type === 'multiple-choice') return letterTarget(question, lettersFor(options.length));
    return { question, want: `the final answer, short: a number (${NUMBER_NOTE}) or a word or phrase`, examples: [EXAMPLES.integer, EXAMPLES.text, EXAMPLES.unreadable] };
  },
  chartqa: (r) => ({
    question: text(r, 'query'),
    want: `the final answer, short: a number (${NUMBER_NOTE}), or a word or short phrase as the chart labels it`,
    examples: [EXAMPLES.percent, EXAMPLES.text, EXAMPLES.unreadable],
  }),
  mmstar: (r) => {
    // The options are in the question: "…\nOptions: A: …, B: …, C: …, D: …".
    const question = text(r, 'question');
    const at = question.lastIndexOf('Options:');
    const options = at < 0 ? '' : question.slice(at + 'Options:'.length);
    return letterTarget(question, [...new Set([...options.matchAll(/(?:^|[\s,])([A-Z]):/g)].map((m) => m[1]!))]);
  },
};

/** What the judge is asked to read from a row of `benchmark` (its published record). */
export function extractionTarget(benchmark: BenchmarkName, record: BenchmarkRecord): ExtractionTarget {
  return TARGETS[benchmark](record);
}

const INSTRUCTIONS = `You read answers out of a model's responses for a benchmark's scorer. You are given a question and a model's response to it. Find the final answer that the response gives and copy it in the form asked for.
- Do not solve the question yourself and do not correct the response: a wrong final answer is extracted as it is.
- If the response changes its mind, the answer it ends with counts.
- If it gives no final answer, refuses, or leaves several answers open, the answer is none.
Reply with exactly one line: "Extracted answer: " followed by the answer, or "Extracted answer: none".`;

const block = (question: string, response: string) => `[Question]\n${question}\n[Model response]\n${response}\n[End of model response]`;

/** The chat messages that ask for `target`'s answer in `response` (also what the cache key hashes). */
export function extractionPrompt(target: ExtractionTarget, response: string): ChatMessage[] {
  const examples = target.examples.map((e) => `${block(e.question, e.response)}\nExtracted answer: ${e.answer}`).join('\n\n');
  return [
    { role: 'system', content: INSTRUCTIONS },
    { role: 'user', content: `Examples:\n\n${examples}\n\nNow this one:\n\n${block(target.question, response)}\n\nExtract ${target.want}.` },
  ];
}

const ANSWER_LINE = /^[\s>*_#-]*extracted answer[\s*_]*:(.*)$/gim;
const NO_ANSWER = new Set(['none', 'null', 'n/a', 'no answer']);
const LETTER = /^(?:option\s+)?(?:\(([a-z])\)|([a-z])(?=$|[.:)]))/i;

/**
 * The answer in a judge's reply, or null: the last line `Extracted answer: …` (Markdown emphasis, backticks, quotes
 * and a final full stop around the value are dropped). Null for no such line, an empty value or "none"; with
 * `letters` (a choice), the value must be a letter (`B`, `(B)`, `B. text`) among them, or any letter when empty.
 */
export function parseExtraction(reply: string, letters?: readonly string[]): string | null {
  const line = [...reply.matchAll(ANSWER_LINE)].at(-1);
  if (!line) return null;
  let value = line[1]!.trim();
  for (let previous = ''; previous !== value; ) {
    previous = value;
    value = value.replace(/^([*_`"'])(.*)\1$/s, '$2').replace(/^\*\*|\*\*$/g, '').replace(/\.$/, '').trim();
  }
  if (value === '' || NO_ANSWER.has(value.toLowerCase())) return null;
  if (letters === undefined) return value;
  const m = LETTER.exec(value);
  const letter = m ? (m[1] ?? m[2]!).toUpperCase() : undefined;
  return letter !== undefined && (letters.length === 0 || letters.includes(letter)) ? letter : null;
}

// ---------------------------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------------------------

/** One cached extraction: the judge model, the answer read (null: none) and the judge's reply, for inspection. */
export interface CacheEntry {
  model: string;
  answer: string | null;
  reply: string;
}

const KEY_FILE = /^([0-9a-f]{64})\.json$/;

/** The cache key of a request: sha256 of the judge model's name and the full prompt. */
export function cacheKey(model: string, messages: readonly ChatMessage[]): string {
  return createHash('sha256').update(JSON.stringify({ model, messages })).digest('hex');
}

function asEntry(value: unknown): CacheEntry | null {
  if (typeof value !== 'object' || value === null) return null;
  const { model, answer, reply } = value as Record<string, unknown>;
  return typeof model === 'string' && (typeof answer === 'string' || answer === null) && typeof reply === 'string' ? { model, answer, reply } : null;
}

/** Extractions by key, in a directory of `<key>.json` files (see the module comment). */
export class ExtractionCache {
  private constructor(
    readonly dir: string,
    private readonly entries: Map<string, CacheEntry>,
  ) {}

  /** Reads every entry in `dir` (created when absent); a corrupt one is reported to `warn` and skipped. */
  static open(dir: string, warn: (message: string) => void): ExtractionCache {
    mkdirSync(dir, { recursive: true });
    const entries = new Map<string, CacheEntry>();
    for (const name of readdirSync(dir).sort()) {
      const key = KEY_FILE.exec(name)?.[1];
      if (key === undefined) continue; // temporary files of an interrupted write, and anything else
      const file = path.join(dir, name);
      let entry: CacheEntry | null = null;
      try {
        entry = asEntry(JSON.parse(readFileSync(file, 'utf8')));
      } catch {
        // reported below
      }
      if (entry === null) warn(`extraction cache: ignoring ${file}, which is not a cache entry (it is rewritten when that answer is extracted again)`);
      else entries.set(key, entry);
    }
    return new ExtractionCache(dir, entries);
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): CacheEntry | undefined {
    return this.entries.get(key);
  }

  /** Stores an entry: written to a temporary file, then renamed over `<key>.json`. */
  put(key: string, entry: CacheEntry): void {
    const tmp = path.join(this.dir, `.${key}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(entry)}\n`);
    renameSync(tmp, path.join(this.dir, `${key}.json`));
    this.entries.set(key, entry);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The extractor
// ---------------------------------------------------------------------------------------------------------------

export interface LlmExtractorOptions extends Omit<OpenAiChatOptions, 'role' | 'field' | 'temperature'> {
  /** The cache directory. */
  cacheDir: string;
  /** Names options in errors (default `extract.<option>`); the CLI names its flags. */
  field?: OpenAiChatOptions['field'];
  /** Where warnings go (corrupt cache entries). */
  warn?: (message: string) => void;
}

/** Reads answers with a judge model, each prompt asked once across runs (see the module comment). */
export class LlmExtractor {
  /** Requests sent and answers taken from the cache, this run. */
  readonly stats = { requests: 0, cached: 0 };

  private constructor(
    private readonly client: OpenAiChatClient,
    readonly cache: ExtractionCache,
  ) {}

  /** Validates the endpoint options (a `ConfigError` naming the option) and reads the cache. */
  static open(options: LlmExtractorOptions): LlmExtractor {
    const { cacheDir, field = (option) => `extract.${option}`, warn = () => {}, ...chat } = options;
    const client = new OpenAiChatClient({ ...chat, temperature: 0, role: 'extraction', field });
    return new LlmExtractor(client, ExtractionCache.open(cacheDir, warn));
  }

  /** The answer the judge reads in `response` to a row of `benchmark`, or null (the rule then reads the response). */
  async extract(benchmark: BenchmarkName, record: BenchmarkRecord, response: string): Promise<string | null> {
    if (response.trim() === '') return null; // nothing to read: no request
    const target = extractionTarget(benchmark, record);
    const messages = extractionPrompt(target, response);
    const key = cacheKey(this.client.model, messages);
    const hit = this.cache.get(key);
    if (hit) {
      this.stats.cached++;
      return hit.answer;
    }
    this.stats.requests++;
    // Every reply is taken (an unreadable one is read as "none"): at temperature 0, asking again gives the same.
    const { content } = await this.client.complete(messages, (reply) => reply);
    const answer = parseExtraction(content, target.letters);
    this.cache.put(key, { model: this.client.model, answer, reply: content });
    return answer;
  }
}
