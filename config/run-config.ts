/**
 * The run config: everything a training run needs, as plain data (YAML or JSON), validated once before any
 * workflow starts. Unknown fields and invalid values are rejected with their path and the reason.
 *
 * Presets (`RUN_PRESETS`): `ci` (40 s on a 2-core machine), `tiny` (about 9 minutes; the README has the
 * measurements), and `paper` (the SophiaVL-R1 paper's hyperparameters on the torch engine: it needs the paths of
 * the models, `engine.model` and `engine.rewardModel`). A file may start from a preset (`extends: tiny`) and
 * override any field.
 *
 * Two engines (`engine.kind`): `onnx`, the built-in engine, trains Sophia's own architecture (the `model` section);
 * `torch` trains a Hugging Face model (`engine.model`: a local directory or an s3:// prefix) and ignores the
 * `model` section. What only the machine can tell (the model directory, its config.json) is checked by
 * `assertRunnable`, where runs are submitted, not by the schema, which stays pure data.
 */
import { z } from 'zod';
import { ConfigError } from '../common/errors';
import { MODEL_PRESETS, type ModelConfig, type ModelKind, validateModelConfig } from '../engine/model/config';
import type { EvalSettings } from '../evaluation/evaluate';
import type { SftSettings } from '../training/sft';
import { SEMANTICS, type Semantics, VARIANTS, type Variant } from '../rl/trust';
import { Tokenizer } from '../engine/model/tokenizer';
import type { ModelSpec, PretrainedModel } from '../engine/types';
import { parseModelLocation, readPretrainedShape } from './pretrained';
import { STAGE_NAMES, type StageName } from './stages';
import { BENCHMARK_NAMES, type BenchmarkName } from '../benchmarks/index';
import { validateDatasetOptions } from '../datasets/reader';
import { DATASET_FORMATS, type DatasetOptions } from '../datasets/types';

const int = (min: number, max = 1_000_000_000) => z.number().int().min(min).max(max);
const positive = z.number().positive();
const fraction = z.number().min(0).max(1);

/** Sophia's own architecture, for the onnx engine (torch runs ignore it: their model is `engine.model`). */
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
});

/** An example of the torch engine section, for messages. */
const TORCH_EXAMPLE = 'engine: { kind: torch, model: /path/to/Qwen2.5-VL-7B-Instruct, rewardModel: /path/to/Qwen2.5-VL-3B-Instruct } (local Hugging Face model directories, or s3://bucket/prefix from `sophia model upload`)';

/** Refuses the fields of the old placeholder (`model.base`) with what to write instead. */
function refuseModelBase(raw: unknown, ctx: z.RefinementCtx): void {
  if (typeof raw === 'object' && raw !== null && Object.hasOwn(raw, 'base')) {
    ctx.addIssue({ code: 'custom', path: ['base'], message: `model.base is gone: the torch engine names its Hugging Face model in engine.model, e.g. ${TORCH_EXAMPLE}` });
  }
}

/** A model's location: checked for form here (`config/pretrained.ts`); its files are checked by `assertRunnable`. */
const modelLocation = (field: string) =>
  z
    .string({ error: (issue) => (issue.input === undefined ? `missing: the torch engine needs the model to train; add ${TORCH_EXAMPLE}` : undefined) })
    .superRefine((value, ctx) => {
      try {
        parseModelLocation(value, field);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        ctx.addIssue({ code: 'custom', message: err.message.slice(field.length + 2) });
      }
    });

/** The built-in engine: Sophia's architecture (the `model` section) as ONNX graphs on onnxruntime. */
const OnnxEngineSchema = z.strictObject({
  kind: z.literal('onnx'),
  executionProvider: z.enum(['cpu', 'cuda']).default('cpu'),
  /** Intra-op threads; 0 = one per core. */
  threads: int(0, 1024).default(0),
});

export const TORCH_DTYPES = ['auto', 'float32', 'bfloat16', 'float16', 'float64'] as const;

/**
 * Low-rank adapters (peft's LoRA) for the policy and the reward model: their base weights stay frozen and only the
 * adapters (and the reward model's head) train, so AdamW's moments are the adapters' size (engine/README.md: LoRA).
 * The frozen reference is the SFT policy with its adapter.
 */
const LoraSchema = z.strictObject({
  rank: int(1, 4096),
  alpha: positive,
  dropout: z.number().min(0).lt(1).default(0),
  /** Module names to adapt, e.g. [q_proj, k_proj, v_proj, o_proj]. */
  targetModules: z.array(z.string().regex(/^[A-Za-z0-9_.*-]{1,128}$/, 'a module name is 1–128 letters, digits, "_", ".", "*" or "-"')).min(1),
});

/**
 * How the policy samples (rollouts, the reward model's training data, evaluation): `hf`, the engine's own decode loop,
 * or `vllm`, a vLLM engine in the engine's process that takes the policy's weights after each update
 * (engine/README.md: vLLM rollouts). vLLM samples at temperatures 0 and 1 (its logprobs are the model's own); at
 * others the decode loop does. Settings left out take the engine's defaults (engine/torch/sophia_torch/rollout.py).
 */
