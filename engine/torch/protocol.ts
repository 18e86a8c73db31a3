/**
 * The torch engine process's ops, typed: what each op takes and gives back (engine/README.md, "PyTorch engine" →
 * "Ops", "Prompts and batches"). Field names are the wire's own (snake_case), so each type reads against the
 * README's table line for line; `TorchEngineProcess` (process.ts) sends them as they are.
 *
 * Abstractions:
 *  - `Prompt`: chat messages the engine renders with the model's processor and chat template; an image part names
 *    a uint8 tensor (`ImageBytes`): raw RGB pixels (H, W, 3) or a PNG or JPEG file's bytes (1-D);
 *  - rows (`Rows` and its per-loss extensions): B (prompt, response) rows as flat 1-D typed arrays over the
 *    response tokens, N = Σ response_lengths;
 *  - `LossSpec`, `AdamWArgs`: the training ops' hyperparameters, as data;
 *  - `ModelInfo`: what `load`/`load_state` report about the model they loaded.
 */

/** The protocol version this client speaks (hello's `protocol`; protocol.py's PROTOCOL_VERSION). */

export const PROTOCOL_VERSION = 1;

export type Role = 'policy' | 'reference' | 'reward';
/** The model's compute dtype (half types need a GPU). */
export type ModelDType = 'float32' | 'float64' | 'bfloat16' | 'float16';

export type OpName =
  | 'hello'
  | 'load'
  | 'load_state'
  | 'load_reference'
  | 'unload'
  | 'save'
  | 'sample'
  | 'logprobs'
  | 'score'
  | 'tokenize'
  | 'prompt_lengths'
  | 'forward_backward'
  | 'optim_step'
  | 'train_step'
  | 'shutdown'
  | SophiaOpName;

export interface HelloResult {
  protocol: number;
  engine: string;
  versions: { python: string; torch: string; transformers: string };
  cuda: boolean;
  /** CUDA device names. */
  devices: string[];
  default_device: 'cpu' | 'cuda';
  default_dtype: ModelDType;
  /** torch's intra-op threads. */
  threads: number;
  ops: OpName[];
  /** Present once a model is loaded. */
  model?: ModelInfo;
}

export interface ModelInfo {
  /** The directory it was loaded from (`load`'s model_dir, `load_state`'s dir). */
  model_dir: string;
  /** The model directory its weights first came from (`load`'s model_dir), carried through saved states. */
  base_model_dir: string;
  model_type: string;
  architecture: string;
  role: Role;
  dtype: ModelDType;
  device: string;
  vocab_size: number;
  tokenizer_size: number;
  /** The model's positions (max_position_embeddings): prompt + response must fit. */
  max_length: number;
  parameters: number;
  trainable_parameters: number;
  /** Sampling ends with any of these (the generation config's eos ids and the tokenizer's). */
  eos_token_ids: number[];
  /** The token a response ends with: the tokenizer's eos (a chat model's end of turn, `<|im_end|>` for Qwen). */
  end_token_id: number;
  pad_token_id: number;
  /** Whether the model reads images: a VLM (qwen2_vl, qwen2_5_vl) does; a text-only causal LM (qwen2) refuses image parts. */
  reads_images: boolean;
  /** The image placeholder token (null for a text-only model). */
  image_token_id: number | null;
  /** Never sampled: a VLM's vision tokens and vocabulary rows the tokenizer has no token for. */
  suppressed_token_ids: number[];
  gradient_checkpointing: boolean;
  /** The model's LoRA adapter (null without one). */
  lora: LoraArgs | null;
  /** The state whose adapter is held as the frozen reference (`load_reference`), or null. */
  reference_adapter: string | null;
  /** Whether the weights are offloaded to host memory (inference only). */
  offloaded: boolean;
  /** How the model samples (`load`'s rollout argument, Python's defaults filled in), and vLLM engines started by the process. */
  rollout: RolloutArgs & { engines_started: number };
  /** Optimizer steps taken (0 after `load`; the saved step after `load_state`). */
  step: number;
}

/** The rollout backend (engine/README.md: vLLM rollouts); fields left out take the engine's defaults. */
export interface RolloutArgs {
  backend: 'hf' | 'vllm';
  gpu_memory_utilization?: number;
  max_num_seqs?: number;
  max_model_len?: number;
  sleep?: boolean;
  enforce_eager?: boolean;
  cpu_kv_cache_gib?: number;
  images_per_prompt?: number;
  tensor_parallel?: number;
}

/** A LoRA adapter (engine/README.md: LoRA). */
export interface LoraArgs {
  rank: number;
  alpha: number;
  dropout?: number;
  target_modules: string[];
}

/** Settings `load` and `load_state` share; defaults are the engine's (cuda + bfloat16 with a GPU, else cpu + float32). */
export interface DeviceSettings {
  /** `cpu` or `cuda[:N]`. */
  device?: string;
  dtype?: ModelDType;
  /** torch intra-op threads; 0 leaves torch's own. */
  threads?: number;
  gradient_checkpointing?: boolean;
  /** `load`: a fresh adapter; `load_state`: only with `reward_from_policy` (a state keeps its own adapter). */
  lora?: LoraArgs;
  /** Inference only: weights in host memory, streamed to the device for each forward (an adapter folded in). */
  offload?: boolean;
}

