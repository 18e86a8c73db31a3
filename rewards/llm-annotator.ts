/**
 * The LLM judge adapter of the annotator port: scores responses with a vision-language model behind an
 * OpenAI-compatible `POST {baseUrl}/chat/completions` endpoint (OpenAI, vLLM, SGLang, llama.cpp server, …), the
 * way the paper annotates its data with a 72B judge (docs/architecture.md §3).
 *
 * Per request: a system message with the rubric (`JUDGE_RUBRIC`, the same one the programmatic judge implements),
 * a user message with the image (a tiny-world image as PNG, upscaled so the model can see its pixels; a real dataset's as its own PNG or JPEG bytes), as a
 * `data:image/png;base64,…` URL), the question and the response to judge. The model is asked to end with the
 * score in `<answer>score</answer>`; `parseJudgeScore` reads it, with fallbacks for models that do not follow the
 * format exactly.
 *
 * The wire, the retries and the errors are the shared chat-completions client's (common/openai-chat.ts): network
 * errors, timeouts, 429 and 5xx, and replies with no readable score are retried with backoff; any other 4xx fails at
 * once naming the status and the fix; the key goes to `{baseUrl}/chat/completions` only (no redirects followed) and
 * never into an error. Requests run `concurrency` at a time.
 *
 * Which endpoint and which key a run may use is the operator's choice, never the run's (`judges.ts`).
 */
import { ConfigError } from '../common/errors';
import { type ChatMessage, OpenAiChatClient, type OpenAiChatOptions, type Unreadable } from '../common/openai-chat';
import { fileOf } from '../tasks/images';
import type { Annotation, AnnotationRequest, Annotator } from './annotator';
import { JUDGE_RUBRIC, roundScore } from './judge';

/** The endpoint's settings as the shared client takes them (common/openai-chat.ts), and the annotator's own. */
export interface OpenAiAnnotatorOptions extends Omit<OpenAiChatOptions, 'role' | 'field'> {
  /** Requests in flight at once; default 4. */
  concurrency?: number;
  /** Each image pixel becomes scale × scale pixels; default 8 (a 24 px image is sent as 192 px). */
  imageScale?: number;
}

const INSTRUCTIONS = `${JUDGE_RUBRIC}

Explain briefly what is right and wrong in the reasoning, then give the score alone inside answer tags, for example <answer>0.7</answer>.`;

const UNREADABLE: Unreadable = {
  problem: 'no score in the reply',
  failure: 'gave no readable score',
  hint: 'Use an instruction-tuned vision-language model that ends its reply with <answer>score</answer>, or raise maxRetries',
};

/** The chat messages for one annotation: the rubric, then the image, the question and the response. */
function judgeMessages(request: AnnotationRequest, imageScale: number): ChatMessage[] {
  const { bytes, mime } = fileOf(request.example.image, imageScale);
  const text = `Question: ${request.example.question}

Response to judge:
${request.response}

Score the reasoning of this response. End with the score in <answer>score</answer>, a multiple of 0.1 from 0 to 1.`;
  return [
    { role: 'system', content: INSTRUCTIONS },
    {
      role: 'user',
      content: [
        { type: 'image_url', image_url: { url: `data:${mime};base64,${Buffer.from(bytes).toString('base64')}` } },
        { type: 'text', text },
      ],
    },
  ];
}

export class OpenAiCompatibleAnnotator implements Annotator {
  readonly name: string;
  private readonly client: OpenAiChatClient;
  private readonly concurrency: number;
  private readonly imageScale: number;

  constructor(options: OpenAiAnnotatorOptions) {
    const { concurrency = 4, imageScale = 8, ...chat } = options;
    this.client = new OpenAiChatClient({ ...chat, role: 'judge', field: (option) => `annotator.${option}` });
    checkInteger('concurrency', concurrency, 1, 1024);
    checkInteger('imageScale', imageScale, 1, 64);
    this.concurrency = concurrency;
    this.imageScale = imageScale;
    this.name = `llm:${options.model}`;
  }

  /**
   * Annotates with at most `concurrency` requests in flight; results in request order. Rejects on the first failure.
   * `onProgress(done, total)` after each completed request.
   */
  async annotate(items: AnnotationRequest[], onProgress?: (done: number, total: number) => void): Promise<Annotation[]> {
    const out = new Array<Annotation>(items.length);
    let next = 0;
    let done = 0;
    let failed = false;
    const worker = async () => {
      while (!failed && next < items.length) {
        const i = next++;
        try {
          out[i] = await this.annotateOne(items[i]!);
          onProgress?.(++done, items.length);
        } catch (err) {
          failed = true; // the other workers finish their request in flight and take no more
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, items.length) }, worker));
    return out;
  }

  private async annotateOne(request: AnnotationRequest): Promise<Annotation> {
    const { value, content } = await this.client.complete(judgeMessages(request, this.imageScale), parseJudgeScore, UNREADABLE);
    return { score: value, raw: content };
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

function checkInteger(field: string, value: number, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`annotator.${field}`, `must be an integer in [${min}, ${max}] (got ${JSON.stringify(value)})`);
  }
}
