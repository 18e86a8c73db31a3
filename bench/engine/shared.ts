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
  steps: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; maxGradNorm: number };
  sample: {
    images: number[];
    prompts: number[][];
    n: number;
    temperature: number;
    maxTokens: number;
    stopToken: number;
    /** Untimed calls first (session creation, JIT tier-up on the Sophia side), then timed calls; median reported. */
    warmupCalls: number;
    timedCalls: number;
  };
}

export interface WorkerResult {
  trainStepMs: number[];
  firstLoss: number;
  sampleTokensPerSec: number;
  generatedTokens: number;
  peakRssMB: number;
}
