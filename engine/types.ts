/**
 * The engine protocol: the compute seam between Sophia's orchestration and whatever runs the model
 * (docs/architecture.md §2). Workflows and activities talk only to `Engine`; the implementations are `OnnxEngine`
 * (Sophia's own architecture as ONNX graphs on onnxruntime-node) and the PyTorch engine (Hugging Face models such
 * as Qwen2.5-VL in a Python process, `torch/`).
 *
 * Abstractions:
 *  - `Engine`: one model (policy or reward model) with its optimizer state, loaded once and reused;
 *  - the prompt-level surface every engine implements and the pipeline uses: prompts are chat messages with
 *    images (`ChatPrompt`), rendered by the engine with its model's own template and image processing; responses
 *    are the model's token ids (`ResponseRow`), from `generate` or `encodeResponses`; callers grade the text and
 *    compute rewards and advantages themselves;
 *  - `TokenEngine` (the ONNX engine): token-level batches (`SequenceBatch` and its loss-specific extensions):
 *    flat, row-major typed arrays with explicit sizes, which its prompt-level methods pack;
 *  - `LossSpec`: which loss `forwardBackward`/`trainStep` computes (`sft`, `grpo`, `rm`), with its
 *    hyperparameters as data;
 *  - `AdamWSettings`: the optimizer step's hyperparameters (schedules are the caller's: pass this step's lr);
 *  - `SampleRequest`/`SampleResult`: batched sampling of G responses per prompt with per-token logprobs.
 *
 * Contract every implementation keeps:
 *  - Determinism: the same state and inputs give the same outputs; `sample` with the same seed gives the same
 *    tokens. `saveState` captures everything (weights, AdamW moments, step, RNG, model config) so that training
 *    N steps equals training k, saving, loading into a fresh process, and training N − k — bit for bit.
 *  - State is a set of named files (`EngineFile`, in memory or on local disk): whatever the engine's native
 *    checkpoint format is (the ONNX engine: one `state.bin`; a Hugging Face engine: safetensors shards, config and
 *    processor files). Callers store and return the files as they are and never read them: only the engine that
 *    wrote them knows their bytes. `loadState` takes either kind of file, whichever kind the engine saved.
 *  - Gradients from successive `forwardBackward` calls are combined as a weighted mean, Σ wᵢ·gᵢ / Σ wᵢ (weight 1
 *    by default: their plain mean), until `optimStep` applies them. A token-mean loss split into micro-batches
 *    passes each micro-batch's number of loss tokens as its weight, so the step equals one over the whole batch.
 *  - Non-finite loss or gradients are reported (`applied: false`), never applied.
 *  - Bad input (shapes, token ids out of range, sequences longer than the model allows) throws a `RangeError`
 *    or `TypeError` naming the field, before any state changes.
 * `engine.contract.ts` checks all of this, through this interface alone, for an engine made by `createEngine`.
 */
import type { ModelConfig, ModelKind } from './model/config';

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
      /**
       * Truncated importance sampling of the sampler–trainer mismatch (torch engine; the ONNX engine samples with
       * its training graphs and refuses it): each token's policy term weighted by min(π_trainer/π_sampler, tisCap),
       * the PPO ratio taken against the trainer's own policy (engine/README.md). Absent: off.
       */
      tisCap?: number;
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

/** Options of one `forwardBackward` call. */
export interface ForwardBackwardOptions {
  /**
   * This call's weight in the accumulated gradient (finite, > 0; default 1). `optimStep` applies Σ wᵢ·gᵢ / Σ wᵢ
   * over the calls since the last step. For a loss that is a mean over tokens (sft, grpo) pass the micro-batch's
   * number of loss tokens: the result is the token mean over all the micro-batches, as if they were one batch.
   */
  weight?: number;
}

/**
 * One named file of a saved engine state. Names are plain file names (no `/`), unique within a state; the bytes
 * are the engine's own format, held in memory (`data`) or in a file on this machine's disk (`path`, `size` bytes):
 * a Hugging Face model's state (a 7B policy with its AdamW moments is ~75 GB) never passes through memory. Read
 * either kind with `engine/state-files.ts`.
 */
export type EngineFile = InMemoryEngineFile | OnDiskEngineFile;

export interface InMemoryEngineFile {
  name: string;
  data: Uint8Array;
}

export interface OnDiskEngineFile {
  name: string;
  /** Absolute path of the file on this machine. */
  path: string;
  size: number;
}

/** Options of `saveState`. */
export interface SaveStateOptions {
  /**
   * A local folder, absent or empty, that the engine may write the state's files into and return as
   * `OnDiskEngineFile`s instead of holding them in memory. The caller owns the folder and removes it when done.
   * An engine whose states are small (the ONNX engine's one `state.bin`) may ignore it and return bytes.
   */
  dir?: string;
}

/** Options of `loadState`. */
export interface LoadStateOptions {
  /**
   * Load the weights (and model config and RNG) but start the optimizer afresh: zero AdamW moments, step 0 — an
   * RL stage starting from the SFT policy.
   */
  freshOptimizer?: boolean;
}

