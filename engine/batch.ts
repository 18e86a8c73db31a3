/**
 * Packing (prompt, response) token sequences into the engine's flat batches.
 *
 * Each row is `prompt ++ response`, right-padded. Inputs are the sequence without its last token; targets are
 * the sequence shifted by one; the loss mask is 1 exactly where the target is a response token. Images are
 * copied row by row.
 */
import type { GrpoBatch, RewardBatch, SequenceBatch, SftBatch } from './types';

export interface PromptResponse {
  prompt: ArrayLike<number>;
  response: ArrayLike<number>;
}

/** Rows for an SFT batch; `pixels` = values per image (C·S·S), `images` holds one image per row. */
export function packSft(rows: readonly PromptResponse[], images: Float32Array, pixels: number, seqLen?: number): SftBatch {
  const b = rows.length;
  if (b === 0) throw new RangeError('packSft: no rows');
  if (images.length !== b * pixels) throw new RangeError(`packSft: images has ${images.length} values, expected ${b} × ${pixels}`);
  const longest = Math.max(...rows.map((r) => r.prompt.length + r.response.length - 1));
  const t = seqLen ?? longest;
  if (t < longest) throw new RangeError(`packSft: seqLen ${t} is shorter than the longest row (${longest})`);
  const tokens = new Int32Array(b * t);
  const targets = new Int32Array(b * t);
  const attentionMask = new Uint8Array(b * t);
  const lossMask = new Float32Array(b * t);
  rows.forEach((row, r) => {
    if (row.prompt.length === 0) throw new RangeError(`packSft: row ${r} has an empty prompt`);
    const full = [...Array.from(row.prompt), ...Array.from(row.response)];
    for (let c = 0; c < full.length - 1; c++) {
      tokens[r * t + c] = full[c]!;
      targets[r * t + c] = full[c + 1]!;
      attentionMask[r * t + c] = 1;
      lossMask[r * t + c] = c + 1 >= row.prompt.length ? 1 : 0;
    }
  });
  return { batchSize: b, seqLen: t, images, tokens, attentionMask, targets, lossMask };
}

/** A GRPO batch: an SFT packing plus per-token old/ref logprobs of the response and one advantage per row. */
export function packGrpo(
  rows: readonly (PromptResponse & { oldLogprobs: ArrayLike<number>; refLogprobs: ArrayLike<number>; advantage: number })[],
  images: Float32Array,
  pixels: number,
  seqLen?: number,
): GrpoBatch {
  const sft = packSft(rows, images, pixels, seqLen);
  const { batchSize: b, seqLen: t } = sft;
  const oldLogprobs = new Float32Array(b * t);
  const refLogprobs = new Float32Array(b * t);
  rows.forEach((row, r) => {
    if (row.oldLogprobs.length !== row.response.length || row.refLogprobs.length !== row.response.length) {
      throw new RangeError(`packGrpo: row ${r} needs one old and one ref logprob per response token (${row.response.length})`);
    }
    // The target at column c is full[c + 1]; response token j sits at full[prompt + j], i.e. column prompt + j − 1.
    for (let j = 0; j < row.response.length; j++) {
      oldLogprobs[r * t + row.prompt.length + j - 1] = row.oldLogprobs[j]!;
      refLogprobs[r * t + row.prompt.length + j - 1] = row.refLogprobs[j]!;
    }
  });
  return { ...sft, oldLogprobs, refLogprobs, advantages: Float32Array.from(rows.map((r) => r.advantage)) };
}

/** A reward-model batch: whole sequences (prompt ++ response) with a target score each. */
export function packReward(rows: readonly (PromptResponse & { score: number })[], images: Float32Array, pixels: number, seqLen?: number): RewardBatch {
  const seq = packSequences(rows.map((r) => [...Array.from(r.prompt), ...Array.from(r.response)]), images, pixels, seqLen);
  return { ...seq, scoreTargets: Float32Array.from(rows.map((r) => r.score)) };
}

/** Right-padded token rows. */
export function packSequences(rows: readonly ArrayLike<number>[], images: Float32Array, pixels: number, seqLen?: number): SequenceBatch {
  const b = rows.length;
  if (b === 0) throw new RangeError('packSequences: no rows');
  if (images.length !== b * pixels) throw new RangeError(`packSequences: images has ${images.length} values, expected ${b} × ${pixels}`);
  const longest = Math.max(...rows.map((r) => r.length));
  const t = seqLen ?? longest;
  if (t < longest) throw new RangeError(`packSequences: seqLen ${t} is shorter than the longest row (${longest})`);
  const tokens = new Int32Array(b * t);
  const attentionMask = new Uint8Array(b * t);
  rows.forEach((row, r) => {
    tokens.set(Array.from(row), r * t);
    attentionMask.fill(1, r * t, r * t + row.length);
  });
  return { batchSize: b, seqLen: t, images, tokens, attentionMask };
}