const RolloutSchema = z.strictObject({
  backend: z.enum(['hf', 'vllm']),
  /** The share of each GPU's memory vLLM may take (its copy of the weights and its KV cache) beside the trainer. */
  gpuMemoryUtilization: z.number().gt(0).lt(1).optional(),
  /** Sequences vLLM decodes at once. */
  maxNumSeqs: int(1, 1 << 20).optional(),
  /** The longest prompt + response vLLM plans its KV cache for; 0 = the model's max_position_embeddings. */
  maxModelLen: int(0, 1 << 24).optional(),
  /** CUDA: free vLLM's KV cache and park its weights in host memory while the trainer updates. */
  sleep: z.boolean().optional(),
  /** CUDA: no CUDA graphs or torch.compile in vLLM (faster start, slower decoding). */
  enforceEager: z.boolean().optional(),
  /** CPU: vLLM's KV cache in GiB. */
  cpuKvCacheGib: positive.optional(),
  /** The most images one prompt carries (vLLM plans memory for that many). */
  imagesPerPrompt: int(1, 1024).optional(),
  /**
   * With engine.processes: N, the processes (GPUs) one vLLM engine spans (tensor parallelism); it divides N, and N / k
   * vLLM engines sample a share of the prompts each. 1 (default): a whole copy of the weights per GPU, the fastest when
   * the model fits one GPU beside the trainer; more when it does not.
   */
  tensorParallel: int(1, 64).optional(),
});

/** The PyTorch engine: a Hugging Face model (Qwen2-VL / Qwen2.5-VL, or a Qwen2 causal LM) in a Python process. */
const TorchEngineSchema = z.strictObject({
  kind: z.literal('torch'),
  /** The policy: an absolute local directory or s3://bucket/prefix (`config/pretrained.ts`). */
  model: modelLocation('engine.model'),
  /** The thinking reward model's backbone (the paper: Qwen2.5-VL-3B); absent: the reward model starts from the policy. */
  rewardModel: modelLocation('engine.rewardModel').optional(),
  /** `auto`: bfloat16 on a GPU, float32 on CPU. */
  dtype: z.enum(TORCH_DTYPES).default('auto'),
  /** `auto`: cuda when the worker's engine process sees a GPU, else cpu. */
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** Recompute each layer's activations in the backward pass instead of keeping them (less memory, ~1/3 more compute). */
  gradientCheckpointing: z.boolean().default(false),
  /** torch's intra-op threads; 0 = torch's own choice. */
  threads: int(0, 1024).default(0),
  lora: LoraSchema.optional(),
  /**
   * RL's frozen models (the reference and the thinking reward model) keep their weights in host memory and stream
   * them to the GPU module by module for each forward: GPU memory for the policy's training, at the price of moving
   * those weights over PCIe every step. With `lora` the reference is an adapter already.
   */
  offloadFrozen: z.boolean().default(false),
  rollout: RolloutSchema.optional(),
  /**
   * Engine processes on the worker, one per GPU (torchrun; the policy's weights, gradients and optimizer state
   * sharded across them with FSDP2, each process computing its share of every batch's rows). 1: one process.
   */
  processes: int(1, 64).default(1),
});

/**
 * The engine section: `kind` picks the engine (default onnx, so a section without `kind` is the onnx engine's, as
 * before there were two). The old placeholder `kind: pytorch` is refused with the new spelling.
 */
const EngineSchema = z
  .unknown()
  .superRefine((raw, ctx) => {
    if (typeof raw === 'object' && raw !== null && (raw as { kind?: unknown }).kind === 'pytorch') {
      ctx.addIssue({ code: 'custom', path: ['kind'], message: `"pytorch" is now "torch", with the model it trains: ${TORCH_EXAMPLE}` });
    }
  })
  .transform((raw) => (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && !Object.hasOwn(raw, 'kind') ? { ...raw, kind: 'onnx' } : raw))
  .pipe(z.discriminatedUnion('kind', [OnnxEngineSchema, TorchEngineSchema]));

export type EngineSection = z.infer<typeof OnnxEngineSchema> | z.infer<typeof TorchEngineSchema>;
export type TorchEngineSection = z.infer<typeof TorchEngineSchema>;

const optionalName = z.string().min(1).optional();

/**
 * A real dataset to train on instead of the tiny world (datasets/, docs/datasets.md): the adapters' options
 * (`DatasetOptions`) plus how the run splits it. Its examples go to train or test by a stable hash of their id
 * (`testShare`); there is no ood split (the real benchmarks of `evaluation.benchmarks` measure generalization).
 */
const DataSourceSchema = z.strictObject({
  format: z.enum(DATASET_FORMATS),
  /** An absolute path on the CPU workers (a data file or a folder of them) or s3://bucket/prefix. */
  location: z.string().min(1),
  /** Which data files under `location` (globs, `*` within one path segment); default every .parquet/.jsonl/.json. */
  files: z.array(z.string().min(1)).min(1).optional(),
  /** Where relative image paths resolve (absolute, s3://, or relative to the location); default the location. */
  imageRoot: z.string().min(1).optional(),
  /** easyr1: column names (EasyR1's prompt_key, answer_key, image_key, …). */
  columns: z.strictObject({ prompt: optionalName, answer: optionalName, images: optionalName, problemType: optionalName, options: optionalName, id: optionalName, source: optionalName, category: optionalName }).optional(),
  /** easyr1: the problem type of rows without one (default numerical). */
  defaultProblemType: z.string().min(1).optional(),
  /** The prompt template: {question}, {options}, {answer_format} (default: the paper's think/answer instruction). */
  template: z.string().min(1).optional(),
  /** Images whose Qwen2-VL smart_resize target is larger are shrunk (default maxPixels 12845056, Qwen2.5-VL's). */
  images: z.strictObject({ maxPixels: int(1).optional(), minPixels: int(1).optional(), factor: int(1).optional() }).optional(),
  /** Largest share of bad rows tolerated before the run stops, naming file, row and reason (default 0.01). */
  maxBadShare: fraction.optional(),
  /** The bad share is also checked after this many rows (default 1000). */
  earlyCheckRows: int(1).optional(),
  /** Read only this many good rows (a first run on part of a large set). */
  limit: int(1).optional(),
  /** Share of examples held out for test, by a hash of each example's id (stable when the dataset grows). */
  testShare: z.number().gt(0).lt(1).default(0.05),
});
export type DataSourceConfig = z.infer<typeof DataSourceSchema>;

