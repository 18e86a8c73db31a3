/**
 * Assembles the ONNX graphs the engine runs, all from the one forward definition in `transformer.ts`:
 *
 *   train (fused)  batch + params + AdamW state → loss, metrics, updated params/moments, grad norm, finite
 *   grad           batch + params → loss, metrics, gradients            (forwardBackward with accumulation)
 *   optim          params + gradients + AdamW state → updated state    (optimStep after forwardBackward)
 *   logprobs       batch + params → log π(target) per position          (reference model for KL, old logprobs)
 *   score          batch + params → reward-model score per row
 *   prefill/decode the sampler's KV-cache graphs
 *
 * Training graphs take all parameters as one flat float vector (`params`, layout from `paramLayout`), sliced
 * into tensors inside the graph; gradients come back flat (`grad`), and AdamW updates the flat vectors (`m`,
 * `v`) in a few large ops. Outputs: `loss`, `metric:<name>`, `new_params`, `new_m`, `new_v`, `grad_norm`,
 * `finite`. Inference graphs take one input per parameter (`p:<name>`).
 */
import { gradients } from '../onnx/autodiff';
import { Graph, type FloatDType, type Value } from '../onnx/graph';
import * as op from '../onnx/ops';
import { adamwFlat, adamwInputs, allFinite } from '../onnx/optim';
import { type ModelConfig, imageTokens, paramLayout } from './config';
import { type LossOutput, grpoLoss, rmLoss, sftLoss, targetLogprobs } from './losses';
import { type SequenceInputs, backbone, decodeStep, lmLogits, rewardScore } from './transformer';

export type LossKind = 'sft' | 'grpo' | 'rm';

/** Names of the scalar metrics each loss reports (graph outputs `metric:<name>`). */
export const LOSS_METRICS: Record<LossKind, readonly string[]> = {
  sft: ['tokens'],
  grpo: ['policy_loss', 'kl', 'entropy', 'clip_fraction', 'ratio_mean', 'ratio_sq_mean', 'logprob_diff_mean', 'logprob_diff_max', 'tokens'],
  rm: ['mae'],
};

/**
 * One input per parameter (`p:<name>`), in layout order: no slicing of the flat vector at run time (the engine
 * feeds zero-copy views of its flat buffer; slicing it in the graph cost a 13 MB copy per small-preset step).
 */
function separateParams(g: Graph, config: ModelConfig): { params: Record<string, Value>; list: Value[] } {
  const params: Record<string, Value> = {};
  const list = paramLayout(config).specs.map((spec) => (params[spec.name] = g.input(`p:${spec.name}`, g.floatType, spec.shape)));
  return { params, list };
}

/** Per-parameter gradients, flattened and concatenated in layout order: (P). */
function flatGradient(g: Graph, grads: readonly Value[]): Value {
  return op.concat(g, grads.map((x) => op.reshape(g, x, [-1])), 0);
}

/** (P) in the graph's float type: 1 where AdamW's weight decay applies, 0 elsewhere. */
function decayMask(g: Graph, config: ModelConfig): Value {
  const layout = paramLayout(config);
  const mask = g.floatType === 'float32' ? new Float32Array(layout.total) : new Float64Array(layout.total);
  layout.specs.forEach((spec, i) => {
    if (spec.decay) mask.fill(1, layout.offsets[i], layout.offsets[i]! + layout.sizes[i]!);
  });
  return g.constant(g.floatType, [layout.total], mask);
}

function sequenceInputs(g: Graph, config: ModelConfig, batch: number, seqLen: number): SequenceInputs {
  const { size, channels } = config.image;
  return {
    image: g.input('image', g.floatType, [batch, channels, size, size]),
    tokens: g.input('tokens', 'int64', [batch, seqLen]),
    positions: g.input('positions', 'int64', [batch, seqLen]),
    attentionMask: g.input('attention_mask', g.floatType, [batch, seqLen]),
  };
}

