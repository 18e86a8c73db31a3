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
 * (`prefill` returns every layer's keys and values; `decodeStep` attends one new token to a fixed-size cache).
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

/** x·W (+ b). Activations are folded to 2-D first: one large GEMM (forward and both gradients), not a batch of small ones. */
function linear(g: Graph, x: Value, w: Value, b?: Value): Value {
  const rows = x.shape.slice(0, -1);
  const flat = x.shape.length > 2 ? op.reshape(g, x, [-1, x.shape.at(-1)!]) : x;
  const y = op.matmul(g, flat, w);
  const out = b ? op.add(g, y, b) : y;
  return x.shape.length > 2 ? op.reshape(g, out, [...rows, w.shape[1]!]) : out;
}

/** Image tokens: (B, C, S, S) → (B, N, d). */
export function embedImage(g: Graph, config: ModelConfig, params: Params, image: Value): Value {
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
export function embedText(g: Graph, params: Params, tokens: Value, positions: Value): Value {
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

/** Splits (B, L, d) into heads: (B, H, L, hd). For one position (decoding) that is a free reshape. */
function heads(g: Graph, x: Value, h: number): Value {
  const [batch, len, d] = x.shape as [number, number, number];
  if (len === 1) return op.reshape(g, x, [batch, h, 1, d / h]);
  return op.transpose(g, op.reshape(g, x, [batch, len, h, d / h]), [0, 2, 1, 3]);
}

function mergeHeads(g: Graph, x: Value): Value {
  const [batch, h, len, hd] = x.shape as [number, number, number, number];
  if (len === 1) return op.reshape(g, x, [batch, 1, h * hd]);
  return op.reshape(g, op.transpose(g, x, [0, 2, 1, 3]), [batch, len, h * hd]);
}

/** Attention over a whole sequence: softmax(q·kᵀ/√hd + bias)·v, all (B, H, L, hd). */
function attendFull(g: Graph, q: Value, k: Value, v: Value, bias: Value, scale: number): Value {
  const scores = op.add(g, op.mulScalar(g, op.matmul(g, q, op.transposeLast2(g, k)), scale), bias);
  return op.matmul(g, op.softmax(g, scores, -1), v);
}

/**
 * One new query against a cache plus itself, without concatenating keys/values (which would copy the whole
 * cache every step): scores against the cache and against the new key are joined (small), softmaxed, split,
 * and the two value contributions added. q, k, v: (B, H, 1, hd); past: (B, H, C, hd); pastBias (B, 1, 1, C).
 */
function attendCached(g: Graph, q: Value, k: Value, v: Value, past: LayerKV, pastBias: Value, scale: number): Value {
  const cache = past.k.shape[2]!;
  const pastScores = op.add(g, op.mulScalar(g, op.matmul(g, q, op.transposeLast2(g, past.k)), scale), pastBias); // (B, H, 1, C)
  const selfScore = op.mulScalar(g, op.reduceSum(g, op.mul(g, q, k), [-1], true), scale); // (B, H, 1, 1)
  const weights = op.softmax(g, op.concat(g, [pastScores, selfScore], -1), -1);
  const [toPast, toSelf] = op.split(g, weights, -1, [cache, 1]) as [Value, Value];
  return op.add(g, op.matmul(g, toPast, past.v), op.mul(g, toSelf, v));
}

/**
 * q, k, v: (B, L, d) each from the fused (d, 3d) projection. Over a whole sequence the weight is split (small)
 * and three GEMMs write q, k and v directly: splitting the (B, L, 3d) activation instead, and concatenating its
 * gradient in the backward pass, costs two full passes over it. For one decoding position the activation is
 * tiny and one GEMM beats three.
 */
function projectQkv(g: Graph, x: Value, w: Value, b: Value, d: number): [Value, Value, Value] {
  if (x.shape[1] === 1) return op.split(g, linear(g, x, w, b), -1, [d, d, d]) as [Value, Value, Value];
  const ws = op.split(g, w, -1, [d, d, d]);
  const bs = op.split(g, b, -1, [d, d, d]);
  return [0, 1, 2].map((i) => linear(g, x, ws[i]!, bs[i])) as [Value, Value, Value];
}

/**
 * One transformer block. Without `past`: attention over the whole sequence with `bias` (B, 1, L, L). With
 * `past` (decode): the new token attends to the cache (`bias` is the cache's (B, 1, 1, C) padding bias) and to
 * itself. Returns the new hidden state and this step's keys/values (B, H, L, hd).
 */
function block(g: Graph, config: ModelConfig, params: Params, l: number, x: Value, bias: Value, past?: LayerKV): { x: Value; kv: LayerKV } {
  const d = config.width;
  const pre = `h${l}.`;
  const scale = 1 / Math.sqrt(d / config.heads);
  const h1 = op.layerNorm(g, x, param(params, `${pre}ln1_g`), param(params, `${pre}ln1_b`));
  const [qx, kx, vx] = projectQkv(g, h1, param(params, `${pre}qkv_w`), param(params, `${pre}qkv_b`), d);
  const q = heads(g, qx, config.heads);
  const k = heads(g, kx, config.heads);
  const v = heads(g, vx, config.heads);
  const attended = mergeHeads(g, past ? attendCached(g, q, k, v, past, bias, scale) : attendFull(g, q, k, v, bias, scale)); // (B, L, d)
  const x1 = op.add(g, x, linear(g, attended, param(params, `${pre}proj_w`), param(params, `${pre}proj_b`)));
  const h2 = op.layerNorm(g, x1, param(params, `${pre}ln2_g`), param(params, `${pre}ln2_b`));
  const mlp = linear(g, op.gelu(g, linear(g, h2, param(params, `${pre}fc_w`), param(params, `${pre}fc_b`))), param(params, `${pre}out_w`), param(params, `${pre}out_b`));
  return { x: op.add(g, x1, mlp), kv: { k, v } };
}

export interface BackboneOutput {
  /** Final-norm hidden states of the text positions (B, T, d). */
  text: Value;
  /** Each layer's keys and values over the whole sequence (B, H, N + T, hd). */
  kv: LayerKV[];
}

/** Image + text through every layer. */
export function backbone(g: Graph, config: ModelConfig, params: Params, inputs: SequenceInputs): BackboneOutput {
  const [batch, t] = inputs.tokens.shape as [number, number];
  if (t > config.maxLength) throw new RangeError(`sequence length ${t} exceeds model.maxLength = ${config.maxLength}`);
  const n = imageTokens(config);
  let x = op.concat(g, [embedImage(g, config, params, inputs.image), embedText(g, params, inputs.tokens, inputs.positions)], 1);
  const keyMask = op.concat(g, [op.fill(g, [batch, n], 1), inputs.attentionMask], 1);
  const bias = attentionBias(g, keyMask, n + t, n + t, 0);
  const kv: LayerKV[] = [];
  for (let l = 0; l < config.layers; l++) {
    const out = block(g, config, params, l, x, bias);
    x = out.x;
    kv.push(out.kv);
  }
  const normed = op.layerNorm(g, x, param(params, 'lnf_g'), param(params, 'lnf_b'));
  return { text: op.slice(g, normed, 1, n, n + t), kv };
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
  /** Per layer, (B, H, C, hd) keys and values of the cache (C = image tokens + maxLength slots). */
  pastK: Value[];
  pastV: Value[];
  /** (B, C) float: 1 where the cache slot holds a real earlier token. */
  pastMask: Value;
}

/** One decoding step against a fixed-size KV cache: logits (B, V) and the new token's keys/values per layer. */
export function decodeStep(g: Graph, config: ModelConfig, params: Params, inputs: DecodeInputs): { logits: Value; kv: LayerKV[] } {
  const batch = inputs.token.shape[0]!;
  const cache = inputs.pastMask.shape[1]!;
  let x = embedText(g, params, inputs.token, inputs.position); // (B, 1, d)
  // The new token sees every valid cache slot (and itself, inside attendCached).
  const bias = op.mulScalar(g, op.addScalar(g, op.reshape(g, inputs.pastMask, [batch, 1, 1, cache]), -1), -MASKED);
  const kv: LayerKV[] = [];
  for (let l = 0; l < config.layers; l++) {
    const out = block(g, config, params, l, x, bias, { k: inputs.pastK[l]!, v: inputs.pastV[l]! });
    x = out.x;
    kv.push(out.kv);
  }
  const normed = op.layerNorm(g, x, param(params, 'lnf_g'), param(params, 'lnf_b'));
  return { logits: op.reshape(g, lmLogits(g, params, normed), [batch, config.vocabSize]), kv };
}
