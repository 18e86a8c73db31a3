/**
 * The one place that knows which engines exist: `createEngine(options)` makes an `Engine` from its kind and that
 * kind's settings. Workers, the CLI and tests outside engine/ create engines only through it and import nothing of
 * an engine's internals (an eslint rule keeps it so), so a second engine — e.g. a PyTorch process serving Hugging
 * Face models — is one more case here, and it proves itself with the same contract suite (`engine.contract.ts`).
 */
import { OnnxEngine, type OnnxEngineOptions } from './onnx-engine';
import { TorchEngine } from './torch/engine';
import type { TorchEngineHosts } from './torch/host';
import type { RolloutArgs } from './torch/protocol';

/** A worker makes one and passes it in `EngineContext.torchHosts`: its torch engines then share engine processes. */
export { TorchEngineHosts } from './torch/host';
import type { Engine, TokenEngine } from './types';
import { installTorch } from './torch/venv';

/** The built-in engine: Sophia's ONNX graphs on onnxruntime-node, with its settings (provider, threads, …). */
export type OnnxEngineSettings = { kind: 'onnx' } & OnnxEngineOptions;

/**
 * The PyTorch engine: a Python process (`torch/`) serving Hugging Face models. The model itself is not a setting:
 * `init({ kind, pretrained: DIR }, seed)` loads it.
 */
export interface TorchEngineOptions {
  /** The venv's python (default: `.tools/torch-venv`, installed on first use). */
  python?: string;
  /** `cpu` or `cuda[:N]` (default: cuda when the process sees a GPU). */
  device?: string;
  /** Default: bfloat16 on a GPU, float32 on CPU. */
  dtype?: 'float32' | 'float64' | 'bfloat16' | 'float16';
  /** torch's intra-op threads (default: torch's own choice). */
  threads?: number;
  gradientCheckpointing?: boolean;
  /** Train low-rank adapters instead of all the weights (engine/README.md: LoRA). */
  lora?: LoraOptions;
  /**
   * Inference only: keep the weights in host memory and stream them to the GPU module by module for each forward
   * (RL's frozen reference and reward model with `engine.offloadFrozen`). Training calls are refused.
   */
  offload?: boolean;
  /** How a policy samples: the engine's own decode loop (hf, the default) or vLLM in the engine process. */
  rollout?: RolloutOptions;
  /** Engine processes, one per GPU of the worker (torchrun; the policy sharded with FSDP); default 1. */
  processes?: number;
}

/**
 * The vllm rollout backend's settings (engine/README.md: vLLM rollouts); each one left out takes the engine's default.
 * `gpuMemoryUtilization`: the share of the GPU's memory vLLM may take beside the trainer; `maxNumSeqs`: sequences it
 * decodes at once; `maxModelLen`: the longest prompt + response it plans for (0: the model's limit); `sleep`: free its
 * KV cache and move its weights to host memory between rollouts (CUDA); `enforceEager`: no CUDA graphs;
 * `cpuKvCacheGib`: its KV cache on CPU; `imagesPerPrompt`: the most images one prompt carries; `tensorParallel`: the
 * engine processes one vLLM engine spans (a divisor of `processes`; the others sample other prompts).
 */
export interface RolloutOptions {
  backend: 'hf' | 'vllm';
  gpuMemoryUtilization?: number;
  maxNumSeqs?: number;
  maxModelLen?: number;
  sleep?: boolean;
  enforceEager?: boolean;
  cpuKvCacheGib?: number;
  imagesPerPrompt?: number;
  tensorParallel?: number;
}

/** The rollout settings' names on the wire (`load`'s args.rollout), by their TypeScript names (`RolloutOptions`). */
export const ROLLOUT_WIRE_NAMES = {
  backend: 'backend',
  gpuMemoryUtilization: 'gpu_memory_utilization',
  maxNumSeqs: 'max_num_seqs',
  maxModelLen: 'max_model_len',
  sleep: 'sleep',
  enforceEager: 'enforce_eager',
  cpuKvCacheGib: 'cpu_kv_cache_gib',
  imagesPerPrompt: 'images_per_prompt',
  tensorParallel: 'tensor_parallel',
} as const satisfies Record<keyof RolloutOptions, keyof RolloutArgs>;

/** A LoRA adapter: rank, scale alpha (the update is B·A·alpha/rank), dropout on its input, the modules it adapts. */
export interface LoraOptions {
  rank: number;
  alpha: number;
  dropout: number;
  targetModules: string[];
}

export type TorchEngineSettings = { kind: 'torch' } & TorchEngineOptions;

/** Which engine to make, with its settings; `kind` picks the engine. */
export type EngineOptions = OnnxEngineSettings | TorchEngineSettings;

export type EngineKind = EngineOptions['kind'];

/** Every kind `createEngine` can make. */
const ENGINE_KINDS: readonly EngineKind[] = ['onnx', 'torch'];

/**
 * Where an engine reports what happens outside calls: an engine process's stderr lines (the PyTorch engine), as
 * { level, message, fields }. Not part of `EngineOptions`, which are a run's plain data.
 */
export interface EngineContext {
  onLog?: (entry: { level: 'debug' | 'info' | 'warn' | 'error'; message: string; fields: Record<string, unknown> }) => void;
  /** A worker's shared PyTorch engine processes: its torch engines become models of one process (engine/torch/host.ts). */
  torchHosts?: TorchEngineHosts;
}

/** The ONNX engine also takes token-level batches (`TokenEngine`); every engine has the prompt-level surface. */
export function createEngine(options: OnnxEngineSettings, context?: EngineContext): TokenEngine;
export function createEngine(options: EngineOptions, context?: EngineContext): Engine;
export function createEngine(options: EngineOptions, context: EngineContext = {}): Engine {
  switch (options.kind) {
    case 'onnx': {
      const { kind: _kind, ...settings } = options;
      return new OnnxEngine(settings);
    }
    case 'torch': {
      const { kind: _kind, ...settings } = options;
      const host = context.torchHosts?.get({ python: settings.python, threads: settings.threads, ...(settings.processes ? { processes: settings.processes } : {}) });
      return new TorchEngine({ ...settings, ...(context.onLog ? { onLog: context.onLog } : {}) }, host);
    }
    default:
      throw new RangeError(`engine.kind ${JSON.stringify((options as { kind: unknown }).kind)} is not an engine this build has: use one of ${ENGINE_KINDS.join(', ')}`);
  }
}

/**
 * Gets an engine kind ready to be made on this machine, up front: the PyTorch engine's venv is installed on first use
 * (`infra/local/install-torch.sh`, minutes and gigabytes, progress lines to `log`); the ONNX engine needs nothing.
 * Engines themselves never install (a worker's activity would time out): they refuse with the install command.
 */
export async function prepareEngine(kind: EngineKind, log: (line: string) => void): Promise<void> {
  if (kind === 'torch') await installTorch(log);
}
