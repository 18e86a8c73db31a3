/**
 * The ONNX engine's side of the prompt-level surface: Sophia's model has no chat template and one image slot, so a
 * prompt renders as `<bos>` + the user's text in its own tokenizer (`model/tokenizer.ts`) and the one image as
 * (C, S, S) pixels in [0, 1]; response rows become the token-level batches of `batch.ts`. Everything here is a pure
 * function of (model config, prompts, rows): the prompt-level calls give exactly the batches the token-level ones
 * would get from the same tokens and pixels. `fitPromptToModel` turns a prompt written for a real vision-language
 * model (a benchmark's question and images) into one this model can read.
 */
import { resizeBicubic } from '../datasets/images';
import { type PromptResponse, packGrpo, packReward, packSequences, packSft } from './batch';
import type { ModelConfig } from './model/config';
import { ALPHABET, TAGS, Tokenizer } from './model/tokenizer';
import type { BatchFor, ChatMessage, ChatPart, ChatPrompt, GrpoRow, LossSpec, ResponseBatch, ResponseRow, RewardRow, RgbImage, RowFor, SftBatch } from './types';

export const SOPHIA_TOKENIZER = new Tokenizer();

export interface RenderedPrompt {
  tokens: number[];
  /** (C, S, S) in [0, 1]. */
  pixels: Float32Array;
}

/** (3, H, W) planes in [0, 1] of a row-major RGB picture. */
export function rgbToPlanes(image: RgbImage, out: Float32Array, offset = 0): void {
  const plane = image.width * image.height;
  for (let p = 0; p < plane; p++) {
    out[offset + p] = image.rgb[p * 3]! / 255;
    out[offset + plane + p] = image.rgb[p * 3 + 1]! / 255;
    out[offset + 2 * plane + p] = image.rgb[p * 3 + 2]! / 255;
  }
}

/**
 * A chat prompt as Sophia's model reads it: exactly one `user` message whose parts are one image of the model's
 * size and text (joined in order). Anything else is refused with a `RangeError` naming the field.
 */
export function renderPrompt(prompt: ChatPrompt, config: ModelConfig, field: string): RenderedPrompt {
  const messages: readonly ChatMessage[] | undefined = prompt?.messages;
  const first = messages?.[0];
  if (messages?.length !== 1 || first?.role !== 'user') {
    throw new RangeError(`${field}.messages: Sophia's model reads exactly one user message (it has no chat template); got ${messages ? messages.map((m) => m.role).join(', ') || 'none' : 'none'}`);
  }
  const content = first.content;
  const parts: readonly ChatPart[] = typeof content === 'string' ? [{ type: 'text', text: content }] : content;
  let text = '';
  let image: RgbImage | undefined;
  parts.forEach((part, i) => {
    if (part.type === 'text') text += part.text;
    else if (part.type === 'image') {
      if (image) throw new RangeError(`${field}.messages[0].content[${i}]: Sophia's model reads one image per prompt`);
      const { width, height, rgb } = (image = part.image);
      const { size, channels } = config.image;
      if (channels !== 3 || width !== size || height !== size || rgb.length !== size * size * 3) {
        throw new RangeError(`${field}.messages[0].content[${i}].image: ${width}×${height} (${rgb.length} bytes); this model reads ${size}×${size} RGB images (model.imageSize)`);
      }
    } else throw new RangeError(`${field}.messages[0].content[${i}].type: ${JSON.stringify((part as { type: unknown }).type)} is not text or image`);
  });
  if (!image) throw new RangeError(`${field}.messages[0].content: Sophia's model needs one image part`);
  const pixels = new Float32Array(3 * image.width * image.height);
  rgbToPlanes(image, pixels);
  return { tokens: SOPHIA_TOKENIZER.prompt(text), pixels };
}

export function renderPrompts(prompts: readonly ChatPrompt[], config: ModelConfig): RenderedPrompt[] {
  if (prompts.length === 0) throw new RangeError('prompts: at least one prompt is needed');
  return prompts.map((p, i) => renderPrompt(p, config, `prompts[${i}]`));
}

/** A prompt as `fitPromptToModel` made it for Sophia's model, and what it had to leave out. */
export interface FittedPrompt {
  prompt: ChatPrompt;
  /** Whether the text was cut (its end left out) to leave room for the answer. */
  textCut: boolean;
  /** Image parts after the first, left out: the model reads one image per prompt. */
  imagesDropped: number;
}