// ---- prompt-level surface (what the pipeline uses; every engine implements it) ---------------------------

/** An RGB picture: `height` rows of `width` pixels, 3 bytes per pixel, row-major. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

export type ChatPart = { type: 'text'; text: string } | { type: 'image'; image: RgbImage };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | readonly ChatPart[];
}

/**
 * A prompt as chat messages with images. The engine renders it with its model's own template and image processing
 * (Sophia's model: `<bos>` + the user's text, one image at the model's size; a Hugging Face model: its processor's
 * chat template with the generation prompt, images at the processor's resolution) — callers never see prompt tokens.
 */
export interface ChatPrompt {
  messages: readonly ChatMessage[];
}

/** One response that continues prompt `prompt` (an index into the call's `prompts`), as the model's token ids. */
export interface ResponseRow {
  prompt: number;
  response: ArrayLike<number>;
}

export interface GrpoRow extends ResponseRow {
  /** log π_old of each response token (from sampling). */
  oldLogprobs: ArrayLike<number>;
  /** log π_ref of each response token. */
  refLogprobs: ArrayLike<number>;
  /** Applied to all the row's response tokens. */
  advantage: number;
}

export interface RewardRow extends ResponseRow {
  /** Target score in [0, 1]. */
  score: number;
}

/** The row type each loss needs. */
export type RowFor<L extends LossSpec> = L extends { kind: 'sft' } ? ResponseRow : L extends { kind: 'grpo' } ? GrpoRow : RewardRow;

/** Prompts and the response rows that continue them; a prompt may be continued by many rows (a GRPO group). */
export interface ResponseBatch<R extends ResponseRow = ResponseRow> {
  prompts: readonly ChatPrompt[];
  rows: readonly R[];
}

export interface GenerateRequest {
  prompts: readonly ChatPrompt[];
  /** Samples per prompt (G). */
  n: number;
  /** 0 = greedy. */
  temperature: number;
  /** Nucleus sampling mass in (0, 1]. */
  topP: number;
  /** Most tokens to generate per sample; fewer where the model's maximum length leaves less room after a prompt. */
  maxTokens: number;
  seed: number;
}

export interface GeneratedSequence {
  promptIndex: number;
  /** Generated token ids, the model's end token included when the response ended with it. */
  tokens: Int32Array;
  /** log π(token) of each generated token under the temperature-scaled distribution (before top-p). */
  logprobs: Float32Array;
  /** The response text, without the end token. */
  text: string;
  /** True when it ended with the model's end token, false when it ran out of tokens. */
  stopped: boolean;
}

export interface GenerateResult {
  /** P × n sequences, prompt-major: all samples of prompt 0, then prompt 1, … */
  sequences: GeneratedSequence[];
  generatedTokens: number;
  /**
   * Seconds this call spent pushing the policy's weights into a separate rollout engine before sampling (the torch
   * engine's vllm backend after an update; 0 when they had not changed). Absent for engines that sample with the
   * weights they train.
   */
  weightSyncSeconds?: number;
}

/** A Hugging Face model directory as an engine's starting point (engines that load pretrained models). */
export interface PretrainedModel {
  kind: ModelKind;
  /** A local directory with `config.json`, weights and processor files. */
  pretrained: string;
}

/** What `init` starts from: Sophia's own architecture from a seed, or a pretrained model. */
export type ModelSpec = ModelConfig | PretrainedModel;

export function isPretrained(model: ModelSpec): model is PretrainedModel {
  return typeof (model as PretrainedModel).pretrained === 'string';
}

export interface EngineInfo {
  /** e.g. "onnxruntime 1.30.0 (cpu)". */
  description: string;
  executionProvider: string;
}

/** What every engine does: state, the optimizer, and the prompt-level surface the pipeline uses. */
export interface Engine {
  readonly info: EngineInfo;
  /**
   * Fresh weights, zero optimizer state, step 0: Sophia's architecture (`ModelConfig`) initialised from `seed`, or a
   * pretrained model (`PretrainedModel`) loaded as it is (a reward model's fresh scalar head from `seed`). An engine
   * refuses a kind of model it cannot run with a `TypeError` naming `model`.
   */
  init(model: ModelSpec, seed: number): Promise<void>;
  /** The model it holds, as given to `init` or saved in the state it loaded. */
  config(): ModelSpec;
  /** Positions (prompt + response tokens) the model attends over at most. */
  maxLength(): number;
  /** Optimizer steps taken. */
  step(): number;
  /** AdamW over the weighted mean of the gradients accumulated since the last step; rejects if there are none. */
  optimStep(settings: AdamWSettings): Promise<OptimStepResult>;