/** The dataset adapters' options of a run's `data.source` (what `openDataset` reads). */
export function datasetOptionsOf(source: DataSourceConfig): DatasetOptions {
  const { testShare: _split, ...options } = source;
  return options;
}

const DataSchema = z.strictObject({
  /** The tiny world's examples per family and split (not read when `source` names a real dataset). */
  perFamily: z.strictObject({ train: int(1), test: int(1), ood: int(1) }),
  validationPerFamily: int(1),
  shardSize: int(1).default(2000),
  /** Train on a real dataset (engine.kind torch) instead of generating the tiny world. */
  source: DataSourceSchema.optional(),
});

/** A supervised training schedule in resumable chunks (SFT warmup, reward model). */
const schedule = {
  steps: int(1),
  batchSize: int(1, 4096),
  /** Peak learning rate: linear warmup, then cosine decay to lr · minLrRatio. */
  lr: positive,
  warmupSteps: int(0),
  minLrRatio: fraction,
  weightDecay: z.number().min(0),
  maxGradNorm: positive,
  /** Validation and a checkpoint every this many steps. */
  evalEvery: int(1),
  /** Stop after this many validations in a row without a new best. */
  patience: int(0),
  /** Steps per activity (a multiple of evalEvery): the unit of work a GPU worker does between check-ins. */
  chunkSteps: int(1),
};

const chunksOnTheGrid = (section: string): [(s: { chunkSteps: number; evalEvery: number }) => boolean, { message: string; path: string[] }] => [
  (s) => s.chunkSteps % s.evalEvery === 0,
  { message: `must be a multiple of ${section}.evalEvery`, path: ['chunkSteps'] },
];

/** SFT's `steps` may be 0: no warmup, the model as it is starts RL (a real dataset has no teacher responses). */
const SftSchema = z.strictObject({ ...schedule, steps: int(0) }).refine(...chunksOnTheGrid('sft'));

/**
 * A benchmark the evaluation stage runs on each policy it evaluates (benchmarks/: the benchmark's own scoring; the
 * same code as `sophia eval`), read from a copy of its published files where the GPU worker can read it.
 */
const BenchmarkDataSchema = z.strictObject({
  /** An absolute path on the GPU workers, or s3://bucket/prefix: a folder (or file) of the published .parquet/.jsonl files. */
  data: z.string().min(1),
  /** Which files under `data` to read (globs, `*` within one path segment), e.g. ["data/testmini-*.parquet"]. */
  files: z.array(z.string().min(1)).min(1).optional(),
  /** Only the first N rows. */
  limit: int(1).optional(),
  /** Most tokens per answer (default: evaluation.maxTokens). */
  maxTokens: int(1).optional(),
});

export type BenchmarkDataConfig = z.infer<typeof BenchmarkDataSchema>;

const EvaluationSchema = z.strictObject({
  /** Samples per example for pass@k (0 = greedy only). */
  k: int(0, 64),
  temperature: positive,
  maxTokens: int(1),
  promptsPerBatch: int(1),
  /** Also evaluate the baseline (the initial policy and, when RL ran, the SFT checkpoint) in the same run. */
  baseline: z.boolean().default(true),
  /**
   * Real benchmarks by name (benchmarks/index.ts), each with where its data is. Meant for the torch engine's models;
   * with the onnx engine each prompt is adapted to Sophia's tiny model (engine/onnx-prompts.ts `fitPromptToModel`).
   */
  benchmarks: z.partialRecord(z.enum(BENCHMARK_NAMES as [BenchmarkName, ...BenchmarkName[]]), BenchmarkDataSchema).optional(),
});

/** Where the thinking-reward annotations come from (docs/architecture.md §3). */
/**
 * Fields a run config may not carry: where a judge lives and which secret it gets are the operator's choice, made on
 * the workers (`rewards/judges.ts`). A request that could name them could make a worker send any of its secrets to
 * any URL.
 */
/** What a run config calls a judge (the workers' `SOPHIA_JUDGES` maps each name to its endpoint). */
export const JUDGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const OPERATOR_ONLY = ['baseUrl', 'apiKeyEnv', 'apiKey', 'model'] as const;
const NAME_A_JUDGE = 'configure the judge on the workers (SOPHIA_JUDGES or SOPHIA_JUDGES_FILE) and name it here: { kind: judge, name: NAME }';

/** Refuses the endpoint fields (and the old `kind: openai`) with what to do instead, before the union's own checks. */
function refuseJudgeEndpoint(raw: unknown, ctx: z.RefinementCtx): void {
  if (typeof raw !== 'object' || raw === null) return;
  const a = raw as Record<string, unknown>;
  if (a.kind === 'openai') ctx.addIssue({ code: 'custom', path: ['kind'], message: `kind openai is gone: a run config may not name a judge's URL or key; ${NAME_A_JUDGE}` });
  for (const field of OPERATOR_ONLY) {
    if (Object.hasOwn(a, field)) ctx.addIssue({ code: 'custom', path: [field], message: `a run config may not set a judge's ${field}; ${NAME_A_JUDGE}` });
  }
}