const IN_ALPHABET = new Set(ALPHABET);
/** Splits text around the response-format tags, keeping them (the capture group): they stay single tokens. */
const TAG_SPLIT = new RegExp(`(${TAGS.join('|')})`); // (<, /, > and letters: nothing to escape)

/** One character as the alphabet has it: G–Z lowercased (A–F stay: they are option letters), anything else a space. */
function foldChar(ch: string): string {
  if (ch >= 'G' && ch <= 'Z') return ch.toLowerCase();
  return IN_ALPHABET.has(ch) ? ch : ' ';
}

/**
 * Text folded into the tokenizer's alphabet (`model/tokenizer.ts`): accents removed (Unicode NFKD without its
 * combining marks, so "é" reads "e" and "ﬁ" reads "fi"), uppercase G–Z lowercased, every other character outside the
 * alphabet (line breaks, tabs, "Ω", "°", "<" …) a space, runs of spaces one space, the ends trimmed. The four
 * response-format tags stay tags. The result always encodes.
 */
export function foldToAlphabet(text: string): string {
  return text
    .split(TAG_SPLIT)
    .map((piece, i) => (i % 2 === 1 ? piece : Array.from(piece.normalize('NFKD').replace(/\p{M}/gu, ''), foldChar).join('')))
    .join('')
    .replace(/ {2,}/g, ' ')
    .trim();
}

/**
 * The prompt tokens (after `<bos>`) left beside an answer of `maxNewTokens` in the model's `maxLength` positions.
 * Throws a `RangeError` naming maxTokens and model.maxLength when not even an empty prompt leaves that room.
 */
export function promptRoom(config: ModelConfig, maxNewTokens: number): number {
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new RangeError(`maxTokens must be an integer ≥ 1 (got ${maxNewTokens})`);
  const room = config.maxLength - 1 - maxNewTokens;
  if (room < 0) {
    throw new RangeError(`maxTokens ${maxNewTokens} does not fit the model's ${config.maxLength} text positions (model.maxLength), which <bos> and the prompt share with the answer: use at most ${config.maxLength - 1} answer tokens`);
  }
  return room;
}

/** `image` resized (bicubic, as dataset images are) to size × size. */
function squareImage(image: RgbImage, size: number, field: string): RgbImage {
  const { width, height, rgb } = image;
  if (!(width >= 1 && height >= 1) || rgb.length !== width * height * 3) throw new RangeError(`${field}: ${width}×${height} with ${rgb.length} bytes is not an RGB image (width · height · 3 bytes)`);
  // resizeBicubic works on RGBA pixels (datasets/images.ts): opaque alpha in, alpha dropped out.
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    rgba[i] = rgb[j]!;
    rgba[i + 1] = rgb[j + 1]!;
    rgba[i + 2] = rgb[j + 2]!;
    rgba[i + 3] = 255;
  }
  const resized = resizeBicubic({ width, height, rgba }, size, size);
  const out = new Uint8Array(size * size * 3);
  for (let i = 0, j = 0; j < out.length; i += 4, j += 3) {
    out[j] = resized.rgba[i]!;
    out[j + 1] = resized.rgba[i + 1]!;
    out[j + 2] = resized.rgba[i + 2]!;
  }
  return { width: size, height: size, rgb: out };
}

/**
 * A prompt written for a real vision-language model (several images of any size, any text, maybe several messages),
 * turned into one Sophia's model reads (`renderPrompt` accepts it): one user message holding the first image,
 * resized to the model's size × size, then the text of every message in order, folded into the alphabet
 * (`foldToAlphabet`) and cut (its beginning kept) so that `<bos>`, the text and `maxNewTokens` of answer fit the
 * model's `maxLength` positions. Further images are left out and counted: the model has one image slot. This is an
 * adaptation so that such prompts can be run at all, not a faithful rendering: the model sees a thumbnail and a
 * truncated, lowercased question. Throws a `RangeError` for a prompt without an image, and (`promptRoom`) when
 * `maxNewTokens` leaves no room for any prompt.
 */