export interface LoadArgs extends DeviceSettings {
  /** A Hugging Face model directory (made absolute before it is sent: the process has its own cwd). */
  model_dir: string;
  role?: Role;
  /** Seeds a reward model's head and the process's torch RNG (default 0). */
  seed?: number;
}

export interface LoadStateArgs extends DeviceSettings {
  /** A directory `save` wrote. */
  dir: string;
  /** Weights only: zero AdamW moments, step 0. */
  fresh_optimizer?: boolean;
  /**
   * Load a policy's state as a reward model: its backbone, a scalar head fresh from `seed`, zero AdamW moments,
   * step 0 (a state that is not a policy's is refused).
   */
  reward_from_policy?: boolean;
  /** With `reward_from_policy`: seeds the head and the torch RNG (default 0). */
  seed?: number;
}

export interface SaveResult {
  dir: string;
  files: string[];
  step: number;
}

export type ContentPart = { type: 'text'; text: string } | { type: 'image'; tensor: string };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

export interface Prompt {
  messages: ChatMessage[];
  /** Append the assistant turn's opening (default true). */
  add_generation_prompt?: boolean;
}

/** Raw RGB pixels: a (height, width, 3) uint8 tensor, row-major. */
export interface RgbPixels {
  dtype: 'uint8';
  shape: [number, number, 3];
  data: Uint8Array;
}

/** Images by the tensor name an image part gives: a PNG or JPEG file's bytes, or raw RGB pixels. */
export type ImageBytes = Record<string, Uint8Array | RgbPixels>;

export type IndexArray = Int32Array | BigInt64Array;
export type FloatArray = Float32Array | Float64Array;

/** B rows continuing `args.prompts` with response tokens; N = Σ response_lengths. */
export interface Rows {
  /** (B) which prompt each row continues. */
  prompt_index: IndexArray;
  /** (B) response tokens per row (≥ 0). */
  response_lengths: IndexArray;
  /** (N) the rows' response tokens, row after row. */
  response_ids: IndexArray;
}

export interface SftRows extends Rows {
  /** (N) 1 where the token counts; default all 1. */
  loss_mask?: FloatArray;
}

export interface GrpoRows extends SftRows {
  /** (N) log π_old of each response token. */
  old_logprobs: FloatArray;
  /** (N) log π_ref of each response token. */
  ref_logprobs: FloatArray;
  /** (B) one per row, applied to all its tokens. */
  advantages: FloatArray;
}

export interface RmRows extends Rows {
  /** (B) targets in [0, 1]. */
  score_targets: FloatArray;
}

export type LossSpec =
  | { kind: 'sft' }
  | { kind: 'grpo'; clip_eps: number; kl_coef: number; entropy_coef: number; temperature: number; tis_cap?: number }
  | { kind: 'rm' };

/** The rows a loss needs. */
export type RowsFor<L extends LossSpec> = L extends { kind: 'grpo' } ? GrpoRows : L extends { kind: 'rm' } ? RmRows : SftRows;

export interface ForwardBackwardArgs<L extends LossSpec = LossSpec> {
  prompts: Prompt[];
  loss: L;
  /** Finite > 0 (default 1): gradients accumulate as Σ wᵢ·gᵢ / Σ wᵢ until `optim_step`. */
  weight?: number;
}

export interface ForwardBackwardResult {
  /** NaN/±Infinity when not finite (the wire's strings decoded). */
  loss: number;
  /** sft: tokens; grpo: policy_loss, kl, entropy, clip_fraction, ratio_mean, logprob_diff_mean, logprob_diff_max, tokens; rm: mae. */
  metrics: Record<string, number>;
  /** false: the loss or a gradient was not finite, and nothing was accumulated. */
  finite: boolean;
}

export interface AdamWArgs {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  max_grad_norm: number;
}

/** forward_backward + optim_step in one op; the AdamW settings are checked before the forward pass. */
export type TrainStepArgs<L extends LossSpec = LossSpec> = Omit<ForwardBackwardArgs<L>, 'weight'> & AdamWArgs;

export interface OptimStepResult {
  step: number;
  /** Before clipping; NaN/±Infinity when not finite. */
  grad_norm: number;
  /** false: the norm was not finite; nothing changed and the gradients were dropped. */
  applied: boolean;
}

export interface SampleArgs {
  prompts: Prompt[];
  /** Samples per prompt (default 1). */
  n?: number;
  /** Default 1; 0 is greedy. */
  temperature?: number;
  /** In (0, 1], default 1. */
  top_p?: number;
  max_new_tokens: number;
  seed?: number;
  /** A row ends once its decoded text contains one of these. */
  stop?: string[];
  /**
   * Give each prompt's rows at most the positions it leaves (max_length − its tokens) instead of refusing a
   * max_new_tokens that does not fit the longest prompt; a prompt that leaves none is refused (default false).
   */
  clip_to_max_length?: boolean;
}