const AnnotatorSchema = z
  .unknown()
  .superRefine(refuseJudgeEndpoint)
  .pipe(
    z.discriminatedUnion('kind', [
      /** The built-in judge that knows each example's true steps (`rewards/judge.ts`). */
      z.strictObject({ kind: z.literal('programmatic') }),
      /** An LLM judge the workers configure (`SOPHIA_JUDGES`), by name: its URL, model and key are theirs. */
      z.strictObject({
        kind: z.literal('judge'),
        name: z.string().regex(JUDGE_NAME, 'a judge name is 1–64 letters, digits, ".", "_" or "-"'),
      }),
    ]),
  );

/** The thinking reward model: its training data (sampled from the SFT policy, annotated, balanced) and training. */
const RewardModelSchema = z
  .strictObject({
    /**
     * What judges a response (docs/trust-grpo/README.md):
     *  - `head`: a backbone with a scalar head, trained to regress the annotations (the paper's thinking reward model);
     *  - `likelihood`: the SFT policy itself, its score the geometric mean of its probabilities of the response's tokens
     *    (exp of the mean token log-probability, in [0, 1]); training fine-tunes it, with the SFT loss, on the
     *    annotated responses scored at least `likelihoodMinScore`, and keeps the checkpoint that ranks the validation
     *    part's responses best.
     * Scoring follows the checkpoint: a reward model's head, else a policy's likelihood (so `startFrom.rewardModelKey`
     * may name either kind).
     */
    kind: z.enum(['head', 'likelihood']).default('head'),
    /** (kind likelihood) The annotations the judge is fine-tuned to find likelier: those at least this high. */
    likelihoodMinScore: fraction.default(0.8),
    /** `policy`: the SFT policy's backbone with a fresh scalar head (as the paper starts from a VLM); `scratch`: random. */
    init: z.enum(['policy', 'scratch']).default('policy'),
    data: z.strictObject({
      /** Training prompts to sample responses for. */
      prompts: int(1),
      samplesPerPrompt: int(1, 64),
      /** Sampling temperatures, cycled over the samples of a prompt, so response quality varies. */
      temperatures: z.array(positive).min(1),
      maxTokens: int(1),
      /** Cap per score bin when balancing the ten bins (default: the median non-empty bin). */
      perBin: int(1).optional(),
      /** Share of the annotated prompts held out of training (whole prompts, with all their responses). */
      heldOutShare: z.number().gt(0).lt(1),
      /**
       * Share of the held-out prompts in the test part, which only the reward-model report measures; the rest is
       * the validation part, which picks the best checkpoint (so the reported metrics are not the selection's).
       */
      heldOutTestShare: z.number().gt(0).lt(1).default(0.5),
    }),
    annotator: AnnotatorSchema.default({ kind: 'programmatic' }),
    /**
     * Held-out test prompts the stage's report samples RL's group for, to measure the reward model on the policy's own
     * samples (activities/reward-model.ts `OnPolicyMixedGroups`); 0 leaves that measurement out.
     */
    onPolicyPrompts: int(0, 100_000).default(100),
    ...schedule,
    /** Training steps; 0 (kind likelihood only): the judge is the SFT policy as it is. */
    steps: int(0),
  })
  .refine(...chunksOnTheGrid('rewardModel'))
  .refine((s) => s.steps > 0 || s.kind === 'likelihood', { message: 'a reward model with a head needs training steps (0 is for kind likelihood: the SFT policy judging as it is)', path: ['steps'] });

/** Trust-GRPO hyperparameters (docs/architecture.md §3). */
const RlSchema = z.strictObject({
  groupSize: int(2, 64),
  /** Prompts per RL step (each sampled groupSize times). */
  promptsPerStep: int(1).default(8),
  alpha: z.number().min(0),
  clipEps: positive,
  klCoef: z.number().min(0),
  entropyCoef: z.number().min(0),
  lr: positive,
  weightDecay: z.number().min(0),
  maxGradNorm: positive,
  temperature: positive,
  topP: z.number().gt(0).max(1).default(1),
  maxTokens: int(1).default(64),
  steps: int(1),
  /** Rows per forward/backward pass; gradients of a mini-batch's micro-batches are averaged into one optimizer step. */
  microBatch: int(1, 4096).default(32),
  /**
   * PPO epochs over each RL step's rollouts, and mini-batches per epoch: ppoEpochs × miniBatches optimizer steps per
   * RL step, each against the sampling logprobs (so the clip can bite from the second on). 1 and 1: one update per
   * RL step (the paper's setting as implemented here; peers' configs often use more).
   */
  ppoEpochs: int(1, 64).default(1),
  miniBatches: int(1, 4096).default(1),
  variant: z.enum(VARIANTS as [Variant, ...Variant[]]).default('trust-grpo'),
  /** Groups whose responses are all correct or all wrong: `trust` (γ = 1) or `skip` (no thinking reward). */
  emptyGroup: z.enum(['trust', 'skip']).default('trust'),
  /**
   * Dynamic sampling (DAPO): groups whose responses all got the same outcome reward are dropped and more prompts are
   * sampled, up to `maxRounds` rounds of promptsPerStep prompts, until promptsPerStep groups with different outcome
   * rewards are found (fewer when the rounds run out). Works with any variant; off when absent.
   */
  dynamicSampling: z.strictObject({ maxRounds: int(1, 16).default(3) }).optional(),
  /** Annealing temperature T in exp(−step / T); default: the total RL steps. */
  annealTemperature: positive.optional(),
  /** Outcome reward at or above which a response counts as correct for the trust weight. */
  correctThreshold: fraction.default(0.5),
  std: z.enum(['unbiased', 'population']).default('unbiased'),
  /** `paper`: the paper's reward; `authors-code`: what the released code computes (rl/trust.ts `Semantics`). */
  semantics: z.enum(SEMANTICS as [Semantics, ...Semantics[]]).default('paper'),
  /** Commit a checkpoint every this many steps. */
  checkpointEvery: int(1).default(10),
  /** Evaluate on test and ood every this many steps (0 = only at the end of the run). */
  evalEvery: int(0).default(0),
  /** Examples per family of the periodic evaluation (greedy). */
  evalExamples: int(1).default(20),
  /**
   * Truncated importance sampling of the sampler–trainer mismatch (torch engine; off when absent): each token's policy
   * term weighted by min(π_trainer / π_sampler, tisCap), the PPO ratio against the trainer's own policy. Peers use
   * caps of about 2 to 5. Every RL step reports the importance weights' effective sample size (importanceEss) either way.
   */
  tisCap: z.number().min(1).optional(),
});

