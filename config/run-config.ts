/**
 * The run config: everything a training run needs, as plain data (YAML or JSON), validated once before any
 * workflow starts. Unknown fields and invalid values are rejected with their path and the reason.
 *
 * Presets (`RUN_PRESETS`): `ci` (≈ 3 minutes on a 2-core machine), `tiny` (≈ 10 minutes), and `paper` (the
 * SophiaVL-R1 paper's hyperparameters for the future PyTorch engine; validates, but cannot run on the ONNX
 * engine). A file may start from a preset (`extends: tiny`) and override any field.
 */
import { z } from 'zod';
import { ConfigError } from '../common/errors';
import { MODEL_PRESETS, type ModelConfig } from '../engine/model/config';
import { STAGE_NAMES, type StageName } from './stages';

const int = (min: number, max = 1_000_000_000) => z.number().int().min(min).max(max);
const positive = z.number().positive();
const fraction = z.number().min(0).max(1);

const ModelSchema = z.strictObject({
  /** Start from a size preset; the fields below override it. */
  preset: z.enum(['tiny', 'small']).default('tiny'),
  layers: int(1, 128).optional(),
  width: int(1, 16384).optional(),
  heads: int(1, 256).optional(),
  mlpRatio: int(1, 16).optional(),
  maxLength: int(8, 8192).optional(),
  imageSize: int(4, 1024).optional(),
  patch: int(1, 1024).optional(),
  /** For other engines: the checkpoint to fine-tune (e.g. "Qwen/Qwen2.5-VL-7B-Instruct"). */
  base: z.string().min(1).optional(),
});

const EngineSchema = z.strictObject({
  /** `onnx`: the built-in engine. `pytorch`: real VLMs on GPUs (not available yet). */
  kind: z.enum(['onnx', 'pytorch']).default('onnx'),
  executionProvider: z.enum(['cpu', 'cuda']).default('cpu'),
  /** Intra-op threads; 0 = one per core. */
  threads: int(0, 1024).default(0),
});

const DataSchema = z.strictObject({
  perFamily: z.strictObject({ train: int(1), test: int(1), ood: int(1) }),
  validationPerFamily: int(1),
  shardSize: int(1).default(2000),
});

const SftSchema = z
  .strictObject({
    steps: int(1),
    batchSize: int(1, 4096),
    lr: positive,
    warmupSteps: int(0),
    minLrRatio: fraction,
    weightDecay: z.number().min(0),
    maxGradNorm: positive,
    /** Validation and a checkpoint every this many steps. */
    evalEvery: int(1),
    patience: int(0),
    /** Steps per activity (a multiple of evalEvery): the unit of work a GPU worker does between check-ins. */
    chunkSteps: int(1),
  })
  .refine((s) => s.chunkSteps % s.evalEvery === 0, { message: 'must be a multiple of sft.evalEvery', path: ['chunkSteps'] });

const EvaluationSchema = z.strictObject({
  /** Samples per example for pass@k (0 = greedy only). */
  k: int(0, 64),
  temperature: positive,
  maxTokens: int(1),
  promptsPerBatch: int(1),
});

/** Trust-GRPO hyperparameters (DESIGN.md §3); used by the RL stages. */
const RlSchema = z.strictObject({
  groupSize: int(2, 64),
  alpha: z.number().min(0),
  clipEps: positive,
  klCoef: z.number().min(0),
  entropyCoef: z.number().min(0),
  lr: positive,
  weightDecay: z.number().min(0),
  maxGradNorm: positive,
  temperature: positive,
  steps: int(1),
  variant: z.enum(['grpo', 'thinking', 'thinking+anneal', 'trust-grpo', 'untrained-rm']).default('trust-grpo'),
});

export { STAGE_NAMES, type StageName };

export const RunConfigSchema = z.strictObject({
  /** A name for people; the run id identifies the run. */
  name: z.string().max(200).optional(),
  seed: int(0, 2 ** 31 - 1),
  engine: EngineSchema.default({ kind: 'onnx', executionProvider: 'cpu', threads: 0 }),
  model: ModelSchema,
  data: DataSchema,
  sft: SftSchema,
  evaluation: EvaluationSchema,
  checkpoints: z.strictObject({ keepLast: int(1, 1000) }).default({ keepLast: 3 }),
  rl: RlSchema.optional(),
  /** Stages to run, in pipeline order (default: all). */
  stages: z.array(z.enum(STAGE_NAMES)).min(1).optional(),
  /** Start at a later stage from a committed checkpoint (e.g. skip SFT). */
  startFrom: z.strictObject({ stage: z.enum(STAGE_NAMES), checkpointKey: z.string().min(1).optional() }).optional(),
});

export type RunConfig = z.infer<typeof RunConfigSchema>;

const base = {
  seed: 1,
  model: { preset: 'tiny' },
  evaluation: { k: 4, temperature: 1, maxTokens: 64, promptsPerBatch: 50 },
};

