/**
 * The ONNX engine's side of the prompt-level surface: Sophia's model has no chat template and one image slot, so a
 * prompt renders as `<bos>` + the user's text in its own tokenizer (`model/tokenizer.ts`) and the one image as
 * (C, S, S) pixels in [0, 1]; response rows become the token-level batches of `batch.ts`. Everything here is a pure
 * function of (model config, prompts, rows): the prompt-level calls give exactly the batches the token-level ones
 * would get from the same tokens and pixels.
 */
import { type PromptResponse, packGrpo, packReward, packSequences, packSft } from './batch';
import type { ModelConfig } from './model/config';
import { Tokenizer } from './model/tokenizer';
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
