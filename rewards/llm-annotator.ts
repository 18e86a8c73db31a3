/**
 * The LLM judge adapter of the annotator port: scores responses with a vision-language model behind an
 * OpenAI-compatible `POST {baseUrl}/chat/completions` endpoint (OpenAI, vLLM, SGLang, llama.cpp server, …), the
 * way the paper annotates its data with a 72B judge (docs/architecture.md §3).
 *
 * Per request: a system message with the rubric (`JUDGE_RUBRIC`, the same one the programmatic judge implements),
 * a user message with the image (PNG, upscaled so the model can see the tiny world's pixels, as a
 * `data:image/png;base64,…` URL), the question and the response to judge. The model is asked to end with the
 * score in `<answer>score</answer>`; `parseJudgeScore` reads it, with fallbacks for models that do not follow the
 * format exactly.
 *
 * Failures: network errors, timeouts, 429 and 5xx, replies that are not chat completions, and replies with no
 * readable score are retried with exponential backoff (honouring `Retry-After`); any other 4xx fails at once with
 * a `SophiaError` that names the status, an excerpt of the body and the likely fix. The API key never appears in
 * an error: it is sent in the Authorization header only and redacted from anything echoed back.
 *
 * Where the key goes: only to `{baseUrl}/chat/completions`, the one URL built at construction. Redirects are not
 * followed (a 3xx fails at once, naming the status): a judge server that redirected could otherwise hand the key on.
 * Which endpoint and which key a run may use is the operator's choice, never the run's (`judges.ts`).
 */
import { ConfigError, SophiaError } from '../common/errors';
import { encodePng } from '../tasks/render';
import type { Annotation, AnnotationRequest, Annotator } from './annotator';
import { JUDGE_RUBRIC, roundScore } from './judge';

export interface OpenAiAnnotatorOptions {
  /** Up to and excluding `/chat/completions`, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`. */
  baseUrl: string;
  model: string;
  /** Sent as `Authorization: Bearer …` when set. */
  apiKey?: string;
  /** Sampling temperature; default 0 (the most repeatable scores). */
  temperature?: number;
  /** Retries after the first attempt; default 3. */
  maxRetries?: number;
  /** Per attempt; default 60 000. */
  timeoutMs?: number;
  /** Requests in flight at once; default 4. */
  concurrency?: number;
  /** The first retry's delay, doubled on each further retry, at most 30 s; default 500. */
  retryDelayMs?: number;
  /** Each image pixel becomes scale × scale pixels; default 8 (a 24 px image is sent as 192 px). */
  imageScale?: number;
  /** Defaults to the global `fetch`. */
  fetchImpl?: typeof fetch;
}

const MAX_BACKOFF_MS = 30_000;
const MAX_RETRY_AFTER_MS = 60_000;

const INSTRUCTIONS = `${JUDGE_RUBRIC}

Explain briefly what is right and wrong in the reasoning, then give the score alone inside answer tags, for example <answer>0.7</answer>.`;

/** The chat-completions request body for one annotation (exported for tests and for logging what was asked). */
function judgeRequestBody(request: AnnotationRequest, model: string, temperature: number, imageScale: number): object {
  const png = Buffer.from(encodePng(request.example.image, imageScale)).toString('base64');
  const text = `Question: ${request.example.question}

Response to judge:
${request.response}

Score the reasoning of this response. End with the score in <answer>score</answer>, a multiple of 0.1 from 0 to 1.`;
  return {
    model,
    temperature,
    messages: [
      { role: 'system', content: INSTRUCTIONS },
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
          { type: 'text', text },
        ],
      },
    ],
  };
}

export class OpenAiCompatibleAnnotator implements Annotator {
  readonly name: string;
  private readonly url: string;
  private readonly opts: Required<Omit<OpenAiAnnotatorOptions, 'apiKey'>> & { apiKey: string | undefined };

