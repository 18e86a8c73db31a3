/**
 * The torch engine's part of a run's estimate (`estimateRun`, config/limits.ts): what each pipeline stage holds on
 * one GPU worker, from the models' config.json (config/pretrained.ts), and how large their checkpoints are. Like the
 * rest of the estimate this is arithmetic over the config — a documented approximation, not a measurement:
 *
 *  - weights: parameters × the dtype's bytes (`engine.dtype`; auto = bfloat16 on a GPU, float32 on CPU).
 *  - a model that trains also holds its gradients (the backward's, in the weights' dtype, plus their float32 sum over
 *    micro-batches) and AdamW's two moments, counted as float32 (8 bytes a parameter). There are no float32 master
 *    weights: the engine trains the bf16 parameters directly. (torch's AdamW keeps the moments in the parameters'
 *    dtype today, bf16 for bf16 weights; float32 is counted, the upper bound.)
 *  - with `engine.lora` only the adapters (and a reward model's head) train: their float32 weights, gradients (and
 *    their sum) and moments, 20 bytes per adapter parameter, beside the frozen weights. An adapter on a module of
 *    n inputs and m outputs has rank · (n + m) parameters: q/k/v/o and the MLP's gate/up/down projections of each
 *    decoder layer, the vision blocks' qkv/proj and their MLP's gate/up/down (Qwen2.5-VL; Qwen2-VL's fc1/fc2); a
 *    name not among these (a pattern, another module) is counted as each layer's largest projection, once per
 *    decoder layer and vision block (an upper bound). A checkpoint holds the frozen weights, the adapter and its
 *    moments.
 *  - the frozen reference model (RL's KL term) is a second copy of the policy's weights (with LoRA: the SFT adapter
 *    beside the policy's own, over the same base weights: `referenceIsAdapter`; with `engine.offloadFrozen` it and
 *    RL's reward model are in host memory and the GPU holds about one decoder layer of each at a time); the thinking reward model
 *    is its own weights (`engine.rewardModel`, else the policy's size plus a scalar head).
 *  - activations kept for the backward pass, per token of a training row (prompt: image tokens + a 256-token text
 *    allowance; response: the stage's maxTokens, and for SFT's teacher responses `model.maxLength`, the tiny world's
 *    character-level bound, which a BPE tokenizer does not exceed), per decoder layer: the two RMSNorms' inputs and outputs (4h), the
 *    q/k/v projections and the rotated q/k (2q + 3kv, GQA: kv = key/value heads × head dim), the attention output
 *    (q), the SwiGLU MLP's gate, up, activation and product (4I); attention itself keeps no T × T matrix (SDPA /
 *    flash attention). With gradient checkpointing only each layer's input (h) is kept, plus one layer's full set
 *    while it is recomputed. The vision tower counts the same way per patch (4 patches per image token). The LM head
 *    adds, per response token, the logits in the weights' dtype and three float32 vocabulary-wide tensors (the cast,
 *    log-softmax and its gradient).
 *  - sampling keeps a KV cache instead: rows × positions × layers × 2 × kv × bytes. A stage samples or trains at a
 *    time, so it counts the larger of the two.
 *
 * Stages and the models they hold at once: SFT (the policy, training); reward model (the policy sampling its data and
 * the reward model training: the engine pool keeps both); Trust-GRPO (the policy training, the reference, and the
 * reward model unless the variant is plain grpo); evaluation (the policy, sampling).
 */
import { type PretrainedShape, parseModelLocation, pretrainedParameters, readPretrainedShape } from './pretrained';
import { type RunConfig, type TorchEngineSection, modelConfig, pretrainedUriOf, referenceIsAdapter } from './run-config';
import { STAGE_NAMES, type StageName } from './stages';

export const TORCH_DTYPE_BYTES = { float32: 4, float64: 8, bfloat16: 2, float16: 2 } as const;
export type TorchDtype = keyof typeof TORCH_DTYPE_BYTES;

/** Allowance for a prompt's text (system prompt, question, chat template) beside its image, in tokens. */
const PROMPT_TEXT_TOKENS = 256;
/** The Qwen processors' default lower bound on an image: 56 × 56 pixels, 4 tokens. */
const MIN_IMAGE_TOKENS = 4;