export const RUN_PRESETS: Record<'ci' | 'tiny' | 'paper', unknown> = {
  ci: {
    ...base,
    name: 'ci: a minute of everything',
    data: { perFamily: { train: 200, test: 20, ood: 20 }, validationPerFamily: 10 },
    sft: { steps: 150, batchSize: 32, lr: 2e-3, warmupSteps: 20, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 1, evalEvery: 50, patience: 3, chunkSteps: 50 },
    evaluation: { ...base.evaluation, k: 2 },
  },
  tiny: {
    ...base,
    name: 'tiny: the tiny world on a laptop',
    data: { perFamily: { train: 2000, test: 100, ood: 100 }, validationPerFamily: 20 },
    sft: { steps: 2000, batchSize: 32, lr: 2e-3, warmupSteps: 50, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 1, evalEvery: 200, patience: 4, chunkSteps: 400 },
  },
  paper: {
    name: 'paper: SophiaVL-R1-7B hyperparameters (needs the PyTorch engine)',
    seed: 42,
    engine: { kind: 'pytorch', executionProvider: 'cuda' },
    model: { preset: 'small', base: 'Qwen/Qwen2.5-VL-7B-Instruct' },
    data: { perFamily: { train: 20000, test: 500, ood: 500 }, validationPerFamily: 100 },
    sft: { steps: 1000, batchSize: 128, lr: 1e-5, warmupSteps: 30, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 100, patience: 5, chunkSteps: 100 },
    evaluation: { k: 8, temperature: 1, maxTokens: 1024, promptsPerBatch: 64 },
    rl: { groupSize: 8, alpha: 0.3, clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, lr: 1e-6, weightDecay: 0.01, maxGradNorm: 4, temperature: 1, steps: 500, variant: 'trust-grpo' },
  },
};

export type RunPresetName = keyof typeof RUN_PRESETS;

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(root)';
}

/** Validates raw config data; throws `ConfigError` listing every problem as "path: reason". */
export function parseRunConfig(raw: unknown, source: string): RunConfig {
  const result = RunConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const at = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => formatPath([...issue.path, k])).join(', ') : formatPath(issue.path);
    const why = issue.code === 'unrecognized_keys' ? 'unknown field (remove it or check its spelling)' : issue.message;
    return `${at}: ${why}`;
  });
  const first = result.error.issues[0]!;
  throw new ConfigError(`${source} ${formatPath(first.path)}`, `invalid run config:\n  ${problems.join('\n  ')}`);
}

/** Merges `override` into `base` (objects recursively; arrays and values replace). */
export function mergeConfig(base: unknown, override: unknown): unknown {
  if (override === undefined) return base;
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof override !== 'object' || override === null || Array.isArray(override)) return override;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(override)) out[k] = mergeConfig(out[k], v);
  return out;
}

/** A preset by name, or a parsed file's data (which may `extends:` a preset), validated. */
export function resolveRunConfig(presetOrData: string | Record<string, unknown>, source: string): RunConfig {
  if (typeof presetOrData === 'string') {
    if (!Object.hasOwn(RUN_PRESETS, presetOrData)) {
      throw new ConfigError('config', `${JSON.stringify(presetOrData)} is not a preset`, { hint: `Use one of ${Object.keys(RUN_PRESETS).join(', ')}, or a YAML/JSON file` });
    }
    return parseRunConfig(RUN_PRESETS[presetOrData as RunPresetName], `preset ${presetOrData}`);
  }
  const { extends: parent, ...rest } = presetOrData;
  if (parent !== undefined) {
    if (typeof parent !== 'string' || !Object.hasOwn(RUN_PRESETS, parent)) {
      throw new ConfigError(`${source} extends`, `${JSON.stringify(parent)} is not a preset`, { hint: `Use one of ${Object.keys(RUN_PRESETS).join(', ')}` });
    }
    return parseRunConfig(mergeConfig(RUN_PRESETS[parent as RunPresetName], rest), source);
  }
  return parseRunConfig(rest, source);
}

/** The engine's model config for a run (the tokenizer decides the vocabulary). */
export function modelConfig(config: RunConfig, vocabSize: number): ModelConfig {
  const p = MODEL_PRESETS[config.model.preset];
  const m = config.model;
  return {
    kind: 'policy',
    vocabSize,
    layers: m.layers ?? p.layers,
    width: m.width ?? p.width,
    heads: m.heads ?? p.heads,
    mlpRatio: m.mlpRatio ?? p.mlpRatio,
    maxLength: m.maxLength ?? p.maxLength,
    image: { size: m.imageSize ?? p.image.size, channels: 3, patch: m.patch ?? p.image.patch },
    initStd: 0.02,
  };
}

/** Problems that make a valid config unrunnable on this installation (checked before a run starts). */
export function assertRunnable(config: RunConfig): void {
  if (config.engine.kind !== 'onnx') {
    throw new ConfigError('engine.kind', `${JSON.stringify(config.engine.kind)}: the PyTorch engine for real VLMs is not available yet`, {
      hint: 'Use engine.kind: onnx (the built-in engine) with the ci or tiny presets',
    });
  }
  if (config.startFrom && config.startFrom.stage !== 'prepareData' && !config.startFrom.checkpointKey && config.startFrom.stage !== 'sftWarmup') {
    throw new ConfigError('startFrom.checkpointKey', `starting at ${config.startFrom.stage} needs the checkpoint to start from`);
  }
}
