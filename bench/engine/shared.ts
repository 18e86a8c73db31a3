import { packSft } from '../../engine/batch';
import type { ModelConfig } from '../../engine/model/config';
import { Rng } from '../../engine/rng';
import type { AdamWSettings, SampleRequest, SftBatch } from '../../engine/types';

/** The data both bench/engine workers read: one SFT batch, AdamW settings, a sampling request. */
export interface BenchBatch {
  batchSize: number;
  seqLen: number;
  images: number[];
  tokens: number[];
  positions: number[];
  attentionMask: number[];
  targets: number[];
  lossMask: number[];
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; maxGradNorm: number };
  sample: {
    images: number[];
    prompts: number[][];
    n: number;
    temperature: number;
    maxTokens: number;
    stopToken: number;
  };
}

/** One line on a worker's stdin. Replies come one JSON line each on its stdout, after a first `{"ready": true}`. */
export type WorkerCommand = { cmd: 'train' } | { cmd: 'sample'; seed: number } | { cmd: 'end' };

/** A worker's answer to `train` (one AdamW step, timed), `sample` (one sampling request, timed) and `end`. */
export type WorkerReply = { ms: number; loss: number } | { tokens: number; seconds: number } | { peakRssMB: number };

/** The benchmark's vocabulary size (the presets' models are built with it). */
export const VOCAB = 64;

/**
 * Pause before every timed step or request (bench/engine, engine-ab, engine-profile): onnxruntime's training
 * threads spin for ~30 ms after a run and OpenMP's briefly too, which would take a core from whatever runs next;
 * pauses of 0, 90 and 300 ms gave each side the same medians.
 */
export const SETTLE_MS = 150;

/**
 * The benchmark's data for a model: one SFT batch (B = 32 rows, 16 prompt + 32 response tokens, plus the image
 * tokens), AdamW with clipping and decay, and a sampling request (8 prompts × 8 samples, up to 48 new tokens).
 * Seeded: the same every time.
 */
export function benchSpec(config: ModelConfig): BenchBatch {
  const rng = new Rng(7);
  const pixels = config.image.channels * config.image.size ** 2;
  const rows = Array.from({ length: 32 }, () => ({
    prompt: Array.from({ length: 16 }, () => rng.nextU32() % VOCAB),
    response: Array.from({ length: 33 }, () => rng.nextU32() % VOCAB),
  }));
  const images = Float32Array.from({ length: 32 * pixels }, () => rng.nextFloat());
  const sft = packSft(rows, images, pixels);
  return {
    batchSize: sft.batchSize,
    seqLen: sft.seqLen,
    images: Array.from(images),
    tokens: Array.from(sft.tokens),
    positions: Array.from({ length: sft.batchSize * sft.seqLen }, (_, i) => i % sft.seqLen),
    attentionMask: Array.from(sft.attentionMask),
    targets: Array.from(sft.targets),
    lossMask: Array.from(sft.lossMask),
    adamw: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 },
    sample: {
      images: Array.from({ length: 8 * pixels }, () => rng.nextFloat()),
      prompts: Array.from({ length: 8 }, () => Array.from({ length: 16 }, () => rng.nextU32() % (VOCAB - 1))),
      n: 8,
      temperature: 1,
      maxTokens: 48,
      stopToken: VOCAB - 1,
    },
  };
}

/** The spec's training batch, AdamW settings and sampling request as the engine takes them. */
export function engineInputs(spec: BenchBatch): { batch: SftBatch; adamw: AdamWSettings; request: Omit<SampleRequest, 'seed'> } {
  const s = spec.sample;
  return {
    batch: {
      batchSize: spec.batchSize,
      seqLen: spec.seqLen,
      images: Float32Array.from(spec.images),
      tokens: Int32Array.from(spec.tokens),
      positions: Int32Array.from(spec.positions),
      attentionMask: Uint8Array.from(spec.attentionMask),
      targets: Int32Array.from(spec.targets),
      lossMask: Float32Array.from(spec.lossMask),
    },
    adamw: spec.adamw,
    request: {
      images: Float32Array.from(s.images),
      prompts: s.prompts.map((p) => Int32Array.from(p)),
      n: s.n,
      temperature: s.temperature,
      topP: 1,
      maxTokens: s.maxTokens,
      stopToken: s.stopToken,
    },
  };
}