function checkKind(config: ModelConfig, loss: LossKind): void {
  const needs = loss === 'rm' ? 'reward' : 'policy';
  if (config.kind !== needs) throw new TypeError(`the ${loss} loss needs a ${needs} model (this one is a ${config.kind} model)`);
}

/**
 * Forward + loss for one batch shape (declares the batch inputs). `lossFrom`: no text position before it is read —
 * sft and grpo: the loss mask is 0 there in every row, so the graph computes logits only from there on (the
 * per-position inputs are fed whole and sliced here); rm: every row's last real token is at or after it, and
 * `last_index` counts from it. The last block computes only those positions (`backbone`). The loss and metrics
 * are the same (all are means over masked positions or read the last tokens); the engine picks `lossFrom` from
 * the batch (`lossStart`, `lastIndexStart`).
 */
export function forwardLoss(
  g: Graph,
  config: ModelConfig,
  params: Record<string, Value>,
  loss: LossKind,
  batch: number,
  seqLen: number,
  lossFrom = 0,
): LossOutput {
  checkKind(config, loss);
  if (!Number.isInteger(lossFrom) || lossFrom < 0 || lossFrom >= seqLen) throw new RangeError(`forwardLoss: lossFrom ${lossFrom} is outside [0, ${seqLen})`);
  const seq = sequenceInputs(g, config, batch, seqLen);
  const { hidden: text } = backbone(g, config, params, seq, imageTokens(config) + lossFrom);
  if (loss === 'rm') {
    const lastIndex = g.input('last_index', 'int64', [batch]);
    return rmLoss(g, rewardScore(g, params, text, lastIndex), g.input('score_targets', g.floatType, [batch]));
  }
  const logits = lmLogits(g, params, text);
  const positions = (name: string, dtype: 'int64' | FloatDType) => {
    const x = g.input(name, dtype, [batch, seqLen]);
    return lossFrom > 0 ? op.slice(g, x, 1, lossFrom, seqLen) : x;
  };
  const targets = positions('targets', 'int64');
  const lossMask = positions('loss_mask', g.floatType);
  if (loss === 'sft') return sftLoss(g, logits, targets, lossMask);
  const s = (name: string) => g.input(name, g.floatType, []);
  return grpoLoss(g, logits, {
    targets,
    lossMask,
    oldLogprobs: positions('old_logprobs', g.floatType),
    refLogprobs: positions('ref_logprobs', g.floatType),
    advantages: g.input('advantages', g.floatType, [batch]),
    clipEps: s('clip_eps'),
    klCoef: s('kl_coef'),
    entropyCoef: s('entropy_coef'),
    temperature: s('temperature'),
  });
}

function outputLoss(g: Graph, out: LossOutput, loss: LossKind): void {
  g.output(out.loss, 'loss');
  for (const name of LOSS_METRICS[loss]) g.output(out.metrics[name]!, `metric:${name}`);
}

/** The part of a graph's name that says where it starts (`forwardLoss`'s `lossFrom`, `buildScoreGraph`'s `from`). */
const fromName = (from: number) => (from ? `_from${from}` : '');

/**
 * The first text position whose loss mask is 1 in any row, rounded down to a multiple of `step` (so that batches
 * share graphs): the `lossFrom` of `forwardLoss`. 0 when no position has loss. `mask` is (rows, seqLen).
 */
export function lossStart(mask: ArrayLike<number>, rows: number, seqLen: number, step: number): number {
  let first = seqLen;
  for (let r = 0; r < rows && first > 0; r++) {
    for (let c = 0; c < first; c++) {
      if (mask[r * seqLen + c] !== 0) {
        first = c;
        break;
      }
    }
  }
  return first === seqLen ? 0 : Math.floor(first / step) * step;
}

/**
 * The reward model reads each row's last real token only: the smallest of `lastIndex`, rounded down to a multiple
 * of `step`, is where its graphs can start (`forwardLoss`'s `lossFrom`, `buildScoreGraph`'s `from`).
 */
