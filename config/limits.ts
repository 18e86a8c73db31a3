/**
 * What a run will cost, estimated from its config before anything starts, and the deployment's limits on it. A run
 * config that asks for more (a model too large for the workers, a billion steps, a dataset that fills the store) is
 * refused where runs are submitted (`assertRunnable`: the CLI and `POST /runs`) with an error that names the field,
 * the estimate and the limit, instead of being accepted and taking down a worker on every retry.
 *
 * The estimates are upper-bound arithmetic over the config, not measurements:
 *  - engine memory, onnx engine: each engine holds its float32 weights, gradients and two AdamW moments (16 bytes a
 *    parameter), plus the activations the backward pass keeps for its largest batch; a GPU worker keeps up to
 *    `ENGINES_PER_RUN` engines of a run (policy, frozen reference, reward model, evaluation);
 *  - engine memory, torch engine: the stage that holds the most (config/torch-estimate.ts: the models' sizes from
 *    their config.json, the dtype, gradients, AdamW moments, the frozen reference, the reward model, activations with
 *    or without gradient checkpointing). A model whose config.json is not readable where the estimate is made (an
 *    s3:// model where runs are submitted) is not counted there: the worker counts it once it has downloaded it;
 *  - storage: every checkpoint the run keeps (weights + moments, `checkpoints.keepLast` plus the best and the initial
 *    weights per training stage), the dataset, and the RL step records (rollouts, rewards, advantages);
 *  - training steps: SFT + reward model + RL optimizer steps.
 *
 * Limits are the deployment's, from the environment (`RUN_LIMIT_VARS`), read once by the process that submits runs.
 */
import { ConfigError } from '../common/errors';
import { parameterCount } from '../engine/model/config';
import { FAMILIES } from '../tasks/types';
import { Tokenizer } from '../engine/model/tokenizer';
import { type RunConfig, assertRunnable, modelConfig } from './run-config';
import { type MemoryPart, type TorchEstimateOptions, estimateTorch } from './torch-estimate';

/** Engines of one run a GPU worker may hold at once (policy, reference, reward model, evaluation). */
export const ENGINES_PER_RUN = 4;
/** Weights, gradients and two AdamW moments, float32. */
const TRAINING_BYTES_PER_PARAMETER = 16;
/** A checkpoint: weights and two AdamW moments, float32. */
const CHECKPOINT_BYTES_PER_PARAMETER = 12;
/** A stored example: its image as base64 PNG plus question, answer and steps (JSON line), generously. */
const BYTES_PER_EXAMPLE_PIXEL = 4;
const BYTES_PER_EXAMPLE_TEXT = 2048;
/** A stored RL rollout token: token id, text, sampling and reference logprobs as JSON. */
const BYTES_PER_ROLLOUT_TOKEN = 48;

export interface RunEstimate {
  /** The policy's parameters. */
  parameters: number;
  /** Peak memory of the run's engines on one GPU worker. */
  engineMemoryBytes: number;
  /** What `engineMemoryBytes` is made of, and (torch) the stage that needs it. */
  memory: { stage: string | undefined; parts: MemoryPart[] };
  /** Models not counted because their config.json is not readable here (torch: an s3:// model before it is downloaded). */
  unknownModels: string[];
  /** What the run leaves in storage. */
  storageBytes: number;
  trainingSteps: number;
}

export interface RunLimits {
  maxEngineMemoryBytes: number;
  maxStorageBytes: number;
  maxTrainingSteps: number;
}

const GiB = 1024 ** 3;

/** Every limit, with its variable, default and meaning: the one declaration (README lists them). */
export const RUN_LIMIT_VARS = [
  { name: 'SOPHIA_MAX_RUN_MEMORY_GB', key: 'maxEngineMemoryBytes', scale: GiB, default: 16, doc: "a run's estimated engine memory on one GPU worker, GiB (default 16)" },
  { name: 'SOPHIA_MAX_RUN_STORAGE_GB', key: 'maxStorageBytes', scale: GiB, default: 100, doc: "a run's estimated checkpoints, data and RL records in storage, GiB (default 100)" },
  { name: 'SOPHIA_MAX_RUN_STEPS', key: 'maxTrainingSteps', scale: 1, default: 1_000_000, doc: "a run's optimizer steps, SFT + reward model + RL (default 1000000)" },
] as const satisfies readonly { name: string; key: keyof RunLimits; scale: number; default: number; doc: string }[];