  constructor(options: OpenAiAnnotatorOptions) {
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new ConfigError('annotator.baseUrl', `not a URL (got ${JSON.stringify(options.baseUrl)})`, { hint: 'Give the endpoint up to /v1, e.g. http://localhost:8000/v1' });
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new ConfigError('annotator.baseUrl', `must be http(s) (got ${base.protocol})`);
    if (base.username || base.password || base.search || base.hash) throw new ConfigError('annotator.baseUrl', 'must not carry credentials, a query or a fragment', { hint: 'Give the key as apiKey (a judge\'s apiKeyEnv)' });
    if (!options.model) throw new ConfigError('annotator.model', 'is required', { hint: 'Name the judge model as the server knows it, e.g. Qwen/Qwen2.5-VL-72B-Instruct' });
    const opts = {
      baseUrl: options.baseUrl,
      model: options.model,
      apiKey: options.apiKey,
      temperature: options.temperature ?? 0,
      maxRetries: options.maxRetries ?? 3,
      timeoutMs: options.timeoutMs ?? 60_000,
      concurrency: options.concurrency ?? 4,
      retryDelayMs: options.retryDelayMs ?? 500,
      imageScale: options.imageScale ?? 8,
      fetchImpl: options.fetchImpl ?? fetch,
    };
    checkNumber('temperature', opts.temperature, 0, 2, false);
    checkNumber('maxRetries', opts.maxRetries, 0, 100, true);
    checkNumber('timeoutMs', opts.timeoutMs, 1, 3_600_000, true);
    checkNumber('concurrency', opts.concurrency, 1, 1024, true);
    checkNumber('retryDelayMs', opts.retryDelayMs, 0, MAX_BACKOFF_MS, true);
    checkNumber('imageScale', opts.imageScale, 1, 64, true);
    this.opts = opts;
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    this.name = `llm:${options.model}`;
  }