export function lastIndexStart(lastIndex: ArrayLike<bigint>, step: number): number {
  let first = Infinity;
  for (let r = 0; r < lastIndex.length; r++) first = Math.min(first, Number(lastIndex[r]));
  return Number.isFinite(first) && first > 0 ? Math.floor(first / step) * step : 0;
}

/** The fused training step: forward, backward and AdamW in one graph (one session run per step). */
export function buildTrainGraph(config: ModelConfig, loss: LossKind, batch: number, seqLen: number, dtype: FloatDType = 'float32', lossFrom = 0): Graph {
  const g = new Graph(`train_${loss}_${batch}x${seqLen}${fromName(lossFrom)}`, dtype);
  const total = paramLayout(config).total;
  const { params, list } = separateParams(g, config);
  // The same weights once more as one vector (the engine feeds the buffer the views above point into), for AdamW.
  const flat = g.input('params', dtype, [total]);
  const m = g.input('m', dtype, [total]);
  const v = g.input('v', dtype, [total]);
  const out = forwardLoss(g, config, params, loss, batch, seqLen, lossFrom);
  const grad = flatGradient(g, gradients(g, out.loss, list));
  const updated = adamwFlat(g, flat, grad, m, v, decayMask(g, config), adamwInputs(g));
  outputLoss(g, out, loss);
  g.output(updated.params, 'new_params');
  g.output(updated.m, 'new_m');
  g.output(updated.v, 'new_v');
  g.output(updated.gradNorm, 'grad_norm');
  g.output(allFinite(g, [out.loss, updated.gradNorm]), 'finite');
  return g;
}

/** Forward + backward only: loss, metrics and the flat gradient. */
export function buildGradGraph(config: ModelConfig, loss: LossKind, batch: number, seqLen: number, dtype: FloatDType = 'float32', lossFrom = 0): Graph {
  const g = new Graph(`grad_${loss}_${batch}x${seqLen}${fromName(lossFrom)}`, dtype);
  const { params, list } = separateParams(g, config);
  const out = forwardLoss(g, config, params, loss, batch, seqLen, lossFrom);
  outputLoss(g, out, loss);
  g.output(flatGradient(g, gradients(g, out.loss, list)), 'grad');
  g.output(allFinite(g, [out.loss]), 'finite');
  return g;
}

/** AdamW over a given (accumulated) flat gradient. */
export function buildOptimGraph(config: ModelConfig, dtype: FloatDType = 'float32'): Graph {
  const g = new Graph('optim', dtype);
  const total = paramLayout(config).total;
  const vec = (name: string) => g.input(name, dtype, [total]);
  const updated = adamwFlat(g, vec('params'), vec('grad'), vec('m'), vec('v'), decayMask(g, config), adamwInputs(g));
  g.output(updated.params, 'new_params');
  g.output(updated.m, 'new_m');
  g.output(updated.v, 'new_v');
  g.output(updated.gradNorm, 'grad_norm');
  g.output(allFinite(g, [updated.gradNorm]), 'finite');
  return g;
}

/** log π(target) per position at a given temperature: (B, T). */
export function buildLogprobsGraph(config: ModelConfig, batch: number, seqLen: number, dtype: FloatDType = 'float32'): Graph {
  checkKind(config, 'sft');
  const g = new Graph(`logprobs_${batch}x${seqLen}`, dtype);
  const { params } = separateParams(g, config);
  const { hidden: text } = backbone(g, config, params, sequenceInputs(g, config, batch, seqLen));
  const temperature = g.input('temperature', dtype, []);
  const targets = g.input('targets', 'int64', [batch, seqLen]);
  const { picked } = targetLogprobs(g, op.div(g, lmLogits(g, params, text), temperature), targets);
  g.output(picked, 'logprobs');
  return g;
}

/**
 * Reward-model scores: (B). `from`: every row's last real token is at or after this text position, and `last_index`
 * counts from it; the last block computes only the positions from there on.
 */