export const DEFAULT_RUN_LIMITS: RunLimits = Object.fromEntries(RUN_LIMIT_VARS.map((v) => [v.key, v.default * v.scale])) as unknown as RunLimits;

/** The deployment's limits: defaults, overridden by the environment; a bad value throws a `ConfigError` naming it. */
export function loadRunLimits(env: Readonly<Record<string, string | undefined>>): RunLimits {
  const limits = { ...DEFAULT_RUN_LIMITS };
  for (const v of RUN_LIMIT_VARS) {
    const raw = env[v.name]?.trim();
    if (raw === undefined || raw === '') continue;
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0) throw new ConfigError(v.name, `${JSON.stringify(raw)} is not a positive number`, { hint: `Set it to a number such as ${v.default}` });
    limits[v.key] = value * v.scale;
  }
  return limits;
}

/**
 * Upper-bound estimates of what `config` will take (see the module comment). For torch runs, `options` gives the local
 * directories of s3:// models once downloaded, and whether the worker has a GPU (the dtype of `dtype: auto`).
 */
export function estimateRun(config: RunConfig, options: TorchEstimateOptions = {}): RunEstimate {
  const model = modelConfig(config, new Tokenizer().vocabSize);
  let parameters: number;
  let engineMemoryBytes: number;
  let memory: RunEstimate['memory'];
  let unknownModels: string[] = [];
  let checkpointBytes: number;
  const keep = config.checkpoints.keepLast + 2;
  if (config.engine.kind === 'torch') {
    const torch = estimateTorch(config, config.engine, options);
    parameters = torch.parameters;
    engineMemoryBytes = torch.peak?.bytes ?? 0;
    memory = { stage: torch.peak?.stage, parts: torch.peak?.parts ?? [] };
    unknownModels = torch.unknownModels;
    const c = torch.checkpointBytes;
    checkpointBytes = keep * (c.sftWarmup + (config.rewardModel ? c.rewardModel : 0) + (config.rl ? c.trustGrpo : 0));
  } else {
    parameters = parameterCount(model);
    const imageTokens = (model.image.size / model.image.patch) ** 2;
    const positions = imageTokens + model.maxLength;
    // Activations kept for the backward pass per row: per layer and position the block's tensors (about 10 of width d,
    // 2 of the MLP's hidden size) and the attention scores and weights (2 per head and key); the logits (3 of vocab).
    const perRow = positions * (model.layers * ((10 + 2 * model.mlpRatio) * model.width + 2 * model.heads * positions) + 3 * model.vocabSize) * 4;
    const rows = Math.max(config.sft.batchSize, config.rewardModel?.batchSize ?? 0, config.rl?.microBatch ?? 0);
    const engines = { name: `${ENGINES_PER_RUN} engines' weights, gradients and AdamW moments (float32)`, bytes: ENGINES_PER_RUN * parameters * TRAINING_BYTES_PER_PARAMETER };
    const activations = { name: `activations (${rows} rows × ${positions} positions)`, bytes: rows * perRow };
    engineMemoryBytes = engines.bytes + activations.bytes;
    memory = { stage: undefined, parts: [engines, activations] };
    const trainingStages = 1 + (config.rewardModel ? 1 : 0) + (config.rl ? 1 : 0);
    checkpointBytes = trainingStages * keep * parameters * CHECKPOINT_BYTES_PER_PARAMETER;
  }

  const perFamily = config.data.perFamily;
  const examples = FAMILIES.length * (perFamily.train + perFamily.test + perFamily.ood + config.data.validationPerFamily);
  // A real dataset (data.source) is copied into the run's storage at about its own size, which is not known before
  // it is read: only the tiny world's generated data is estimated.
  const dataBytes = config.data.source ? 0 : examples * (model.image.size ** 2 * 3 * BYTES_PER_EXAMPLE_PIXEL + BYTES_PER_EXAMPLE_TEXT);
  const rl = config.rl;
  const rolloutBytes = rl ? rl.steps * rl.promptsPerStep * rl.groupSize * rl.maxTokens * BYTES_PER_ROLLOUT_TOKEN : 0;
  const storageBytes = checkpointBytes + dataBytes + rolloutBytes;

  const trainingSteps = config.sft.steps + (config.rewardModel?.steps ?? 0) + (rl?.steps ?? 0);
  return { parameters, engineMemoryBytes, memory, unknownModels, storageBytes, trainingSteps };
}