  /** Each prompt's length in tokens once rendered (images included), e.g. to fit responses within `maxLength()`. */
  promptLengths(prompts: readonly ChatPrompt[]): Promise<number[]>;
  /** Each text as the model writes a response: its tokens, then the model's end token. */
  encodeResponses(texts: readonly string[]): Promise<Int32Array[]>;
  /** `n` samples per prompt, with per-token logprobs and the decoded text; seeded. */
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** log π(token) at `temperature` of each row's response tokens (policy models), one array per row. */
  responseLogprobs(batch: ResponseBatch, temperature: number): Promise<Float32Array[]>;
  /** (rows) scores in [0, 1] of prompt + response, read at the response's last token (reward models). */
  scoreResponses(batch: ResponseBatch): Promise<Float32Array>;
  /**
   * Forward + backward of `loss` over the rows' response tokens (the prompt's tokens never carry loss); accumulates
   * the gradient, weighted by `options.weight`, for the next `optimStep`.
   */
  forwardBackwardResponses<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, options?: ForwardBackwardOptions): Promise<ForwardBackwardResult>;
  /** forwardBackwardResponses + optimStep in one call. */
  trainStepResponses<L extends LossSpec>(batch: ResponseBatch<RowFor<L>>, loss: L, settings: AdamWSettings): Promise<TrainStepResult>;

  /**
   * Everything (weights, AdamW moments, step, RNG, model config) as named files, in the engine's own format: in
   * `options.dir` when given (see `SaveStateOptions`), else in memory.
   */
  saveState(options?: SaveStateOptions): Promise<EngineFile[]>;
  /**
   * Loads files `saveState` wrote (any order); with `freshOptimizer`, only the weights, model config and RNG.
   * Files that are not such a state (missing, extra, truncated, another engine's) throw a `RangeError` naming the
   * file, and the engine keeps the state it had.
   */
  loadState(files: readonly EngineFile[], options?: LoadStateOptions): Promise<void>;
  /**
   * Becomes a thinking reward model that starts from a policy's saved state: the same backbone weights, a fresh
   * scalar head (initialised from `seed`) instead of the LM head, zero AdamW moments, step 0. Throws a
   * `RangeError` if the files are not a policy's state.
   */
  initRewardFromPolicy(policy: readonly EngineFile[], seed: number): Promise<void>;
  /**
   * False once the engine has lost its model outside a call (its process died): every later call rejects, and its
   * owner makes a new engine and reloads the last committed checkpoint. Engines that cannot lose their model in
   * between calls (the ONNX engine, in this process) leave it out.
   */
  healthy?(): boolean;
  /** Frees sessions, buffers and processes; the engine cannot be used afterwards. */
  dispose(): Promise<void>;
}

/** The files of a LoRA policy's state that `loadReferenceAdapter` reads (its metadata and its adapter). */
export const REFERENCE_ADAPTER_FILES = ['sophia_engine.json', 'adapter_config.json', 'adapter_model.safetensors'] as const;

/**
 * An engine whose LoRA policy can hold a second, frozen adapter over its own base weights: the RL reference (the SFT
 * state's adapter) without a second copy of the model. The PyTorch engine with `lora`; the ONNX engine has no LoRA.
 */
export interface ReferenceAdapterEngine {
  /**
   * Holds the adapter of a LoRA policy state of the same base (`REFERENCE_ADAPTER_FILES` of it suffice) as the
   * reference, until the next `init`/`loadState`/`initRewardFromPolicy`. A state of another base, or a policy without
   * an adapter, is refused (`RangeError` / `Error`) and nothing changes.
   */
  loadReferenceAdapter(files: readonly EngineFile[]): Promise<void>;
  /** Whether a reference adapter is held now (false after any load). */
  hasReferenceAdapter(): boolean;
  /** `responseLogprobs` of the base with the reference adapter instead of the policy's own. */
  referenceLogprobs(batch: ResponseBatch, temperature: number): Promise<Float32Array[]>;
}

export function hasReferenceAdapters(engine: Engine): engine is Engine & ReferenceAdapterEngine {
  const e = engine as Partial<ReferenceAdapterEngine>;
  return typeof e.loadReferenceAdapter === 'function' && typeof e.hasReferenceAdapter === 'function' && typeof e.referenceLogprobs === 'function';
}

/**
 * An engine that also takes token-level batches of Sophia's architecture (the ONNX engine): flat token and pixel
 * arrays, packed by `batch.ts`. Its prompt-level methods render prompts and call these.
 */
export interface TokenEngine extends Engine {
  config(): ModelConfig;
  /** Its state is small (one `state.bin`): always in memory. */
  saveState(options?: SaveStateOptions): Promise<InMemoryEngineFile[]>;
  /** Forward + backward; accumulates the gradient (weighted by `options.weight`) for the next `optimStep`. */
  forwardBackward<L extends LossSpec>(batch: BatchFor<L>, loss: L, options?: ForwardBackwardOptions): Promise<ForwardBackwardResult>;
  /** forwardBackward + optimStep in one pass (the fast path when nothing is accumulated). */
  trainStep<L extends LossSpec>(batch: BatchFor<L>, loss: L, settings: AdamWSettings): Promise<TrainStepResult>;
  sample(request: SampleRequest): Promise<SampleResult>;
  /** (B, T) log π(target) at `temperature` (policy models). */
  logprobs(batch: TargetBatch, temperature: number): Promise<Float32Array>;
  /** (B) scores in [0, 1] at each row's last real token (reward models). */
  score(batch: SequenceBatch): Promise<Float32Array>;
}