export function buildScoreGraph(config: ModelConfig, batch: number, seqLen: number, dtype: FloatDType = 'float32', from = 0): Graph {
  checkKind(config, 'rm');
  if (!Number.isInteger(from) || from < 0 || from >= seqLen) throw new RangeError(`buildScoreGraph: from ${from} is outside [0, ${seqLen})`);
  const g = new Graph(`score_${batch}x${seqLen}${fromName(from)}`, dtype);
  const { params } = separateParams(g, config);
  const { hidden: text } = backbone(g, config, params, sequenceInputs(g, config, batch, seqLen), imageTokens(config) + from);
  g.output(rewardScore(g, params, text, g.input('last_index', 'int64', [batch])), 'score');
  return g;
}

/** Prompt pass of the sampler: last-position logits (B, V) and every layer's keys/values (B, H, N + Tp, hd). */
export function buildPrefillGraph(config: ModelConfig, batch: number, promptLen: number): Graph {
  checkKind(config, 'sft');
  const g = new Graph(`prefill_${batch}x${promptLen}`, 'float32');
  const { params } = separateParams(g, config);
  // Only the last prompt position's logits are read: the last block computes that position alone.
  const { hidden: last, kv } = backbone(g, config, params, sequenceInputs(g, config, batch, promptLen), imageTokens(config) + promptLen - 1);
  g.output(op.reshape(g, lmLogits(g, params, last), [batch, config.vocabSize]), 'logits');
  kv.forEach(({ k, v }, l) => {
    g.output(k, `k:${l}`);
    g.output(v, `v:${l}`);
  });
  return g;
}

/**
 * One decode step for `prompts` × `samples` rows: each prompt's prefix cache (image + `promptLen` prompt slots,
 * shared by its samples) and a per-row cache of `slots` generated tokens. Returns logits (B, V) and the new
 * token's keys/values (B, H, 1, hd). The sampler grows the generated cache in steps, with one graph per size.
 */
export function buildDecodeGraph(config: ModelConfig, prompts: number, samples: number, promptLen: number, slots: number): Graph {
  checkKind(config, 'sft');
  const prefixLen = imageTokens(config) + promptLen;
  if (!Number.isInteger(promptLen) || promptLen < 1 || promptLen > config.maxLength) throw new RangeError(`decode prompt length ${promptLen} is outside [1, ${config.maxLength}]`);
  if (!Number.isInteger(slots) || slots < 1 || slots > config.maxLength) throw new RangeError(`decode cache size ${slots} is outside [1, ${config.maxLength}]`);
  const rows = prompts * samples;
  const g = new Graph(`decode_${prompts}x${samples}_${promptLen}_${slots}`, 'float32');
  const { params } = separateParams(g, config);
  const hd = config.width / config.heads;
  const layerInputs = (prefix: string, shape: number[]) => Array.from({ length: config.layers }, (_, l) => g.input(`${prefix}:${l}`, 'float32', shape));
  const prefixK = layerInputs('prefix_k', [prompts, config.heads, prefixLen, hd]);
  const prefixV = layerInputs('prefix_v', [prompts, config.heads, prefixLen, hd]);
  // Slot-major: the sampler appends a step's keys/values for all rows as one block.
  const genK = layerInputs('gen_k', [slots, rows, config.heads, hd]);
  const genV = layerInputs('gen_v', [slots, rows, config.heads, hd]);
  const { logits, kv } = decodeStep(g, config, params, {
    token: g.input('token', 'int64', [rows, 1]),
    position: g.input('position', 'int64', [rows, 1]),
    samplesPerPrompt: samples,
    prefixK,
    prefixV,
    prefixMask: g.input('prefix_mask', 'float32', [prompts, prefixLen]),
    genK,
    genV,
    genMask: g.input('gen_mask', 'float32', [rows, slots]),
  });
  g.output(logits, 'logits');
  kv.forEach(({ k, v }, l) => {
    g.output(k, `k:${l}`);
    g.output(v, `v:${l}`);
  });
  return g;
}
