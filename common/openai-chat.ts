/**
 * The one OpenAI-compatible chat-completions client in Sophia: `POST {baseUrl}/chat/completions` (OpenAI, vLLM,
 * SGLang, llama.cpp server, …), used by the LLM judge that annotates training data (rewards/llm-annotator.ts) and by
 * the optional answer-extraction step of benchmark evaluation (benchmarks/llm-extract.ts). Each caller builds its
 * messages and reads the reply; this module owns the wire, the retries and the errors.
 *
 * Failures: network errors, timeouts, 429 and 5xx, replies that are not chat completions, and replies the caller
 * cannot read (its `read` returns null) are retried with exponential backoff (honouring `Retry-After`); any other
 * 4xx fails at once with a `SophiaError` that names the endpoint, the status, an excerpt of the body and the likely
 * fix. The API key never appears in an error: it is sent in the Authorization header only and redacted from
 * anything echoed back.
 *
 * Where the key goes: only to `{baseUrl}/chat/completions`, the one URL built at construction. Redirects are not
 * followed (a 3xx fails at once, naming the status): a server that redirected could otherwise hand the key on.
 */
import { ConfigError, SophiaError } from './errors';

/** One chat message: text, or text and images as content parts. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ({ type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } })[];
}

export interface OpenAiChatOptions {
  /** Up to and excluding `/chat/completions`, e.g. `https://api.openai.com/v1` or `http://localhost:8000/v1`. */
  baseUrl: string;
  model: string;
  /** Sent as `Authorization: Bearer …` when set. */
  apiKey?: string;
  /** Sampling temperature; default 0 (the most repeatable replies). */
  temperature?: number;
  /** Retries after the first attempt; default 3. */
  maxRetries?: number;
  /** Per attempt; default 60 000. */
  timeoutMs?: number;
  /** The first retry's delay, doubled on each further retry, at most 30 s; default 500. */
  retryDelayMs?: number;
  /** Defaults to the global `fetch`. */
  fetchImpl?: typeof fetch;
  /** What the endpoint is for, in messages: "judge" gives "judge endpoint http://…". */
  role: string;
  /**
   * Where an option came from, for errors and hints: `baseUrl` → `annotator.baseUrl` or `--extract-url`; undefined
   * for an option its user cannot set (hints then leave it out).
   */
  field: (option: keyof OpenAiChatOptions) => string | undefined;
}

/** What to say when no reply can be read (see `OpenAiChatClient.complete`). */
export interface Unreadable {
  /** Why one reply is unreadable, e.g. "no score in the reply". */
  problem: string;
  /** What no reply had, e.g. "gave no readable score". */
  failure: string;
  hint: string;
}

const UNREADABLE: Unreadable = { problem: 'an unreadable reply', failure: 'gave no readable reply', hint: 'Use an instruction-tuned model that follows the requested reply format' };

const MAX_BACKOFF_MS = 30_000;
const MAX_RETRY_AFTER_MS = 60_000;

export class OpenAiChatClient {
  /** `{baseUrl}/chat/completions`, the only URL requests (and the key) go to. */
  readonly url: string;
  readonly model: string;
  private readonly opts: Required<Omit<OpenAiChatOptions, 'apiKey'>> & { apiKey: string | undefined };

