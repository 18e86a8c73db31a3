/**
 * The forward graph of Sophia's multimodal transformer, written once with differentiable ops.
 *
 *   image (B, C, S, S) → patches (B, N, C·p²) → linear → image tokens (B, N, d) + image positions
 *   tokens (B, T)      → embeddings (B, T, d) + text positions (from `positions`)
 *   x = [image tokens; text tokens] (B, L = N + T, d) → layers × (x + attn(ln(x)); x + mlp(ln(x))) → ln
 *   policy: logits over the text positions (B, T, V)      reward: sigmoid(w·h[last real token] + b) (B)
 *
 * Attention is causal over the whole sequence (image tokens first) with a key-padding mask, so prompts can be
 * left-padded and sequences right-padded. The same blocks build the KV-cache graphs the sampler uses
 * (`prefill` returns every layer's keys and values; `decodeStep` attends one new token per row to its prompt's
 * shared prefix and to its own generated tokens).
 */
import type { Graph, Value } from '../onnx/graph';
import * as op from '../onnx/ops';
import { type ModelConfig, imageTokens } from './config';

/** Masked-out attention logits get this added (finite, so fully masked rows stay NaN-free). */
const MASKED = -1e9;

/** Graph inputs every forward graph takes. */
export interface SequenceInputs {
  /** (B, C, S, S) float pixels in [0, 1]. */
  image: Value;
  /** (B, T) int64 token ids. */
  tokens: Value;
  /** (B, T) int64 text position of each token. */
  positions: Value;
  /** (B, T) float, 1 for real tokens, 0 for padding. */
  attentionMask: Value;
}

export type Params = Readonly<Record<string, Value>>;

function param(params: Params, name: string): Value {
  const p = params[name];
  if (!p) throw new Error(`model graph: parameter ${name} is missing`);
  return p;
}

/**
 * Outputs of at least this many elements get their bias as a separate Add after a FusedMatMul. A MatMul + Add
 * becomes one onnxruntime Gemm, which first copies the bias into every output row on one thread; on the
 * training graphs' 2688 × 1024 outputs that costs more than a two-thread Add (train step 0.97×, both presets).
 * Decoding's small outputs keep the Gemm (there the split was 1.00–1.02×).
 */
const SEPARATE_BIAS_MIN_ELEMENTS = 1 << 18;

/** x·W (+ b). Activations are folded to 2-D first: one large GEMM (forward and both gradients), not a batch of small ones. */
function linear(g: Graph, x: Value, w: Value, b?: Value): Value {
  const rows = x.shape.slice(0, -1);
  const flat = x.shape.length > 2 ? op.reshape(g, x, [-1, x.shape.at(-1)!]) : x;
  const separateBias = b !== undefined && flat.shape[0]! * w.shape[1]! >= SEPARATE_BIAS_MIN_ELEMENTS;
  const y = separateBias ? op.matmulT(g, flat, w) : op.matmul(g, flat, w);
  const out = b ? op.add(g, y, b) : y;
  return x.shape.length > 2 ? op.reshape(g, out, [...rows, w.shape[1]!]) : out;
}

/** Image tokens: (B, C, S, S) → (B, N, d). */
function embedImage(g: Graph, config: ModelConfig, params: Params, image: Value): Value {
  const { size, channels: c, patch: p } = config.image;
  const grid = size / p;
  const batch = image.shape[0]!;
  if (image.shape.length !== 4 || image.shape[1] !== c || image.shape[2] !== size || image.shape[3] !== size) {
    throw new RangeError(`image must have shape [B, ${c}, ${size}, ${size}] (got [${image.shape.join(', ')}])`);
  }
  const blocks = op.reshape(g, image, [batch, c, grid, p, grid, p]);
  const patches = op.reshape(g, op.transpose(g, blocks, [0, 2, 4, 1, 3, 5]), [batch, grid * grid, c * p * p]);
  return op.add(g, linear(g, patches, param(params, 'patch_w'), param(params, 'patch_b')), param(params, 'img_pos'));
}

/** Text tokens: (B, T) ids and positions → (B, T, d). */
function embedText(g: Graph, params: Params, tokens: Value, positions: Value): Value {
  return op.add(g, op.gather(g, param(params, 'tok_emb'), tokens), op.gather(g, param(params, 'pos_emb'), positions));
}