/**
 * "about 171.2 GiB (8,292,166,656 parameters) in its trustGrpo stage: policy weights … 15.4 GiB, …": the memory
 * estimate with its parts, for messages (onnx runs: the total and the parameters, as before).
 */
export function describeMemory(e: RunEstimate): string {
  const head = `about ${formatBytes(e.engineMemoryBytes)} (${e.parameters.toLocaleString('en-US')} parameters)`;
  if (e.memory.stage === undefined) return head;
  return `${head} in its ${e.memory.stage} stage: ${e.memory.parts.map((p) => `${p.name} ${formatBytes(p.bytes)}`).join(', ')}`;
}

/** What to change when a run's engines do not fit, by engine. */
export function memoryHint(config: RunConfig): string {
  return config.engine.kind === 'torch'
    ? `Use a smaller model (engine.model, engine.rewardModel), gradient checkpointing (engine.gradientCheckpointing: true) or smaller batches (sft.batchSize, rewardModel.batchSize, rl.microBatch)`
    : 'Use a smaller model (model.width, model.layers, model.maxLength) or smaller batches';
}

/** Bytes for people: MiB below a GiB, else GiB, one decimal. */
export const formatBytes = (bytes: number) => (bytes < GiB ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${(bytes / GiB).toFixed(1)} GiB`);

/** Throws a `ConfigError` naming the field to change, the estimate and the limit, for the first limit `config` exceeds. */
export function assertWithinLimits(config: RunConfig, limits: RunLimits): RunEstimate {
  const e = estimateRun(config);
  const varOf = (key: keyof RunLimits) => RUN_LIMIT_VARS.find((v) => v.key === key)!.name;
  if (e.trainingSteps > limits.maxTrainingSteps) {
    const largest = (['sft', 'rewardModel', 'rl'] as const).map((s) => [s, config[s]?.steps ?? 0] as const).sort((a, b) => b[1] - a[1])[0]![0];
    throw new ConfigError(`${largest}.steps`, `the run would take ${e.trainingSteps.toLocaleString('en-US')} optimizer steps; this deployment allows ${limits.maxTrainingSteps.toLocaleString('en-US')} (${varOf('maxTrainingSteps')})`, {
      hint: 'Train fewer steps, or raise the limit where the runs are submitted',
    });
  }
  if (e.engineMemoryBytes > limits.maxEngineMemoryBytes) {
    throw new ConfigError(config.engine.kind === 'torch' ? 'engine.model' : 'model', `the run's engines need ${describeMemory(e)}; this deployment allows ${formatBytes(limits.maxEngineMemoryBytes)} (${varOf('maxEngineMemoryBytes')})`, {
      hint: `${memoryHint(config)}, or raise the limit`,
    });
  }
  if (e.storageBytes > limits.maxStorageBytes) {
    throw new ConfigError('data.perFamily', `the run would store about ${formatBytes(e.storageBytes)} (checkpoints, data, RL records); this deployment allows ${formatBytes(limits.maxStorageBytes)} (${varOf('maxStorageBytes')})`, {
      hint: 'Use fewer examples, fewer kept checkpoints (checkpoints.keepLast) or fewer RL steps, or raise the limit',
    });
  }
  return e;
}

/** What every place that submits a run checks first: the engine can run it, and it fits the deployment's limits. */
export function assertSubmittable(config: RunConfig, env: Readonly<Record<string, string | undefined>>): RunEstimate {
  assertRunnable(config);
  return assertWithinLimits(config, loadRunLimits(env));
}