  /** Validates the options once; a bad one is a `ConfigError` naming `field(option)`. */
  constructor(options: OpenAiChatOptions) {
    const field = (option: keyof OpenAiChatOptions) => options.field(option) ?? option;
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new ConfigError(field('baseUrl'), `not a URL (got ${JSON.stringify(options.baseUrl)})`, { hint: 'Give the endpoint up to /v1, e.g. http://localhost:8000/v1' });
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new ConfigError(field('baseUrl'), `must be http(s) (got ${base.protocol})`);
    if (base.username || base.password || base.search || base.hash) {
      throw new ConfigError(field('baseUrl'), 'must not carry credentials, a query or a fragment', { hint: `Give the key as ${field('apiKey')}` });
    }
    if (!options.model) throw new ConfigError(field('model'), 'is required', { hint: 'Name the model as the server knows it, e.g. Qwen/Qwen2.5-VL-72B-Instruct' });
    const opts = {
      baseUrl: options.baseUrl,
      model: options.model,
      apiKey: options.apiKey,
      temperature: options.temperature ?? 0,
      maxRetries: options.maxRetries ?? 3,
      timeoutMs: options.timeoutMs ?? 60_000,
      retryDelayMs: options.retryDelayMs ?? 500,
      fetchImpl: options.fetchImpl ?? fetch,
      role: options.role,
      field: options.field,
    };
    const check = (option: 'temperature' | 'maxRetries' | 'timeoutMs' | 'retryDelayMs', min: number, max: number, integer: boolean) => {
      const value = opts[option];
      if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
        throw new ConfigError(field(option), `must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}] (got ${JSON.stringify(value)})`);
      }
    };
    check('temperature', 0, 2, false);
    check('maxRetries', 0, 100, true);
    check('timeoutMs', 1, 3_600_000, true);
    check('retryDelayMs', 0, MAX_BACKOFF_MS, true);
    this.opts = opts;
    this.model = options.model;
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  }

  /**
   * Sends `messages` and returns what `read` makes of the reply's text, with that text. A null from `read` counts as a
   * failed attempt (retried; after the last, an error built from `unreadable`); a `read` that never returns null
   * takes every reply as it is (and needs no `unreadable`).
   */
  async complete<T>(messages: readonly ChatMessage[], read: (content: string) => T | null, unreadable: Unreadable = UNREADABLE): Promise<{ value: T; content: string }> {
    const { model, temperature, maxRetries, timeoutMs, apiKey, role } = this.opts;
    const body = JSON.stringify({ model, temperature, messages });
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (apiKey) headers.authorization = `Bearer ${apiKey}`;

    let problem = '';
    let wasUnreadable = false;
    let retryAfterMs = 0;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      if (attempt > 0) await sleep(Math.max(retryAfterMs, Math.min(MAX_BACKOFF_MS, this.opts.retryDelayMs * 2 ** (attempt - 1))));
      retryAfterMs = 0;
      wasUnreadable = false;
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
        throw new SophiaError('config', `${role} endpoint ${this.url} answered HTTP ${status}: ${this.excerpt(text)}`, { hint: this.hintForStatus(status) });
      }
      const content = replyContent(text);
      if (content === null) {
        problem = `the reply is not a chat completion: ${this.excerpt(text)}`;
        continue;
      }
      const value = read(content);
      if (value === null) {
        wasUnreadable = true;
        problem = `${unreadable.problem}: ${this.excerpt(content)}`;
        continue;
      }
      return { value, content };
    }
    const attempts = `${maxRetries + 1} attempt${maxRetries === 0 ? '' : 's'}`;
    if (wasUnreadable) {
      throw new SophiaError('config', `${role} model ${model} ${unreadable.failure} in ${attempts}; last reply: ${problem}`, { hint: unreadable.hint });
    }
    const settable = [this.opts.field('maxRetries'), this.opts.field('timeoutMs')].filter((f) => f !== undefined);
    throw new SophiaError('unavailable', `${role} endpoint ${this.url} failed ${attempts}; last: ${problem}`, {
      hint: `Check that the server is running and reachable at ${this.fieldName('baseUrl')}${settable.length > 0 ? `, or raise ${settable.join(' / ')}` : ''}`,
    });
  }

  /** The first 300 characters, with the API key redacted should the server echo it. */
  private excerpt(text: string): string {
    const { apiKey } = this.opts;
    const redacted = apiKey ? text.split(apiKey).join('***') : text;
    return JSON.stringify(redacted.length > 300 ? `${redacted.slice(0, 300)}…` : redacted);
  }

  private fieldName(option: keyof OpenAiChatOptions): string {
    return this.opts.field(option) ?? option;
  }

  private hintForStatus(status: number): string {
    const { role } = this.opts;
    const field = (option: keyof OpenAiChatOptions) => this.fieldName(option);
    if (status >= 300 && status < 400) return `The ${role} endpoint redirects, and redirects are not followed (the API key would go elsewhere): set ${field('baseUrl')} to the final URL`;
    if (status === 401 || status === 403) return `Check the API key (${field('apiKey')}) and that it may use this model`;
    if (status === 404) return `Check ${field('baseUrl')} (it should end before /chat/completions, e.g. http://localhost:8000/v1) and the model name (${field('model')})`;
    if (status === 413) return 'The request is too large for the server: send smaller images or less text';
    return 'The server rejected the request: check the model name and that the model accepts what is sent (images need a vision-language model)';
  }
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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
