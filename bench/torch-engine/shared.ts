/**
 * What the torch-engine benchmarks share (bench/torch-engine.ts, bench/checkpoint-stall.ts): the random Qwen2.5-VL
 * they build (model.py), their batch and its flags' defaults, the engine's device, dtype and threads, the AdamW
 * settings, and a timer.
 */
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Rng } from '../../engine/rng';
import { torchVenvPython } from '../../engine/testing/tiny-qwen';
import type { AdamWSettings, ChatPrompt, ResponseBatch } from '../../engine/types';

export const ADAMW: AdamWSettings = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };

/** A positive integer flag, or `fallback` when it is not given; else a RangeError naming the flag. */
export function count(flag: string, value: string | undefined, fallback: number, min = 1): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${flag} must be an integer >= ${min} (got ${JSON.stringify(value)})`);
  return n;
}

/** The batch's shape flags (`--rows`, `--image-size`, `--response-tokens`) and their defaults (larger on a GPU). */
export interface BatchShape {
  rows: number;
  image: number;
  response: number;
}

export function batchShape(flags: { rows?: string; 'image-size'?: string; 'response-tokens'?: string }, gpu: boolean): BatchShape {
  return {
    rows: count('rows', flags.rows, 8),
    image: count('image-size', flags['image-size'], gpu ? 448 : 112, 28),
    response: count('response-tokens', flags['response-tokens'], gpu ? 512 : 32),
  };
}

/** The engine's `--device`, `--dtype` and `--threads`: cuda and bfloat16 for the GPU shapes, else cpu and float32. */
export function torchSettings(flags: { device?: string; dtype?: string; threads?: string }, gpu: boolean): { device: string; dtype: 'float32' | 'bfloat16'; threads: number } {
  const dtype = flags.dtype ?? (gpu ? 'bfloat16' : 'float32');
  if (dtype !== 'float32' && dtype !== 'bfloat16') throw new RangeError(`--dtype must be float32 or bfloat16 (got ${JSON.stringify(dtype)})`);
  return { device: flags.device ?? (gpu ? 'cuda' : 'cpu'), dtype, threads: count('threads', flags.threads, Math.min(2, cpus().length)) };
}

export interface ModelInfo {
  dir: string;
  name: string;
  dtype: string;
  parameters: number;
  text_matrix_parameters: number;
  vision_parameters: number;
  end_token_id: number;
  gpu?: string;
}

/** bench/torch-engine/model.py: a random model of a size or published shape, in `dir`. */
export function buildModel(dir: string, which: { size: string } | { shape: string }, dtype?: string): ModelInfo {
  const flag = 'size' in which ? ['--size', which.size] : ['--shape', which.shape];
  const out = execFileSync(torchVenvPython(), [path.join(__dirname, 'model.py'), dir, ...flag, ...(dtype ? ['--dtype', dtype] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop()!) as ModelInfo;
}

/**
 * The benchmarks' batch: `rows` prompts of one seeded `image`² RGB image and a question, one response of random byte
 * tokens each (`response` tokens with the end token), as a `ResponseBatch` and as the parts a baseline needs.
 */
export function batchFor(model: ModelInfo, shape: BatchShape): { batch: ResponseBatch; prompts: ChatPrompt[]; texts: string[]; responses: number[][] } {
  const { rows, image, response } = shape;
  const rng = new Rng(7);
  const texts = Array.from({ length: rows }, (_, i) => `Picture ${i}: how many red shapes are there, and what is their total area? Think step by step.`);
  const prompts = texts.map((text): ChatPrompt => {
    const rgb = Uint8Array.from({ length: image * image * 3 }, () => rng.nextU32() & 0xff);
    return { messages: [{ role: 'user', content: [{ type: 'image', image: { width: image, height: image, rgb } }, { type: 'text', text }] }] };
  });
  // Byte-level tokens (ids below 256 are the BPE's bytes: real tokens, never special), then the end token.
  const responses = texts.map(() => [...Array.from({ length: response - 1 }, () => rng.nextU32() % 256), model.end_token_id]);
  return { batch: { prompts, rows: responses.map((r, i) => ({ prompt: i, response: r })) }, prompts, texts, responses };
}

export async function timed<T>(call: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await call();
  return { ms: performance.now() - start, value };
}