export interface MemoryPart {
  /** What it is, for people: "policy weights (8,292,166,656 parameters, bfloat16)". */
  name: string;
  bytes: number;
}

/** What one stage holds at once on a GPU worker. */
export interface StageMemory {
  stage: StageName;
  parts: MemoryPart[];
  bytes: number;
}

export interface TorchEstimateOptions {
  /** Local directories of the models where they are not the config's own (an s3:// model once `resolveModel` fetched it). */
  models?: { policy?: string; reward?: string };
  /** Whether the worker has a GPU (decides `dtype: auto`); unknown where runs are submitted: a GPU unless `engine.device` is cpu. */
  cuda?: boolean;
}

export interface TorchEstimate {
  dtype: TorchDtype;
  /** The policy's parameters (0 when its config.json is not readable here). */
  parameters: number;
  /** The stage that needs the most memory, with its parts (undefined when the policy's size is unknown here). */
  peak: StageMemory | undefined;
  /** Bytes of one checkpoint (weights + AdamW moments) of the model each training stage saves. */
  checkpointBytes: { sftWarmup: number; rewardModel: number; trustGrpo: number };
  /** The models whose config.json is not readable here (an s3:// model before the worker downloads it): not counted. */
  unknownModels: string[];
}

/** The dtype the engine will use: `engine.dtype`, or for auto bfloat16 on a GPU and float32 on CPU. */
export function resolveTorchDtype(engine: TorchEngineSection, cuda: boolean | undefined): TorchDtype {
  if (engine.dtype !== 'auto') return engine.dtype;
  const gpu = engine.device === 'cuda' || (engine.device === 'auto' && (cuda ?? true));
  return gpu ? 'bfloat16' : 'float32';
}

/** Values one token keeps per decoder layer for the backward pass (module comment). */
const layerValues = (hidden: number, q: number, kv: number, intermediate: number) => 4 * hidden + 3 * q + 3 * kv + 4 * intermediate;

/** Activation bytes of `tokens` tokens through `layers` layers (one layer's full set + layer inputs when checkpointing). */
function stackBytes(tokens: number, layers: number, hidden: number, perLayer: number, bytes: number, checkpointing: boolean): number {
  return tokens * bytes * (checkpointing ? layers * hidden + perLayer : layers * perLayer);
}

const fmtInt = (n: number) => n.toLocaleString('en-US');

/** Parameters of a LoRA adapter of `rank` on the modules named `targets` of a model of this shape (module comment). */
export function loraParameters(shape: PretrainedShape, rank: number, targets: readonly string[]): number {
  const t = shape.text;
  const q = t.heads * t.headDim;
  const kv = t.kvHeads * t.headDim;
  const text: Record<string, number> = { q_proj: t.hidden + q, k_proj: t.hidden + kv, v_proj: t.hidden + kv, o_proj: q + t.hidden, gate_proj: t.hidden + t.intermediate, up_proj: t.hidden + t.intermediate, down_proj: t.intermediate + t.hidden };
  const v = shape.vision;
  // The vision blocks' MLP: Qwen2.5-VL's gate/up/down (SwiGLU), Qwen2-VL's fc1/fc2.
  const mlp: Record<string, number> = !v
    ? {}
    : v.family === 'qwen2_vl'
      ? { fc1: v.hidden + v.intermediate, fc2: v.intermediate + v.hidden }
      : { gate_proj: v.hidden + v.intermediate, up_proj: v.hidden + v.intermediate, down_proj: v.intermediate + v.hidden };
  const vision: Record<string, number> = v ? { qkv: 4 * v.hidden, proj: 2 * v.hidden, ...mlp } : {};
  const largest = (sizes: Record<string, number>) => Math.max(0, ...Object.values(sizes));
  let perText = 0;
  let perVision = 0;
  for (const name of new Set(targets)) {
    const known = name in text || name in vision;
    perText += known ? (text[name] ?? 0) : largest(text);
    perVision += known ? (vision[name] ?? 0) : largest(vision);
  }
  return rank * (t.layers * perText + (v ? v.depth * perVision : 0));
}