/** Additive attention bias: causal over L keys, plus key padding. (B, 1, L, L). */
function attentionBias(g: Graph, keyMask: Value, queries: number, keys: number, causalOffset: number): Value {
  // Query i (at absolute position causalOffset + i) may see keys 0 … causalOffset + i.
  const causal = Array.from({ length: queries * keys }, (_, idx) => {
    const i = Math.floor(idx / keys);
    const j = idx % keys;
    return j <= causalOffset + i ? 0 : MASKED;
  });
  const causalBias = g.constant(g.floatType, [1, 1, queries, keys], causal);
  const batch = keyMask.shape[0]!;
  const padBias = op.mulScalar(g, op.addScalar(g, op.reshape(g, keyMask, [batch, 1, 1, keys]), -1), -MASKED);
  return op.add(g, causalBias, padBias);
}

interface LayerKV {
  k: Value;
  v: Value;
}

/**
 * Splits (B, L, d) into heads: (B, H, L, hd). Decoding keeps one position per row as a 2-D (B, d): its split
 * is a free reshape.
 */
function heads(g: Graph, x: Value, h: number): Value {
  if (x.shape.length === 2) {
    const [batch, d] = x.shape as [number, number];
    return op.reshape(g, x, [batch, h, 1, d / h]);
  }
  const [batch, len, d] = x.shape as [number, number, number];
  return op.transpose(g, op.reshape(g, x, [batch, len, h, d / h]), [0, 2, 1, 3]);
}

/** (B, H, L, hd) → (B, L, d); decoding's one position per row (`rank` 2) → (B, d). */
function mergeHeads(g: Graph, x: Value, rank: 2 | 3): Value {
  const [batch, h, len, hd] = x.shape as [number, number, number, number];
  if (rank === 2) return op.reshape(g, x, [batch, h * hd]);
  return op.reshape(g, op.transpose(g, x, [0, 2, 1, 3]), [batch, len, h * hd]);
}

/** Attention over a whole sequence: softmax(q·kᵀ/√hd + bias)·v, all (B, H, L, hd). */
function attendFull(g: Graph, q: Value, k: Value, v: Value, bias: Value, scale: number): Value {
  const scores = op.add(g, op.matmulT(g, q, k, { transB: true, alpha: scale }), bias);
  return op.matmul(g, op.softmax(g, scores, -1), v);
}

/** One layer's view of the sampler's cache (all biases are additive: 0 for a real slot, MASKED for padding). */
interface LayerCache {
  /** Keys/values of each prompt's prefix (image + prompt tokens), shared by its n samples: (P, H, F, hd). */
  prefixK: Value;
  prefixV: Value;
  /** (P, 1, 1, F). */
  prefixBias: Value;
  /** Samples per prompt: row r of the batch belongs to prompt ⌊r / n⌋. */
  n: number;
  /** Keys/values of the tokens generated so far, slot-major: (C, B, H, hd) — slot s of every row is one block. */
  genK: Value;
  genV: Value;
  /** (B, 1, 1, C). */
  genBias: Value;
}

/**
 * One new query per row against its prompt's shared prefix, its own generated tokens, and itself, without
 * concatenating keys/values (which would copy the cache every step). The n rows of a prompt attend to the
 * prefix together, as one (n × F) product per prompt and head, so the prefix is stored and read once per prompt
 * rather than once per sample. The three groups of scores are joined (small), softmaxed together, split, and the
 * value contributions added. q, k, v: (B, H, 1, hd).
 */
function attendCached(g: Graph, q: Value, k: Value, v: Value, cache: LayerCache, scale: number): Value {
  const [batch, h, , hd] = q.shape as [number, number, number, number];
  const prompts = cache.prefixK.shape[0]!;
  const prefixLen = cache.prefixK.shape[2]!;
  const genLen = cache.genK.shape[0]!;
  const n = cache.n;
  // (B, H, 1, hd) → (P, H, n, hd): the samples of a prompt become the rows of one product.
  const byPrompt = op.transpose(g, op.reshape(g, q, [prompts, n, h, hd]), [0, 2, 1, 3]);
  const prefixScores = op.add(g, op.matmulT(g, byPrompt, cache.prefixK, { transB: true, alpha: scale }), cache.prefixBias); // (P, H, n, F)
  const prefixPerRow = op.reshape(g, op.transpose(g, prefixScores, [0, 2, 1, 3]), [batch, h, 1, prefixLen]);
  const genScores = op.add(g, op.matmulSlotMajor(g, q, cache.genK, { transB: true, alpha: scale }), cache.genBias); // (B, H, 1, C)
  const selfScore = op.mulScalar(g, op.reduceSum(g, op.mul(g, q, k), [-1], true), scale); // (B, H, 1, 1)
  const weights = op.softmax(g, op.concat(g, [prefixPerRow, genScores, selfScore], -1), -1);
  const [toPrefix, toGen, toSelf] = op.split(g, weights, -1, [prefixLen, genLen, 1]) as [Value, Value, Value];
  const prefixWeights = op.transpose(g, op.reshape(g, toPrefix, [prompts, n, h, prefixLen]), [0, 2, 1, 3]); // (P, H, n, F)
  const fromPrefix = op.reshape(g, op.transpose(g, op.matmul(g, prefixWeights, cache.prefixV), [0, 2, 1, 3]), [batch, h, 1, hd]);
  return op.add(g, op.add(g, fromPrefix, op.matmulSlotMajor(g, toGen, cache.genV, { transB: false })), op.mul(g, toSelf, v));
}