export { STAGE_NAMES, type StageName };

/**
 * Experiment tracking (tracking/): the run mirrored to an MLflow tracking server — params, every step's metrics, the
 * report and plots as artifacts, a model line's policies as registered model versions. Training never waits for it:
 * a separate workflow syncs from the run's storage, and fills what it missed when the server comes back.
 */
export const TrackingSchema = z.strictObject({
  mlflow: z
    .strictObject({
      /** The tracking server's URL (what `MLFLOW_TRACKING_URI` would be), http or https. */
      uri: z.url({ protocol: /^https?$/, error: 'must be the http(s) URL of an MLflow tracking server, e.g. http://mlflow:5000' }),
      /** The experiment the run goes into (created when missing). */
      experiment: z.string().min(1).max(500).default('sophia'),
      /** Seconds between syncs while the run trains. */
      syncSeconds: int(1, 3600).default(30),
    })
    .optional(),
});
export type TrackingConfig = z.infer<typeof TrackingSchema>;

export const RunConfigSchema = z.strictObject({
  /** A name for people; the run id identifies the run. */
  name: z.string().max(200).optional(),
  seed: int(0, 2 ** 31 - 1),
  engine: EngineSchema.default({ kind: 'onnx', executionProvider: 'cpu', threads: 0 }),
  model: z.unknown().superRefine(refuseModelBase).pipe(ModelSchema).default({ preset: 'tiny' }),
  data: DataSchema,
  sft: SftSchema,
  evaluation: EvaluationSchema,
  checkpoints: z.strictObject({ keepLast: int(1, 1000) }).default({ keepLast: 3 }),
  /** The thinking reward model stage (runs when present). */
  rewardModel: RewardModelSchema.optional(),
  /** The Trust-GRPO stage (runs when present). */
  rl: RlSchema.optional(),
  /** Experiment tracking (MLflow); none by default. */
  tracking: TrackingSchema.optional(),
  /** Stages to run, in pipeline order (default: all). */
  stages: z.array(z.enum(STAGE_NAMES)).min(1).optional(),
  /** Start at a later stage from a committed checkpoint (e.g. skip SFT). */
  startFrom: z
    .strictObject({
      stage: z.enum(STAGE_NAMES),
      /** The policy checkpoint to start from. */
      checkpointKey: z.string().min(1).optional(),
      /** A committed thinking reward model (when starting at trustGrpo). */
      rewardModelKey: z.string().min(1).optional(),
      /** Use the dataset of this earlier run instead of preparing one (ablations share one dataset). */
      dataRunId: z.string().min(1).optional(),
    })
    .optional(),
}).superRefine((config, ctx) => {
  // Stages named explicitly need their sections; a thinking-reward variant needs a reward model from somewhere.
  const sections = { rewardModel: config.rewardModel, trustGrpo: config.rl } as const;
  (config.stages ?? []).forEach((stage, i) => {
    if (stage in sections && sections[stage as keyof typeof sections] === undefined) {
      ctx.addIssue({ code: 'custom', path: ['stages', i], message: `${stage} needs a ${stage === 'trustGrpo' ? 'rl' : 'rewardModel'} section (see the tiny preset)` });
    }
  });
  const rl = config.rl;
  if (rl && rl.evalEvery > 0 && rl.evalEvery % rl.checkpointEvery !== 0) {
    ctx.addIssue({ code: 'custom', path: ['rl', 'evalEvery'], message: 'must be a multiple of rl.checkpointEvery (evaluation reads the checkpoint of that step)' });
  }
  // The built-in model's shape is checked here, before anything starts, not by the worker that would build it; and
  // nothing generates more tokens than it has text positions (the prompt takes some of them too). (The torch engine
  // brings its own model, whose config.json bounds the positions: assertRunnable checks that.)
  const builtIn = config.engine.kind === 'onnx';
  const shape = builtIn ? modelShapeError(config) : undefined;
  if (shape) ctx.addIssue({ code: 'custom', path: shape.path, message: shape.message });
  const maxLength = builtIn && !shape ? modelConfig(config, 1).maxLength : Number.POSITIVE_INFINITY;
  for (const { path, tokens } of generatedTokens(config, 'policy')) {
    if (tokens >= maxLength) {
      ctx.addIssue({ code: 'custom', path, message: `${tokens} is not below the model's ${maxLength} text positions (model.maxLength), which the prompt shares: use fewer, or raise model.maxLength` });
    }
  }
  if (rl && rl.miniBatches > rl.promptsPerStep * rl.groupSize) {
    ctx.addIssue({ code: 'custom', path: ['rl', 'miniBatches'], message: `${rl.miniBatches} mini-batches of ${rl.promptsPerStep * rl.groupSize} rollouts per step (promptsPerStep × groupSize) would leave some empty: use at most ${rl.promptsPerStep * rl.groupSize}` });
  }
  if (config.engine.kind === 'onnx' && rl?.tisCap !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['rl', 'tisCap'], message: 'the onnx engine samples with the graphs it trains with, so there is no sampler–trainer mismatch to correct: remove rl.tisCap, or use engine.kind torch' });
  }
  if (config.engine.kind === 'torch' && config.engine.rollout?.tensorParallel !== undefined) {
    const { processes, rollout } = config.engine;
    if (rollout.backend !== 'vllm') {
      ctx.addIssue({ code: 'custom', path: ['engine', 'rollout', 'tensorParallel'], message: 'tensorParallel is a setting of the vllm backend: remove it, or use backend vllm' });
    } else if (processes % (rollout.tensorParallel ?? 1) !== 0) {
      ctx.addIssue({ code: 'custom', path: ['engine', 'rollout', 'tensorParallel'], message: `${rollout.tensorParallel} does not divide engine.processes (${processes}): each vLLM engine spans tensorParallel of the engine's processes, so use a divisor of ${processes}` });
    }
  }
  // (With the onnx engine the benchmarks run too, each prompt adapted to Sophia's tiny model: the path works, the
  // numbers say nothing about a real vision-language model; docs/benchmarks.md.)
  for (const [name, bench] of Object.entries(config.evaluation.benchmarks ?? {})) {
    if (!/^s3:\/\/[^/]+/i.test(bench.data) && !bench.data.startsWith('/')) {
      ctx.addIssue({ code: 'custom', path: ['evaluation', 'benchmarks', name, 'data'], message: `${JSON.stringify(bench.data)} must be an absolute path on the GPU workers or s3://bucket/prefix` });
    }
  }
  const source = config.data.source;
  if (source) {
    try {
      validateDatasetOptions(datasetOptionsOf(source), 'data.source');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      ctx.addIssue({ code: 'custom', path: err.field.split('.'), message: err.message.slice(err.field.length + 2) });
    }
    if (config.engine.kind !== 'torch') {
      ctx.addIssue({ code: 'custom', path: ['data', 'source'], message: 'a real dataset needs a Hugging Face vision-language model (its images and questions are the real thing, not the tiny world\'s 16-pixel images and 40-letter alphabet): use engine.kind torch with engine.model, or remove data.source' });
    }
    if (config.sft.steps > 0 && (config.stages ?? STAGE_NAMES).includes('sftWarmup') && !config.startFrom) {
      ctx.addIssue({ code: 'custom', path: ['sft', 'steps'], message: `${config.sft.steps} SFT steps need teacher responses, which a real dataset does not have: set sft.steps: 0 (RL starts from the model as it is, as SophiaVL-R1 starts from Qwen2.5-VL-7B-Instruct)` });
    }
  }
  if (config.rewardModel?.kind === 'likelihood') {
    if (config.rewardModel.init === 'scratch') {
      ctx.addIssue({ code: 'custom', path: ['rewardModel', 'init'], message: 'a likelihood judge is the SFT policy itself (kind likelihood): remove init: scratch, or use kind: head' });
    }
    if (config.engine.kind === 'torch' && config.engine.rewardModel !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['engine', 'rewardModel'], message: 'a likelihood judge is the SFT policy itself, not a model of its own: remove engine.rewardModel, or use rewardModel.kind: head' });
    }
  }
  if (config.engine.kind === 'torch' && config.rewardModel?.init === 'scratch') {
    ctx.addIssue({ code: 'custom', path: ['rewardModel', 'init'], message: "scratch (random weights) is for the onnx engine's own architecture; with engine.kind torch the reward model starts from engine.rewardModel, or from the SFT policy when that is absent: use init: policy" });
  }
  const runsRewardModel = config.rewardModel !== undefined && (config.stages ?? STAGE_NAMES).includes('rewardModel');
  if (source && runsRewardModel && config.rewardModel?.annotator.kind === 'programmatic') {
    ctx.addIssue({ code: 'custom', path: ['rewardModel', 'annotator'], message: "the programmatic judge checks responses against the tiny world's true steps, which a real dataset does not have: use { kind: judge, name: NAME } (an LLM judge configured on the workers), or leave the rewardModel stage out and set startFrom.rewardModelKey (or rl.variant grpo)" });
  }
  if (rl && rl.variant !== 'grpo' && !runsRewardModel && !config.startFrom?.rewardModelKey) {
    ctx.addIssue({ code: 'custom', path: ['rl', 'variant'], message: `${rl.variant} needs a reward model: add a rewardModel section, or set startFrom.rewardModelKey, or use variant grpo` });
  }
});

