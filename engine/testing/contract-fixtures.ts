/**
 * What the prompt-level engine contract (engine.contract.ts) needs of an engine, and the prompts and responses it
 * trains and samples on. A fixture is plain JSON (the exact-resume check hands it to a child process): how
 * `createEngine` makes the engine, the policy and reward models it starts from, and what it can read.
 *
 * Prompts and responses use only what every engine can encode: lowercase letters, digits, spaces, `+ = . ?` and the
 * tags <think></think><answer></answer> (the ONNX engine's tokenizer knows no more), and one square RGB image of the
 * fixture's size per prompt (the ONNX engine reads exactly its model's `image.size`).
 */
import type { EngineOptions } from '../factory';
import type { ModelConfig } from '../model/config';
import { Tokenizer } from '../model/tokenizer';
import { Rng } from '../rng';
import type { AdamWSettings, ChatPrompt, Engine, GrpoRow, ModelSpec, ResponseBatch, ResponseRow, RewardRow, RgbImage } from '../types';

export interface ModelFixture {
  /** How `createEngine` makes the engine. */
  options: EngineOptions;
  policy: ModelSpec;
  reward: ModelSpec;
  /** A model this engine does not run: `init` refuses it with a TypeError naming `model`. */
  foreign: ModelSpec;
  /** Images are `imageSize` × `imageSize` RGB. */
  imageSize: number;
  /** |generate's logprob − responseLogprobs'| allowed (the same tokens, the same weights). */
  logprobTolerance: number;
  /**
   * Whether saving the same state twice gives the same bytes, file for file (then states are compared as files;
   * otherwise through outputs, which must then be equal bit for bit).
   */
  byteEqualFiles: boolean;
}

/** Sophia's micro model at the prompt level: its tokenizer's vocabulary, 32 positions, 4 × 4 images. */
export function promptMicroConfig(kind: ModelConfig['kind'] = 'policy'): ModelConfig {
  return { kind, vocabSize: new Tokenizer().vocabSize, maxLength: 32, layers: 1, width: 32, heads: 2, mlpRatio: 2, image: { size: 4, channels: 3, patch: 2 }, initStd: 0.02 };
}

export const ONNX_CONTRACT_FIXTURE: ModelFixture = {
  options: { kind: 'onnx' },
  policy: promptMicroConfig('policy'),
  reward: promptMicroConfig('reward'),
  foreign: { kind: 'policy', pretrained: '/nonexistent/hf-model' },
  imageSize: 4,
  logprobTolerance: 5e-5,
  byteEqualFiles: true,
};

export const CONTRACT_ADAMW: AdamWSettings = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 };

/** A square RGB picture with some structure, a function of (size, seed). */
export function picture(size: number, seed: number): RgbImage {
  const rng = new Rng(seed);
  const rgb = new Uint8Array(size * size * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (((i % 3) * 90 + seed * 40) % 256 + (rng.nextU32() % 60)) % 256;
  return { width: size, height: size, rgb };
}

export function prompt(text: string, size: number, seed: number): ChatPrompt {
  return { messages: [{ role: 'user', content: [{ type: 'image', image: picture(size, seed) }, { type: 'text', text }] }] };
}

/** Two prompts with images; short, so that prompt + response fits the ONNX micro model's 32 positions. */
export function contractPrompts(size: number): ChatPrompt[] {
  return [prompt('how many?', size, 1), prompt('add 2+3.', size, 2)];
}

/** Responses of 2 to 11 tokens (the ONNX tokenizer's count) for the memorise batch. */
export const MEMORISE_TEXTS = ['<answer>3</answer>', '<think>2+3=5</think><answer>5</answer>', 'four', '<answer>12</answer>'];

/** Four rows over two prompts: prompt 0, 1, 0, 1 answered with MEMORISE_TEXTS (each with the end token). */
export async function memoriseBatch(engine: Engine, size: number): Promise<ResponseBatch> {
  const responses = await engine.encodeResponses(MEMORISE_TEXTS);
  return { prompts: contractPrompts(size), rows: responses.map((response, i) => ({ prompt: i % 2, response })) };
}

/** GRPO rows over the memorise batch: old/ref logprobs near a young model's, mixed advantages. */
export function grpoRows(rows: readonly ResponseRow[]): GrpoRow[] {
  return rows.map((row, i) => ({
    ...row,
    oldLogprobs: Array.from(row.response, (_, j) => -2.4 - 0.05 * ((i + j) % 3)),
    refLogprobs: Array.from(row.response, (_, j) => -2.5 + 0.04 * ((i * j) % 4)),
    advantage: [1, -0.5, 0.8, -1.2][i % 4]!,
  }));
}

export function rewardRows(rows: readonly ResponseRow[]): RewardRow[] {
  return rows.map((row, i) => ({ ...row, score: [0.1, 0.9, 0.4, 0.7][i % 4]! }));
}

const WORDS = ['one', 'two', 'three', 'four', 'five', 'red', 'blue', 'big'];

/** A batch that depends only on the step index (what "the same data order" means in resume checks). */
export async function batchForStep(engine: Engine, size: number, step: number): Promise<ResponseBatch> {
  const rng = new Rng(1000 + step);
  const pick = () => WORDS[rng.nextU32() % WORDS.length]!;
  const prompts = [prompt(`what is ${pick()}?`, size, 10 + step), prompt(`${pick()} ${pick()}?`, size, 20 + step)];
  const texts = [`<answer>${pick()}</answer>`, pick(), `${rng.nextU32() % 10}+${rng.nextU32() % 10}`];
  const responses = await engine.encodeResponses(texts);
  return { prompts, rows: responses.map((response, i) => ({ prompt: i % 2, response })) };
}

/** `steps` SFT steps on the step-indexed batches, from the engine's own step on. */
export async function trainOnStepBatches(engine: Engine, size: number, steps: number): Promise<void> {
  for (let i = 0; i < steps; i++) {
    const result = await engine.trainStepResponses(await batchForStep(engine, size, engine.step()), { kind: 'sft' }, CONTRACT_ADAMW);
    if (!result.applied) throw new Error(`step ${engine.step()} was not applied`);
  }
}