/**
 * q from `xq`, k and v from `x`: (B, Lq, d) and (B, L, d) — (B, d) when decoding — from the fused (d, 3d)
 * projection. Over a whole sequence the weight is split (small) and three GEMMs write q, k and v directly:
 * splitting the (B, L, 3d) activation instead, and concatenating its gradient in the backward pass, costs two
 * full passes over it. For one decoding position the activation is tiny and one GEMM beats three.
 */
function projectQkv(g: Graph, xq: Value, x: Value, w: Value, b: Value, d: number): [Value, Value, Value] {
  if (x.shape.length === 2) return op.split(g, linear(g, x, w, b), -1, [d, d, d]) as [Value, Value, Value];
  const ws = op.split(g, w, -1, [d, d, d]);
  const bs = op.split(g, b, -1, [d, d, d]);
  return [xq, x, x].map((input, i) => linear(g, input, ws[i]!, bs[i])) as [Value, Value, Value];
}

/**
 * How a block attends: over the whole sequence with an additive (B, 1, L − from, L) bias, or (decoding) to the
 * cache. `from` (default 0): the first position whose output the caller reads (see `backbone`).
 */
type Attention = { bias: Value; from?: number } | { cache: LayerCache };

/**
 * One transformer block. Returns the new hidden state — over the whole sequence, or from position `from` on when
 * the attention says so — and this step's keys/values over the whole sequence (B, H, L, hd).
 */
function block(g: Graph, config: ModelConfig, params: Params, l: number, x: Value, attention: Attention): { x: Value; kv: LayerKV } {
  const d = config.width;
  const pre = `h${l}.`;
  const scale = 1 / Math.sqrt(d / config.heads);
  const from = 'from' in attention ? (attention.from ?? 0) : 0;
  // The positions before `from` only provide keys and values: their queries, attention outputs and MLP are not computed.
  const rows = (t: Value) => (from > 0 ? op.slice(g, t, 1, from, t.shape[1]!) : t);
  const h1 = op.layerNorm(g, x, param(params, `${pre}ln1_g`), param(params, `${pre}ln1_b`));
  const [qx, kx, vx] = projectQkv(g, rows(h1), h1, param(params, `${pre}qkv_w`), param(params, `${pre}qkv_b`), d);
  const q = heads(g, qx, config.heads);
  const k = heads(g, kx, config.heads);
  const v = heads(g, vx, config.heads);
  const attended = mergeHeads(g, 'cache' in attention ? attendCached(g, q, k, v, attention.cache, scale) : attendFull(g, q, k, v, attention.bias, scale), x.shape.length === 2 ? 2 : 3); // like rows(x)
  const x1 = op.add(g, rows(x), linear(g, attended, param(params, `${pre}proj_w`), param(params, `${pre}proj_b`)));
  const h2 = op.layerNorm(g, x1, param(params, `${pre}ln2_g`), param(params, `${pre}ln2_b`));
  const mlp = linear(g, op.gelu(g, linear(g, h2, param(params, `${pre}fc_w`), param(params, `${pre}fc_b`))), param(params, `${pre}out_w`), param(params, `${pre}out_b`));
  return { x: op.add(g, x1, mlp), kv: { k, v } };
}

export interface BackboneOutput {
  /** Final-norm hidden states of positions `from` … N + T − 1 (image tokens first): (B, N + T − from, d). */
  hidden: Value;
  /** Each layer's keys and values over the whole sequence (B, H, N + T, hd). */
  kv: LayerKV[];
}

/**
 * Image + text through every layer. Returns the final hidden states of positions `from` … N + T − 1 (default: the
 * text positions). The last block computes only those positions' queries, attention outputs and MLP: the
 * positions before `from` feed that block only through their keys and values, and nothing reads their outputs.
 * The result is the same as computing every position and slicing; the work saved is those positions' share of the
 * last block (the small preset's training batch, 36 image tokens of 84 positions: ~9 % of the step's
 * matrix-product FLOPs).
 */