/** The torch part of the estimate for `config` (engine.kind torch). Throws the config's `ConfigError` for a bad local model. */
export function estimateTorch(config: RunConfig, engine: TorchEngineSection, options: TorchEstimateOptions = {}): TorchEstimate {
  const dtype = resolveTorchDtype(engine, options.cuda);
  const b = TORCH_DTYPE_BYTES[dtype];
  const unknownModels: string[] = [];
  const shapeOf = (kind: 'policy' | 'reward'): PretrainedShape | undefined => {
    const { uri, field } = pretrainedUriOf(config, kind);
    const given = kind === 'policy' ? options.models?.policy : (options.models?.reward ?? (field === 'engine.model' ? options.models?.policy : undefined));
    const location = parseModelLocation(uri, field);
    const dir = given ?? (location.kind === 'local' ? location.dir : undefined);
    if (dir === undefined) {
      if (!unknownModels.includes(`${field} (${uri})`)) unknownModels.push(`${field} (${uri})`);
      return undefined;
    }
    return readPretrainedShape(dir, field);
  };
  const policy = shapeOf('policy');
  const reward = shapeOf('reward');
  const P = policy ? pretrainedParameters(policy).total : 0;
  // The reward model is its backbone plus a scalar head (hidden → 1, with bias).
  const R = reward ? pretrainedParameters(reward).total + reward.text.hidden + 1 : 0;
  const moments = Math.max(8, 2 * b);
  const lora = engine.lora;
  // With LoRA: the adapter's parameters (float32), and a reward model's head, are what trains.
  const adapterOf = (shape: PretrainedShape | undefined) => (lora && shape ? loraParameters(shape, lora.rank, lora.targetModules) : 0);
  const AP = adapterOf(policy);
  const AR = reward && lora ? adapterOf(reward) + reward.text.hidden + 1 : 0;
  const stateBytes = (n: number, adapter: number) => (lora ? n * b + adapter * 12 : n * (b + moments));
  const checkpointBytes = { sftWarmup: stateBytes(P, AP), rewardModel: stateBytes(R, AR), trustGrpo: stateBytes(P, AP) };
  if (!policy || !reward) return { dtype, parameters: P, peak: undefined, checkpointBytes, unknownModels };

  const weights = (who: string, n: number): MemoryPart => ({ name: `${who} weights (${fmtInt(n)} parameters, ${dtype})`, bytes: n * b });
  // engine.offloadFrozen: the weights live in host memory; the GPU holds about one decoder layer's at a time.
  const offloaded = (who: string, n: number, layers: number): MemoryPart => ({ name: `${who} weights (${fmtInt(n)} parameters, ${dtype}, offloaded to host memory: one decoder layer at a time on the GPU)`, bytes: (n * b) / layers });
  const training = (who: string, n: number, adapter: number): MemoryPart[] =>
    lora
      ? [
          { name: `${who} weights (${fmtInt(n)} parameters, ${dtype}, frozen)`, bytes: n * b },
          { name: `${who} LoRA adapter (${fmtInt(adapter)} parameters, float32: weights, gradients and their sum, AdamW moments)`, bytes: adapter * 20 },
        ]
      : [
          weights(who, n),
          { name: `${who} gradients (${dtype}, summed in ${b === 8 ? 'float64' : 'float32'})`, bytes: n * (b + (b === 8 ? 8 : 4)) },
          { name: `${who} AdamW moments (2 × ${b === 8 ? 'float64' : 'float32'})`, bytes: n * moments },
        ];
  // The tiny world's images are model.imageSize pixels square (the data stage draws them at that size), and its
  // teacher responses fit model.maxLength characters (what the onnx model holds).
  const tinyWorld = modelConfig(config, 1);
  const imageSize = tinyWorld.image.size;
  const imageTokens = (shape: PretrainedShape): number => {
    if (!shape.vision) return 0;
    const side = shape.vision.patch * shape.vision.spatialMerge;
    return Math.max(MIN_IMAGE_TOKENS, Math.round(imageSize / side) ** 2);
  };
  const positions = (shape: PretrainedShape, response: number) => Math.min(shape.text.maxPositions, imageTokens(shape) + PROMPT_TEXT_TOKENS + response);
  /** Training activations of `rows` rows with `response` response tokens each (policy: with the LM head). */
  const activations = (shape: PretrainedShape, rows: number, response: number, lmHead: boolean): MemoryPart => {
    const t = shape.text;
    const tokens = rows * positions(shape, response);
    let bytes = stackBytes(tokens, t.layers, t.hidden, layerValues(t.hidden, t.heads * t.headDim, t.kvHeads * t.headDim, t.intermediate), b, engine.gradientCheckpointing);
    if (shape.vision) {
      const v = shape.vision;
      const patches = rows * imageTokens(shape) * v.spatialMerge ** 2;
      bytes += stackBytes(patches, v.depth, v.hidden, layerValues(v.hidden, v.hidden, v.hidden, v.intermediate), b, engine.gradientCheckpointing);
    }
    if (lmHead) bytes += rows * Math.min(response, t.maxPositions) * t.vocabSize * (b + 12);
    return { name: `activations (${fmtInt(rows)} rows × ${fmtInt(positions(shape, response))} positions${engine.gradientCheckpointing ? ', gradient checkpointing' : ', no gradient checkpointing'})`, bytes };
  };
  const kvCache = (shape: PretrainedShape, rows: number, response: number): MemoryPart => {
    const t = shape.text;
    const bytes = rows * positions(shape, response) * t.layers * 2 * t.kvHeads * t.headDim * b;
    return { name: `KV cache (${fmtInt(rows)} rows × ${fmtInt(positions(shape, response))} positions)`, bytes };
  };
  const larger = (a: MemoryPart, c: MemoryPart) => (a.bytes >= c.bytes ? a : c);
  const ev = config.evaluation;
  const stages: { stage: StageName; parts: MemoryPart[] }[] = [
    { stage: 'sftWarmup', parts: [...training('policy', P, AP), activations(policy, config.sft.batchSize, tinyWorld.maxLength, true)] },
    { stage: 'evaluation', parts: [weights('policy', P), kvCache(policy, ev.promptsPerBatch * Math.max(1, ev.k), ev.maxTokens)] },
  ];
  const rm = config.rewardModel;
  if (rm) {
    const sampling = kvCache(policy, ev.promptsPerBatch * Math.ceil(rm.data.samplesPerPrompt / rm.data.temperatures.length), rm.data.maxTokens);
    stages.push({ stage: 'rewardModel', parts: [weights('policy', P), ...training('reward model', R, AR), larger(activations(reward, rm.batchSize, rm.data.maxTokens, false), sampling)] });
  }
  const rl = config.rl;
  if (rl) {
    stages.push({
      stage: 'trustGrpo',
      parts: [
        ...training('policy', P, AP),
        referenceIsAdapter(config)
          ? { name: 'reference LoRA adapter (float32, over the policy\'s base weights)', bytes: AP * 4 }
          : engine.offloadFrozen
            ? offloaded('reference model', P, policy.text.layers)
            : { name: `reference model weights (${dtype})`, bytes: P * b },
        ...(rl.variant === 'grpo' ? [] : [engine.offloadFrozen ? offloaded('reward model', R, reward.text.layers) : weights('reward model', R)]),
        larger(activations(policy, rl.microBatch, rl.maxTokens, true), kvCache(policy, rl.promptsPerStep * rl.groupSize, rl.maxTokens)),
      ],
    });
  }
  const runs = new Set<StageName>(config.stages ?? STAGE_NAMES);
  const sized = stages.filter((s) => runs.has(s.stage)).map((s) => ({ ...s, bytes: s.parts.reduce((sum, p) => sum + p.bytes, 0) }));
  const peak = sized.reduce<StageMemory | undefined>((best, s) => (best === undefined || s.bytes > best.bytes ? s : best), undefined);
  return { dtype, parameters: P, peak, checkpointBytes, unknownModels };
}
