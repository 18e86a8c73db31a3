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