export function backbone(g: Graph, config: ModelConfig, params: Params, inputs: SequenceInputs, from = imageTokens(config)): BackboneOutput {
  const [batch, t] = inputs.tokens.shape as [number, number];
  if (t > config.maxLength) throw new RangeError(`sequence length ${t} exceeds model.maxLength = ${config.maxLength}`);
  const n = imageTokens(config);
  if (!Number.isInteger(from) || from < 0 || from >= n + t) throw new RangeError(`backbone: from = ${from} is outside [0, ${n + t})`);
  let x = op.concat(g, [embedImage(g, config, params, inputs.image), embedText(g, params, inputs.tokens, inputs.positions)], 1);
  const keyMask = op.concat(g, [op.fill(g, [batch, n], 1), inputs.attentionMask], 1);
  const bias = config.layers > 1 ? attentionBias(g, keyMask, n + t, n + t, 0) : undefined;
  const kv: LayerKV[] = [];
  for (let l = 0; l < config.layers; l++) {
    const last = l === config.layers - 1;
    const attention = last ? { bias: attentionBias(g, keyMask, n + t - from, n + t, from), from } : { bias: bias! };
    const out = block(g, config, params, l, x, attention);
    x = out.x;
    kv.push(out.kv);
  }
  return { hidden: op.layerNorm(g, x, param(params, 'lnf_g'), param(params, 'lnf_b')), kv };
}

/** Policy logits over the vocabulary for every text position: (B, T, V). */
export function lmLogits(g: Graph, params: Params, hidden: Value): Value {
  return linear(g, hidden, param(params, 'head_w'));
}

/** Reward-model score in [0, 1] from the hidden state at each row's last real token: (B). */
export function rewardScore(g: Graph, params: Params, hidden: Value, lastIndex: Value): Value {
  const [batch, t] = hidden.shape as [number, number, number];
  const pick = op.reshape(g, op.oneHot(g, lastIndex, t, hidden.dtype), [batch, t, 1]);
  const last = op.reduceSum(g, op.mul(g, hidden, pick), [1]); // (B, d)
  const logit = op.add(g, op.matmul(g, last, param(params, 'score_w')), param(params, 'score_b')); // (B, 1)
  return op.reshape(g, op.sigmoid(g, logit), [batch]);
}

export interface DecodeInputs {
  /** (B, 1) int64: the token to append. */
  token: Value;
  /** (B, 1) int64: its text position. */
  position: Value;
  /** Samples per prompt (B = P · n; row r belongs to prompt ⌊r / n⌋). */
  samplesPerPrompt: number;
  /** Per layer, (P, H, F, hd) keys and values of each prompt's prefix (image tokens + padded prompt). */
  prefixK: Value[];
  prefixV: Value[];
  /** (P, F) float: 1 where the prefix slot holds a real token (0 for prompt padding). */
  prefixMask: Value;
  /** Per layer, (C, B, H, hd) keys and values of the tokens each row generated so far (C slots, slot-major). */
  genK: Value[];
  genV: Value[];
  /** (B, C) float: 1 where the slot holds a generated token. */
  genMask: Value;
}

/** (N, S) mask of 1/0 → (N, 1, 1, S) additive bias. */
function maskBias(g: Graph, mask: Value): Value {
  const [rows, slots] = mask.shape as [number, number];
  return op.mulScalar(g, op.addScalar(g, op.reshape(g, mask, [rows, 1, 1, slots]), -1), -MASKED);
}

/** One decoding step against the sampler's cache: logits (B, V) and the new token's keys/values per layer. */
export function decodeStep(g: Graph, config: ModelConfig, params: Params, inputs: DecodeInputs): { logits: Value; kv: LayerKV[] } {
  const batch = inputs.token.shape[0]!;
  const n = inputs.samplesPerPrompt;
  const prompts = inputs.prefixMask.shape[0]!;
  if (prompts * n !== batch) throw new RangeError(`decode: ${prompts} prompts × ${n} samples is not the batch of ${batch} rows`);
  // One position per row, kept 2-D (B, d): no reshapes around every projection.
  let x = op.reshape(g, embedText(g, params, inputs.token, inputs.position), [batch, config.width]);
  const prefixBias = maskBias(g, inputs.prefixMask);
  const genBias = maskBias(g, inputs.genMask);
  const kv: LayerKV[] = [];
  for (let l = 0; l < config.layers; l++) {
    const cache = { prefixK: inputs.prefixK[l]!, prefixV: inputs.prefixV[l]!, prefixBias, n, genK: inputs.genK[l]!, genV: inputs.genV[l]!, genBias };
    const out = block(g, config, params, l, x, { cache });
    x = out.x;
    kv.push(out.kv);
  }
  const normed = op.layerNorm(g, x, param(params, 'lnf_g'), param(params, 'lnf_b'));
  return { logits: lmLogits(g, params, normed), kv };
}