export type RunConfig = z.infer<typeof RunConfigSchema>;

/**
 * The response lengths a run generates and a model must hold after the prompt: the policy's (evaluation and its
 * benchmarks, reward-model data, RL) or the reward model's, which scores the reward-model data and the RL responses.
 */
function generatedTokens(config: Pick<RunConfig, 'evaluation' | 'rewardModel' | 'rl'>, model: 'policy' | 'reward'): { path: string[]; tokens: number }[] {
  const all: [string[], number | undefined][] = [
    [['evaluation', 'maxTokens'], model === 'policy' ? config.evaluation.maxTokens : undefined],
    ...Object.entries(config.evaluation.benchmarks ?? {}).map(([name, b]): [string[], number | undefined] => [['evaluation', 'benchmarks', name, 'maxTokens'], model === 'policy' ? b.maxTokens : undefined]),
    [['rewardModel', 'data', 'maxTokens'], config.rewardModel?.data.maxTokens],
    [['rl', 'maxTokens'], config.rl?.maxTokens],
  ];
  return all.filter((g): g is [string[], number] => g[1] !== undefined).map(([path, tokens]) => ({ path, tokens }));
}

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
    sft: { steps: 150, batchSize: 32, lr: 2e-3, warmupSteps: 20, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 50, patience: 3, chunkSteps: 50 },
    evaluation: { ...base.evaluation, k: 2 },
    rewardModel: {
      data: { prompts: 40, samplesPerPrompt: 4, temperatures: [0.7, 1.5], maxTokens: 48, heldOutShare: 0.25 },
      steps: 40, batchSize: 16, lr: 1e-3, warmupSteps: 5, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 20, patience: 3, chunkSteps: 20,
    },
    rl: {
      groupSize: 4, promptsPerStep: 4, alpha: 0.3, clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, lr: 1e-4, weightDecay: 0.01, maxGradNorm: 4,
      temperature: 1, maxTokens: 48, steps: 6, microBatch: 16, checkpointEvery: 3, evalEvery: 3, evalExamples: 4, variant: 'trust-grpo',
    },
  },
  tiny: {
    ...base,
    name: 'tiny: the tiny world on a laptop',
    data: { perFamily: { train: 2000, test: 100, ood: 100 }, validationPerFamily: 20 },
    sft: { steps: 2000, batchSize: 32, lr: 2e-3, warmupSteps: 50, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 200, patience: 4, chunkSteps: 400 },
    rewardModel: {
      // Balancing caps each score bin at 500 (the median bin would leave < 1000 items: the model overfits them).
      data: { prompts: 600, samplesPerPrompt: 8, temperatures: [0.5, 1, 1.5, 2], maxTokens: 64, perBin: 500, heldOutShare: 0.15 },
      steps: 400, batchSize: 32, lr: 3e-4, warmupSteps: 30, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 100, patience: 2, chunkSteps: 200,
    },
    rl: {
      groupSize: 8, promptsPerStep: 8, alpha: 0.3, clipEps: 0.2, klCoef: 0.04, entropyCoef: 1e-3, lr: 5e-5, weightDecay: 0.01, maxGradNorm: 4,
      temperature: 1, maxTokens: 64, steps: 150, microBatch: 32, checkpointEvery: 10, evalEvery: 50, evalExamples: 20, variant: 'trust-grpo',
    },
  },
  paper: {
    name: 'paper: SophiaVL-R1-7B hyperparameters on the torch engine (Qwen2.5-VL-7B policy, 3B reward model)',
    seed: 42,
    // The preset cannot know where the models are: engine.model (and engine.rewardModel) come from the run's file.
    engine: { kind: 'torch', gradientCheckpointing: true },
    model: { preset: 'small' },
    data: { perFamily: { train: 20000, test: 500, ood: 500 }, validationPerFamily: 100 },
    sft: { steps: 1000, batchSize: 128, lr: 1e-5, warmupSteps: 30, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 100, patience: 5, chunkSteps: 100 },
    evaluation: { k: 8, temperature: 1, maxTokens: 1024, promptsPerBatch: 64 },
    // ≈ 160k annotated responses, the order of the paper's 156k; training settings are ours (the paper gives none here).
    rewardModel: {
      data: { prompts: 20000, samplesPerPrompt: 8, temperatures: [0.6, 1, 1.4], maxTokens: 1024, heldOutShare: 0.05 },
      annotator: { kind: 'judge', name: 'qwen2.5-vl-72b' },
      steps: 2000, batchSize: 128, lr: 1e-5, warmupSteps: 50, minLrRatio: 0.1, weightDecay: 0.01, maxGradNorm: 4, evalEvery: 200, patience: 5, chunkSteps: 200,
    },
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

/**
 * Merges `override` into `base` (objects recursively; arrays and values replace). Only own keys are read and
 * every key is written as an own property: a `__proto__` key from JSON or YAML stays a (then unknown, so
 * rejected) field instead of replacing the result's prototype, where the strict schema would never see it.
 */
export function mergeConfig(base: unknown, override: unknown): unknown {
  if (override === undefined) return base;
  if (typeof base !== 'object' || base === null || Array.isArray(base) || typeof override !== 'object' || override === null || Array.isArray(override)) return override;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(override)) {
    const merged = mergeConfig(Object.hasOwn(out, k) ? out[k] : undefined, v);
    Object.defineProperty(out, k, { value: merged, enumerable: true, writable: true, configurable: true });
  }
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

/** Run-config field of each model-config field `validateModelConfig` may name. */
const MODEL_FIELD_PATHS: Record<string, string[]> = {
  'model.image.patch': ['model', 'patch'],
  'model.image.size': ['model', 'imageSize'],
};

/** The first thing wrong with the model's shape (width not divisible by heads, a patch that does not divide the image, …). */
function modelShapeError(config: Pick<RunConfig, 'model'>): { path: string[]; message: string } | undefined {
  try {
    validateModelConfig(modelConfig(config, 1));
    return undefined;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const reason = err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
    return { path: MODEL_FIELD_PATHS[err.field] ?? err.field.split('.'), message: reason };
  }
}

/** The onnx engine's model config for a run (the tokenizer decides the vocabulary). */
export function modelConfig(config: Pick<RunConfig, 'model'>, vocabSize: number): ModelConfig {
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

/**
 * Where a torch run's model of `kind` is, as the config says it (a local directory or an s3:// URI): the reward
 * model's is `engine.rewardModel`, else the policy's (`rewardModel.init: policy`). An s3:// URI is resolved into
 * the worker's model cache (`resolveModel`, storage/model-cache.ts) before `modelSpecOf` can use it.
 */
export function pretrainedUriOf(config: RunConfig, kind: ModelKind): { uri: string; field: 'engine.model' | 'engine.rewardModel' } {
  if (config.engine.kind !== 'torch') throw new TypeError(`pretrainedUriOf: engine.kind ${config.engine.kind} trains Sophia's own architecture, not a pretrained model`);
  const reward = kind === 'reward' ? config.engine.rewardModel : undefined;
  return reward !== undefined ? { uri: reward, field: 'engine.rewardModel' } : { uri: config.engine.model, field: 'engine.model' };
}

/**
 * What an engine of this run starts from (`Engine.init`): for onnx, Sophia's architecture from the `model` section
 * (`modelConfig` with the built-in tokenizer's vocabulary) as a `kind` model; for torch, the Hugging Face model
 * directory of `kind` (`pretrainedUriOf`): `localDir` when given (where `resolveModel` put an s3:// model), else
 * the config's own directory. A reward model without `engine.rewardModel` starts from the policy's directory; the
 * reward-model activity then loads the SFT policy's weights into it, as with onnx (`rewardModel.init: policy`).
 */
export function modelSpecOf(config: RunConfig, kind: ModelKind, localDir?: string): ModelSpec {
  if (config.engine.kind === 'onnx') return { ...modelConfig(config, new Tokenizer().vocabSize), kind };
  if (localDir !== undefined) return { kind, pretrained: localDir } satisfies PretrainedModel;
  const { uri, field } = pretrainedUriOf(config, kind);
  const location = parseModelLocation(uri, field);
  if (location.kind !== 'local') {
    throw new TypeError(`modelSpecOf: ${field} is ${location.uri}: download it first (resolveModel in storage/model-cache.ts) and pass its directory as localDir`);
  }
  return { kind, pretrained: location.dir } satisfies PretrainedModel;
}

/** The SFT warmup's settings of a run: its schedule, with data order and teacher responses seeded by the run seed. */
export function sftSettings(config: RunConfig): SftSettings {
  return { ...config.sft, seed: config.seed };
}

/** The benchmark evaluation's settings of a run (the k samples are seeded from the run seed). */
/**
 * Whether RL's frozen reference is an adapter beside the policy's own (LoRA on the torch engine: the SFT state's
 * adapter over the policy's base weights, in the policy's engine) rather than a model of its own in another engine.
 */
export function referenceIsAdapter(config: RunConfig): boolean {
  return config.engine.kind === 'torch' && config.engine.lora !== undefined;
}

export function evaluationSettings(config: RunConfig): EvalSettings {
  const { k, temperature, maxTokens, promptsPerBatch } = config.evaluation;
  return { k, temperature, maxTokens, promptsPerBatch, seed: config.seed + 17 };
}

/**
 * Problems that make a valid config unrunnable on this installation (checked where runs are submitted: the CLI and
 * `POST /runs`). For torch: each local model directory exists here, has a config.json of a supported class, and its `max_position_embeddings` holds the prompt plus the longest response.
 * An s3:// model is checked by the worker once downloaded (`resolveModel`).
 */
export function assertRunnable(config: RunConfig): void {
  if (config.engine.kind === 'torch') assertTorchRunnable(config);
  if (config.startFrom && config.startFrom.stage !== 'prepareData' && !config.startFrom.checkpointKey && config.startFrom.stage !== 'sftWarmup') {
    throw new ConfigError('startFrom.checkpointKey', `starting at ${config.startFrom.stage} needs the checkpoint to start from`);
  }
}

function assertTorchRunnable(config: RunConfig): void {
  for (const kind of ['policy', 'reward'] as const) {
    const { uri, field } = pretrainedUriOf(config, kind);
    if (kind === 'reward' && field === 'engine.model') continue; // the policy's directory, checked already
    const location = parseModelLocation(uri, field);
    if (location.kind !== 'local') continue;
    const { text } = readPretrainedShape(location.dir, field);
    for (const { path, tokens } of generatedTokens(config, kind)) {
      if (tokens >= text.maxPositions) {
        throw new ConfigError(path.join('.'), `${tokens} is not below the ${text.maxPositions} positions of ${field} (max_position_embeddings in its config.json), which the prompt shares`, {
          hint: 'Generate fewer tokens',
        });
      }
    }
  }
}
