/**
 * What a run will cost, estimated from its config before anything starts, and the deployment's limits on it. A run
 * config that asks for more (a model too large for the workers, a billion steps, a dataset that fills the store) is
 * refused where runs are submitted (`assertRunnable`: the CLI and `POST /runs`) with an error that names the field,
 * the estimate and the limit, instead of being accepted and taking down a worker on every retry.
 *
 * The estimates are upper-bound arithmetic over the config, not measurements:
 *  - engine memory: each engine holds its float32 weights, gradients and two AdamW moments (16 bytes a parameter),
 *    plus the activations the backward pass keeps for its largest batch; a GPU worker keeps up to `ENGINES_PER_RUN`
 *    engines of a run (policy, frozen reference, reward model, evaluation);
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
  parameters: number;
  /** Peak memory of the run's engines on one GPU worker. */
  engineMemoryBytes: number;
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

/** Upper-bound estimates of what `config` will take (see the module comment). */
export function estimateRun(config: RunConfig): RunEstimate {
  const model = modelConfig(config, new Tokenizer().vocabSize);
  const parameters = parameterCount(model);
  const imageTokens = (model.image.size / model.image.patch) ** 2;
  const positions = imageTokens + model.maxLength;
  // Activations kept for the backward pass per row: per layer and position the block's tensors (about 10 of width d,
  // 2 of the MLP's hidden size) and the attention scores and weights (2 per head and key); the logits (3 of vocab).
  const perRow = positions * (model.layers * ((10 + 2 * model.mlpRatio) * model.width + 2 * model.heads * positions) + 3 * model.vocabSize) * 4;
  const rows = Math.max(config.sft.batchSize, config.rewardModel?.batchSize ?? 0, config.rl?.microBatch ?? 0);
  const engineMemoryBytes = ENGINES_PER_RUN * parameters * TRAINING_BYTES_PER_PARAMETER + rows * perRow;

  const trainingStages = 1 + (config.rewardModel ? 1 : 0) + (config.rl ? 1 : 0);
  const checkpoints = trainingStages * (config.checkpoints.keepLast + 2);
  const perFamily = config.data.perFamily;
  const examples = FAMILIES.length * (perFamily.train + perFamily.test + perFamily.ood + config.data.validationPerFamily);
  const dataBytes = examples * (model.image.size ** 2 * 3 * BYTES_PER_EXAMPLE_PIXEL + BYTES_PER_EXAMPLE_TEXT);
  const rl = config.rl;
  const rolloutBytes = rl ? rl.steps * rl.promptsPerStep * rl.groupSize * rl.maxTokens * BYTES_PER_ROLLOUT_TOKEN : 0;
  const storageBytes = checkpoints * parameters * CHECKPOINT_BYTES_PER_PARAMETER + dataBytes + rolloutBytes;

  const trainingSteps = config.sft.steps + (config.rewardModel?.steps ?? 0) + (rl?.steps ?? 0);
  return { parameters, engineMemoryBytes, storageBytes, trainingSteps };
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
    throw new ConfigError('model', `the run's engines need about ${formatBytes(e.engineMemoryBytes)} (${e.parameters.toLocaleString('en-US')} parameters); this deployment allows ${formatBytes(limits.maxEngineMemoryBytes)} (${varOf('maxEngineMemoryBytes')})`, {
      hint: 'Use a smaller model (model.width, model.layers, model.maxLength) or smaller batches, or raise the limit',
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