  /** Annotates with at most `concurrency` requests in flight; results in request order. Rejects on the first failure. */
  async annotate(items: AnnotationRequest[]): Promise<Annotation[]> {
    const out = new Array<Annotation>(items.length);
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < items.length) {
        const i = next++;
        try {
          out[i] = await this.annotateOne(items[i]!);
        } catch (err) {
          failed = true; // the other workers finish their request in flight and take no more
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.concurrency, items.length) }, worker));
    return out;
  }

  private async annotateOne(request: AnnotationRequest): Promise<Annotation> {
    const { model, temperature, imageScale, maxRetries, timeoutMs, apiKey } = this.opts;
    const body = JSON.stringify(judgeRequestBody(request, model, temperature, imageScale));
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (apiKey) headers.authorization = `Bearer ${apiKey}`;

    let problem = '';
    let unparseable = false;
    let retryAfterMs = 0;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      if (attempt > 0) await sleep(Math.max(retryAfterMs, Math.min(MAX_BACKOFF_MS, this.opts.retryDelayMs * 2 ** (attempt - 1))));
      retryAfterMs = 0;
      unparseable = false;
      let status: number;
      let text: string;
      try {
        const res = await this.opts.fetchImpl(this.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
        status = res.status;
        text = await res.text();
        if (status === 429 || status >= 500) {
          retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
          problem = `HTTP ${status}: ${this.excerpt(text)}`;
          continue;
        }
      } catch (err) {
        problem = `network error: ${this.excerpt(describe(err))}`;
        continue;
      }
      if (status < 200 || status >= 300) {
        throw new SophiaError('config', `judge endpoint ${this.url} answered HTTP ${status}: ${this.excerpt(text)}`, { hint: hintForStatus(status) });
      }
      const content = replyContent(text);
      if (content === null) {
        problem = `the reply is not a chat completion: ${this.excerpt(text)}`;
        continue;
      }
      const score = parseJudgeScore(content);
      if (score === null) {
        unparseable = true;
        problem = `no score in the reply: ${this.excerpt(content)}`;
        continue;
      }
      return { score, raw: content };
    }
    const attempts = `${maxRetries + 1} attempt${maxRetries === 0 ? '' : 's'}`;
    if (unparseable) {
      throw new SophiaError('config', `judge model ${model} gave no readable score in ${attempts}; last reply: ${problem}`, {
        hint: 'Use an instruction-tuned vision-language model that ends its reply with <answer>score</answer>, or raise maxRetries',
      });
    }
    throw new SophiaError('unavailable', `judge endpoint ${this.url} failed ${attempts}; last: ${problem}`, {
      hint: 'Check that the server is running and reachable at baseUrl, or raise maxRetries / timeoutMs',
    });
  }

  /** The first 300 characters, with the API key redacted should the server echo it. */
  private excerpt(text: string): string {
    const { apiKey } = this.opts;
    const redacted = apiKey ? text.split(apiKey).join('***') : text;
    return JSON.stringify(redacted.length > 300 ? `${redacted.slice(0, 300)}…` : redacted);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the judge's reply
// ---------------------------------------------------------------------------------------------------------------

const NUM = String.raw`[-+]?(?:\d+(?:\.\d+)?|\.\d+)`;
// A value: a decimal, a fraction (`7/10`, `7 out of 10`) or a percentage (`70%`).
const VALUE = String.raw`(${NUM})\s*(?:(?:/|\bout of\b)\s*(${NUM})|(%))?`;

function valueOf(m: RegExpExecArray | RegExpMatchArray): number | null {
  const x = Number(m[1]);
  if (m[2] !== undefined) {
    const d = Number(m[2]);
    return d > 0 ? x / d : null;
  }
  return m[3] !== undefined ? x / 100 : x;
}

/**
 * The score in a judge's reply, in [0, 1] rounded to 0.1, or null when there is none. Read, in order:
 *  1. the first number in the first `<answer>…</answer>` (`<answer>0.7</answer>`, `<answer>7/10</answer>`);
 *  2. the number right after the last mention of "score" (`Score: 0.6`, `a score of 70%`);
 *  3. the whole reply as one number (`0.4`);
 *  4. the last fraction (`7/10`, `7 out of 10`), else the last percentage (`70%`) anywhere.
 * Values outside [0, 1] are clipped (`1.3` → 1, `-0.2` → 0); halves round up (`0.65` → 0.7).
 */
export function parseJudgeScore(text: string): number | null {
  const tag = /<answer>([\s\S]*?)<\/answer>/i.exec(text);
  const fromTag = tag ? new RegExp(VALUE).exec(tag[1]!) : null;
  const afterScore = [...text.matchAll(new RegExp(String.raw`\bscores?\b[^\d<+\-.]{0,30}?${VALUE}`, 'gi'))].at(-1);
  const bare = new RegExp(String.raw`^\s*${VALUE}\s*\.?\s*$`).exec(text);
  const fraction = [...text.matchAll(new RegExp(String.raw`(${NUM})\s*(?:/|\bout of\b)\s*(${NUM})`, 'gi'))].at(-1);
  const percent = [...text.matchAll(new RegExp(String.raw`(${NUM})\s*%`, 'g'))].at(-1);
  const candidates = [fromTag, afterScore, bare, fraction].map((m) => (m ? valueOf(m) : null));
  candidates.push(percent ? Number(percent[1]) / 100 : null);
  const v = candidates.find((x): x is number => x !== null && Number.isFinite(x));
  return v === undefined ? null : roundScore(v);
}

/** `choices[0].message.content` of a chat completion (string, or text parts joined); null when absent. */
function replyContent(body: string): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return null;
  }
  const content = (parsed as { choices?: { message?: { content?: unknown } }[] } | null)?.choices?.[0]?.message?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((p: unknown) => (typeof p === 'object' && p !== null && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join('');
  }
  return null;
}

function hintForStatus(status: number): string {
  if (status >= 300 && status < 400) return 'The judge endpoint redirects, and redirects are not followed (the API key would go elsewhere): set baseUrl to the final URL';
  if (status === 401 || status === 403) return 'Check the API key (the apiKey option) and that it may use this model';
  if (status === 404) return 'Check baseUrl (it should end before /chat/completions, e.g. http://localhost:8000/v1) and the model name';
  if (status === 413) return 'The request is too large: lower imageScale';
  return 'The server rejected the request: check the model name and that the model accepts images (a vision-language model)';
}

/** `Retry-After` in seconds → ms (capped); 0 when absent or an HTTP date. */
function parseRetryAfter(value: string | null): number {
  const s = value === null ? NaN : Number(value);
  return Number.isFinite(s) && s > 0 ? Math.min(MAX_RETRY_AFTER_MS, s * 1000) : 0;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.name}: ${err.message}${cause}`;
  }
  return String(err);
}

function checkNumber(field: string, value: number, min: number, max: number, integer: boolean): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new ConfigError(`annotator.${field}`, `must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}] (got ${JSON.stringify(value)})`);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