export interface Sample {
  prompt_index: number;
  /** The decoded tokens, without special tokens. */
  text: string;
  finish_reason: 'eos' | 'stop' | 'length';
  stopped: boolean;
}

export interface SampleResult {
  /** P·n samples, prompt-major. */
  samples: Sample[];
  generated_tokens: number;
  /** Tokens of each rendered prompt. */
  prompt_tokens: number[];
  /** (Σ lengths) every sample's tokens, sample after sample (an eos that ended a row included). */
  token_ids: Int32Array;
  /** (Σ lengths) log softmax(logits / T) of each token (T = 1 when greedy), before suppression and top-p. */
  logprobs: Float32Array;
  /** (P·n) tokens per sample. */
  lengths: Int32Array;
  /** What sampled: the engine's decode loop (hf), or vLLM (the vllm rollout backend at temperature 0 or 1). */
  backend: 'hf' | 'vllm';
  /** Seconds spent pushing the policy's weights into vLLM first (0 when they had not changed, and with hf). */
  weight_sync_seconds: number;
}

export interface LogprobsArgs {
  prompts: Prompt[];
  /** > 0, default 1. */
  temperature?: number;
  /** `reference`: the frozen reference adapter's logprobs (after `load_reference`) instead of the model's own. */
  adapter?: 'default' | 'reference';
}

export interface LogprobsResult {
  /** Prompt tokens of each row. */
  prompt_tokens: number[];
  /** (N) log softmax(logits / T) of each response token. */
  logprobs: Float32Array;
}

export interface ScoreResult {
  prompt_tokens: number[];
  /** (B) in (0, 1): the reward head at each row's last real token. */
  scores: Float32Array;
}

export interface TokenizeResult {
  /** (Σ lengths) every text's ids, text after text, no special tokens added. */
  ids: Int32Array;
  /** Ids per text. */
  lengths: Int32Array;
}

export interface PromptLengthsResult {
  /** Tokens of each rendered prompt (images expanded to their tokens). */
  prompt_tokens: number[];
}

/** forward_backward's result and optim_step's (step, grad_norm NaN and applied false when the loss was not finite
 * and nothing was accumulated before). */
export type TrainStepResult = ForwardBackwardResult & OptimStepResult;

// ---- Sophia's own architecture from an ONNX-engine state.bin (sophia_torch/sophia_arch.py; the cross-engine check)

/** Ops on Sophia's architecture, beside (not replacing) the Hugging Face model the process may hold. */
export type SophiaOpName = 'load_sophia' | 'sophia_logprobs' | 'sophia_grad';

export interface LoadSophiaArgs {
  /** An ONNX engine's state.bin (made absolute before it is sent). */
  state: string;
  /** Default float32 (the file's own precision); float64 for the cross-engine gradient check. */
  dtype?: 'float32' | 'float64';
  /** Default cpu. */
  device?: string;
}

export interface SophiaModelInfo {
  /** The state.bin it was loaded from. */
  state: string;
  /** The state's ModelConfig (engine/model/config.ts), as saved. */
  config: Record<string, unknown>;
  kind: 'policy' | 'reward';
  step: number;
  dtype: 'float32' | 'float64';
  device: string;
  parameters: number;
}

/**
 * A token-level batch: the ONNX engine's graph inputs (engine/model/graphs.ts), row-major with shapes. Floats are
 * float32 or float64, ids int32 or int64; `attention_mask` may also be uint8.
 */
export type SophiaBatch = {
  /** (B, C, S, S) in [0, 1]. */
  image: FloatTensor;
  /** (B, T). */
  tokens: IndexTensor;
  /** (B, T) 1 real, 0 padding. */
  attention_mask: FloatTensor | { dtype: 'uint8'; shape: number[]; data: Uint8Array };
  /** (B, T); default the number of real tokens before each token in its row. */
  positions?: IndexTensor;
  /** (B, T) sft, grpo, sophia_logprobs. */
  targets?: IndexTensor;
  /** (B, T) sft, grpo. */
  loss_mask?: FloatTensor;
  /** (B, T) grpo. */
  old_logprobs?: FloatTensor;
  ref_logprobs?: FloatTensor;
  /** (B) grpo. */
  advantages?: FloatTensor;
  /** (B) rm. */
  score_targets?: FloatTensor;
  /** (B) rm: the text position the score is read at; default each row's last real token. */
  last_index?: IndexTensor;
};

export interface FloatTensor {
  dtype: 'float32' | 'float64';
  shape: number[];
  data: FloatArray;
}

export interface IndexTensor {
  dtype: 'int32' | 'int64';
  shape: number[];
  data: IndexArray;
}

/** sophia_grad's result; its tensor `grad` is the float64 flat gradient in `paramLayout` order. */
export type SophiaGradResult = ForwardBackwardResult & { grad: Float64Array };