export function fitPromptToModel(prompt: ChatPrompt, config: ModelConfig, maxNewTokens: number): FittedPrompt {
  const room = promptRoom(config, maxNewTokens);
  if (config.image.channels !== 3) throw new RangeError(`model.image.channels: ${config.image.channels}; prompts carry RGB images (3 channels)`);
  let image: RgbImage | undefined;
  let imagesDropped = 0;
  let text = '';
  (prompt?.messages ?? []).forEach((message, m) => {
    const parts: readonly ChatPart[] = typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content;
    parts.forEach((part, i) => {
      if (part.type === 'text') text += part.text;
      else if (part.type === 'image') {
        if (image) imagesDropped++;
        else image = squareImage(part.image, config.image.size, `prompt.messages[${m}].content[${i}].image`);
      } else throw new RangeError(`prompt.messages[${m}].content[${i}].type: ${JSON.stringify((part as { type: unknown }).type)} is not text or image`);
    });
  });
  if (!image) throw new RangeError("prompt: no image part; Sophia's model reads one image per prompt");
  const folded = foldToAlphabet(text);
  const tokens = SOPHIA_TOKENIZER.encode(folded);
  const textCut = tokens.length > room;
  // Cut by tokens, not characters: a tag is one token, and decoding writes it back whole.
  const fitted = textCut ? SOPHIA_TOKENIZER.decode(tokens.slice(0, room)) : folded;
  return {
    prompt: { messages: [{ role: 'user', content: [{ type: 'image', image }, { type: 'text', text: fitted }] }] },
    textCut,
    imagesDropped,
  };
}

/** The rows' (prompt tokens, response) pairs and their images, one per row, in row order. */
type Packed<R> = Omit<R, 'prompt'> & PromptResponse & { prompt: number[] };

function rowInputs<R extends ResponseRow>(batch: ResponseBatch<R>, config: ModelConfig): { rows: Packed<R>[]; images: Float32Array; pixels: number } {
  const rendered = renderPrompts(batch.prompts, config);
  if (batch.rows.length === 0) throw new RangeError('rows: at least one row is needed');
  const pixels = 3 * config.image.size ** 2;
  const images = new Float32Array(batch.rows.length * pixels);
  const rows = batch.rows.map((row, r) => {
    const prompt = rendered[row.prompt];
    if (!Number.isInteger(row.prompt) || !prompt) throw new RangeError(`rows[${r}].prompt: ${row.prompt} is not the index of one of the ${rendered.length} prompts`);
    for (let j = 0; j < row.response.length; j++) {
      const id = row.response[j]!;
      if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) throw new RangeError(`rows[${r}].response[${j}]: token id ${id} is outside the model's vocabulary [0, ${config.vocabSize})`);
    }
    images.set(prompt.pixels, r * pixels);
    return { ...row, prompt: prompt.tokens };
  });
  return { rows, images, pixels };
}

/** The SFT batch of rows: loss on every response token. */
export function sftBatchOf(batch: ResponseBatch, config: ModelConfig): SftBatch & { promptLengths: number[] } {
  const { rows, images, pixels } = rowInputs(batch, config);
  return { ...packSft(rows, images, pixels), promptLengths: rows.map((r) => r.prompt.length) };
}

/** The token-level batch a loss needs for the rows. */
export function lossBatchOf<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, config: ModelConfig): BatchFor<L> {
  const { rows, images, pixels } = rowInputs(batch as ResponseBatch, config);
  switch (loss.kind) {
    case 'sft':
      return packSft(rows, images, pixels) as BatchFor<L>;
    case 'grpo':
      return packGrpo(rows as Packed<GrpoRow>[], images, pixels) as BatchFor<L>;
    case 'rm':
      return packReward(rows as Packed<RewardRow>[], images, pixels) as BatchFor<L>;
    default:
      throw new TypeError(`loss.kind: ${JSON.stringify((loss as { kind: unknown }).kind)} is not sft, grpo or rm`);
  }
}

/** Whole sequences (prompt ++ response) for scoring. */
export function scoreBatchOf(batch: ResponseBatch, config: ModelConfig) {
  const { rows, images, pixels } = rowInputs(batch, config);
  return packSequences(
    rows.map((r) => [...r.prompt, ...Array.from(r.response)]),
    images,
    pixels,
  );
}
