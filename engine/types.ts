/**
 * The engine protocol: the compute seam between Sophia's orchestration and whatever runs the model
 * (DESIGN.md §2). Workflows and activities talk only to `Engine`; the built-in implementation is
 * `OnnxEngine` (ONNX graphs on onnxruntime-node), and a PyTorch engine for real VLMs can implement the same
 * interface later without any change above it.
 *
 * Abstractions:
 *  - `Engine`: one model (policy or reward model) with its optimizer state, loaded once and reused;
 *  - batches (`SequenceBatch` and its loss-specific extensions): flat, row-major typed arrays with explicit
 *    sizes, so they cross process and language boundaries without reshaping;
 *  - `LossSpec`: which loss `forwardBackward`/`trainStep` computes (`sft`, `grpo`, `rm`), with its
 *    hyperparameters as data;
 *  - `AdamWSettings`: the optimizer step's hyperparameters (schedules are the caller's: pass this step's lr);
 *  - `SampleRequest`/`SampleResult`: batched sampling of G responses per prompt with per-token logprobs.
 *
 * Contract every implementation keeps:
 *  - Determinism: the same state and inputs give the same outputs; `sample` with the same seed gives the same
 *    tokens. `saveState` captures everything (weights, AdamW moments, step, RNG, model config) so that training
 *    N steps equals training k, saving, loading into a fresh process, and training N − k — bit for bit.
 *  - Gradients from successive `forwardBackward` calls are averaged until `optimStep` applies them.
 *  - Non-finite loss or gradients are reported (`applied: false`), never applied.
 *  - Bad input (shapes, token ids out of range, sequences longer than the model allows) throws a `RangeError`
 *    or `TypeError` naming the field, before any state changes.
 */
import type { ModelConfig } from './model/config';

/** A batch of image + token sequences. B rows of T tokens (padded), images of C × S × S pixels. */
export interface SequenceBatch {
  batchSize: number;
  seqLen: number;
  /** (B, C, S, S) pixels in [0, 1]. */
  images: Float32Array;
  /** (B, T) token ids. */
  tokens: Int32Array;
  /** (B, T) 1 = real token, 0 = padding (left or right). */
  attentionMask: Uint8Array;
  /** (B, T) text position of each token; default: the number of real tokens before it in its row. */
  positions?: Int32Array;
}

/** Next-token targets for each position, and which positions count. */
export interface TargetBatch extends SequenceBatch {
  /** (B, T) the token that should follow each position. */
  targets: Int32Array;
}

export interface SftBatch extends TargetBatch {
  /** (B, T) 1 where the target counts towards the loss (response tokens). */
  lossMask: Float32Array;
}

export interface GrpoBatch extends SftBatch {
  /** (B, T) log π_old(target) from sampling. */
  oldLogprobs: Float32Array;
  /** (B, T) log π_ref(target) from the frozen reference model. */
  refLogprobs: Float32Array;
  /** (B) advantage of each sequence, applied to all its response tokens. */
  advantages: Float32Array;
}

export interface RewardBatch extends SequenceBatch {
  /** (B) target scores in [0, 1]. */
  scoreTargets: Float32Array;
}

export type LossSpec =
  | { kind: 'sft' }
  | {
      kind: 'grpo';
      /** PPO clip ε (paper: 0.2). */
      clipEps: number;
      /** KL coefficient β (paper: 0.04). */
      klCoef: number;
      /** Entropy bonus coefficient (1e-3). */
      entropyCoef: number;
      /** The sampling temperature: logits are divided by it, as when the old logprobs were computed. */
      temperature: number;
    }
  | { kind: 'rm' };

/** The batch type each loss needs. */
export type BatchFor<L extends LossSpec> = L extends { kind: 'sft' } ? SftBatch : L extends { kind: 'grpo' } ? GrpoBatch : RewardBatch;

export interface AdamWSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (paper: 0.01), applied to weight matrices and embeddings only. */
  weightDecay: number;
  /** Global gradient-norm clip (paper: 4). */
  maxGradNorm: number;
}

export const DEFAULT_ADAMW: Omit<AdamWSettings, 'lr'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 4 };

export interface ForwardBackwardResult {
  loss: number;
  metrics: Record<string, number>;
  /** False when the loss was NaN/Inf: its gradients were not accumulated. */
  finite: boolean;
}

export interface OptimStepResult {
  /** Optimizer steps taken so far (after this one, if applied). */
  step: number;
  gradNorm: number;
  /** False when the gradients were not finite: parameters and moments are unchanged. */
  applied: boolean;
}

export type TrainStepResult = ForwardBackwardResult & OptimStepResult;

export interface SampleRequest {
  /** (P, C, S, S) one image per prompt. */
  images: Float32Array;
  /** P prompts of token ids (any lengths; left-padded internally). */
  prompts: Int32Array[];
  /** Samples per prompt (G). */
  n: number;
  /** 0 = greedy. */
  temperature: number;
  /** Nucleus sampling mass in (0, 1]. */
  topP: number;
  /** Most tokens to generate per sample. */
  maxTokens: number;
  seed: number;
  /** Generation stops after this token (it is included in the output). */
  stopToken: number;
}

export interface SampledSequence {
  promptIndex: number;
  /** Generated tokens (without the prompt). */
  tokens: Int32Array;
  /** log π(token) of each generated token under the temperature-scaled distribution (before top-p). */
  logprobs: Float32Array;
  /** True when it ended with the stop token, false when it hit maxTokens. */
  stopped: boolean;
}

export interface SampleResult {
  /** P × n sequences, prompt-major: all samples of prompt 0, then prompt 1, … */
  sequences: SampledSequence[];
  /** Tokens generated in total. */
  generatedTokens: number;
}

export interface EngineInfo {
  /** e.g. "onnxruntime 1.30.0 (cpu)". */
  description: string;
  executionProvider: string;
}

export interface Engine {
  readonly info: EngineInfo;
  /** Fresh weights from `seed`, zero optimizer state, step 0. */
  init(config: ModelConfig, seed: number): Promise<void>;
  config(): ModelConfig;
  /** Optimizer steps taken. */
  step(): number;
  forwardBackward<L extends LossSpec>(batch: BatchFor<L>, loss: L): Promise<ForwardBackwardResult>;
  optimStep(settings: AdamWSettings): Promise<OptimStepResult>;
  /** forwardBackward + optimStep in one pass (the fast path when nothing is accumulated). */
  trainStep<L extends LossSpec>(batch: BatchFor<L>, loss: L, settings: AdamWSettings): Promise<TrainStepResult>;
  sample(request: SampleRequest): Promise<SampleResult>;
  /** (B, T) log π(target) at `temperature` (policy models). */
  logprobs(batch: TargetBatch, temperature: number): Promise<Float32Array>;
  /** (B) scores in [0, 1] at each row's last real token (reward models). */
  score(batch: SequenceBatch): Promise<Float32Array>;
  saveState(): Promise<Uint8Array>;
  loadState(bytes: Uint8Array): Promise<void>;
  /** Frees sessions and buffers; the engine cannot be used afterwards. */
  dispose(): Promise<void>;
}
