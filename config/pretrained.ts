/**
 * What a run config's `engine.model` / `engine.rewardModel` may name, and what Sophia reads of such a model before
 * any engine loads it: the location (an absolute local directory or `s3://bucket/prefix`), and the Hugging Face
 * `config.json` — which class it is (`SUPPORTED_ARCHITECTURES`), its shape, its parameter count and how many
 * positions it attends over. The torch engine itself loads the weights (`engine/torch/`); this module never does.
 *
 * `config.json` comes in two layouts and both are read: the Hub's (text fields at the top, `vision_config` beside
 * them: Qwen2.5-VL-7B-Instruct as published) and transformers 5's (`text_config` + `vision_config`, as
 * `save_pretrained` writes it now, e.g. `sophia_torch.tiny_qwen`).
 */
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, InvalidKeyError } from '../common/errors';
import { S3_BUCKET_NAME, assertValidKey } from '../storage/keys';

/** Model classes the config accepts, with the `model_type` each must carry. */
export const SUPPORTED_ARCHITECTURES = {
  Qwen2_5_VLForConditionalGeneration: 'qwen2_5_vl',
  Qwen2VLForConditionalGeneration: 'qwen2_vl',
  Qwen2ForCausalLM: 'qwen2',
} as const;

export type SupportedArchitecture = keyof typeof SUPPORTED_ARCHITECTURES;

const SUPPORTED_LIST = Object.entries(SUPPORTED_ARCHITECTURES).map(([a, t]) => `${a} (model_type ${t})`).join(', ');

/** Where a model is: a local directory, or a prefix in S3 (downloaded into the worker's model cache). */
export type ModelLocation = { kind: 'local'; dir: string } | { kind: 's3'; bucket: string; prefix: string; uri: string };

const HOW_TO_NAME = 'an absolute path of a Hugging Face model directory (with config.json), or s3://bucket/prefix written by `sophia model upload DIR s3://bucket/prefix`';

/** Parses what `engine.model` says; throws a `ConfigError` naming `field` and the fix. */
export function parseModelLocation(value: string, field: string): ModelLocation {
  const text = value.trim();
  if (text === '') throw new ConfigError(field, 'is empty', { hint: `Give ${HOW_TO_NAME}` });
  if (/^s3:\/\//i.test(text)) return parseS3ModelUri(text, field);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new ConfigError(field, `${JSON.stringify(text)}: only local directories and s3:// prefixes are supported`, { hint: `Give ${HOW_TO_NAME}` });
  }
  if (!text.startsWith('/')) {
    const hubId = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(text);
    throw new ConfigError(field, `${JSON.stringify(text)} ${hubId ? 'looks like a Hugging Face Hub id, and Sophia never downloads from the Hub at run time' : 'is a relative path, which would mean another folder on each worker'}`, {
      hint: hubId
        ? `Download it once (e.g. \`huggingface-cli download ${text} --local-dir /models/${text.split('/')[1]}\`) and give that directory, or upload it with \`sophia model upload DIR s3://bucket/prefix\` and give the s3:// prefix`
        : `Give ${HOW_TO_NAME}`,
    });
  }
  return { kind: 'local', dir: path.normalize(text).replace(/(.)\/+$/, '$1') };
}

/** `s3://bucket/prefix` (the prefix holds the files and `sophia-model.json`); throws a `ConfigError` naming `field`. */
export function parseS3ModelUri(uri: string, field: string): Extract<ModelLocation, { kind: 's3' }> {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/i.exec(uri.trim());
  const usage = 'Use s3://BUCKET/PREFIX, e.g. s3://models/qwen2.5-vl-7b-instruct';
  if (!match || !uri.trim().startsWith('s3://')) throw new ConfigError(field, `${JSON.stringify(uri)} is not an s3:// URI`, { hint: usage });
  const bucket = match[1]!;
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (!S3_BUCKET_NAME.test(bucket)) {
    throw new ConfigError(field, `${JSON.stringify(uri)}: ${JSON.stringify(bucket)} is not an S3 bucket name (3–63 lowercase letters, digits, "." and "-")`, { hint: usage });
  }
  if (prefix === '') throw new ConfigError(field, `${JSON.stringify(uri)} names a bucket but no prefix: a model lives under its own prefix`, { hint: usage });
  try {
    assertValidKey(prefix);
  } catch (err) {
    if (!(err instanceof InvalidKeyError)) throw err;
    throw new ConfigError(field, `${JSON.stringify(uri)}: the prefix ${err.message.replace(/^invalid storage key "[^"]*": /, '')}`, { hint: usage });
  }
  return { kind: 's3', bucket, prefix, uri: `s3://${bucket}/${prefix}` };
}

/** A Qwen2 decoder's shape (the text model of every supported class). */
export interface TextShape {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** MLP hidden size (SwiGLU: gate and up projections of this width). */
  intermediate: number;
  /** The LM head shares the embedding matrix. */
  tiedEmbeddings: boolean;
  /** Positions (prompt + response) the model attends over: `max_position_embeddings`. */
  maxPositions: number;
}

/** A Qwen2-VL / Qwen2.5-VL vision tower's shape. */
export interface VisionShape {
  /** `qwen2_vl`: LayerNorm and a GELU MLP (fc1/fc2); `qwen2_5_vl`: RMSNorm and a SwiGLU MLP (gate/up/down). */
  family: 'qwen2_vl' | 'qwen2_5_vl';
  depth: number;
  hidden: number;
  heads: number;
  intermediate: number;
  patch: number;
  temporalPatch: number;
  channels: number;
  /** Patches merged per side into one LLM token (2: 2×2 patches → 1 token). */
  spatialMerge: number;
  /** The merger's output width: the text model's hidden size. */
  outHidden: number;
}

export interface PretrainedShape {
  architecture: SupportedArchitecture;
  modelType: string;
  text: TextShape;
  vision: VisionShape | undefined;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The shape of a model from its parsed `config.json`; throws a `ConfigError` naming `field` for anything unsupported. */
export function pretrainedShape(config: unknown, field: string, source = 'config.json'): PretrainedShape {
  if (!isObject(config)) throw new ConfigError(field, `${source} is not a JSON object`);
  const modelType = config.model_type;
  const listed = Array.isArray(config.architectures) ? config.architectures.filter((a): a is string => typeof a === 'string') : [];
  const architecture = (listed.length > 0 ? listed : Object.keys(SUPPORTED_ARCHITECTURES).filter((a) => SUPPORTED_ARCHITECTURES[a as SupportedArchitecture] === modelType)).find(
    (a): a is SupportedArchitecture => Object.hasOwn(SUPPORTED_ARCHITECTURES, a),
  );
  if (architecture === undefined) {
    const said = listed.length > 0 ? `architectures ${JSON.stringify(listed)}` : `model_type ${JSON.stringify(modelType)}`;
    throw new ConfigError(field, `${source} says ${said}, which is not a supported model class`, {
      hint: `Sophia's torch engine runs ${SUPPORTED_LIST}: use a Qwen2-VL / Qwen2.5-VL checkpoint (AutoModelForImageTextToText) or a Qwen2 causal LM`,
    });
  }
  if (modelType !== SUPPORTED_ARCHITECTURES[architecture]) {
    throw new ConfigError(field, `${source} says ${architecture} with model_type ${JSON.stringify(modelType)}; that class has model_type ${SUPPORTED_ARCHITECTURES[architecture]}`, {
      hint: 'The config.json is inconsistent: use the config.json the checkpoint was published with',
    });
  }
  const int = (obj: Json, key: string, where: string, fallback?: number): number => {
    const value = obj[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
      throw new ConfigError(field, `${source}: ${where}${key} is ${value === undefined ? 'missing' : JSON.stringify(value)}, not a positive integer`);
    }
    return value;
  };
  // transformers 5 nests the text fields in text_config; the Hub's files have them at the top. The nested ones win.
  const nested = isObject(config.text_config) ? config.text_config : undefined;
  const t: Json = { ...config, ...nested };
  const where = nested ? 'text_config.' : '';
  const hidden = int(t, 'hidden_size', where);
  const heads = int(t, 'num_attention_heads', where);
  if (t.head_dim === undefined && hidden % heads !== 0) throw new ConfigError(field, `${source}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`);
  const tie = config.tie_word_embeddings ?? nested?.tie_word_embeddings ?? false;
  const text: TextShape = {
    vocabSize: int(t, 'vocab_size', where),
    hidden,
    layers: int(t, 'num_hidden_layers', where),
    heads,
    kvHeads: int(t, 'num_key_value_heads', where, heads),
    headDim: int(t, 'head_dim', where, hidden / heads),
    intermediate: int(t, 'intermediate_size', where),
    tiedEmbeddings: tie === true,
    maxPositions: int(t, 'max_position_embeddings', where),
  };
  if (architecture === 'Qwen2ForCausalLM') return { architecture, modelType: SUPPORTED_ARCHITECTURES[architecture], text, vision: undefined };
  if (!isObject(config.vision_config)) throw new ConfigError(field, `${source}: ${architecture} needs a vision_config`);
  const v = config.vision_config;
  const w = 'vision_config.';
  const common = {
    depth: int(v, 'depth', w),
    heads: int(v, 'num_heads', w),
    patch: int(v, 'patch_size', w),
    temporalPatch: int(v, 'temporal_patch_size', w, 2),
    channels: int(v, 'in_channels', w, typeof v.in_chans === 'number' ? v.in_chans : 3),
    spatialMerge: int(v, 'spatial_merge_size', w, 2),
  };
  const vision: VisionShape =
    modelType === 'qwen2_vl'
      ? // Qwen2-VL: embed_dim is the tower's width, hidden_size the merger's output (the LLM's width).
        { family: 'qwen2_vl', ...common, hidden: int(v, 'embed_dim', w), intermediate: int(v, 'embed_dim', w) * int(v, 'mlp_ratio', w, 4), outHidden: int(v, 'hidden_size', w) }
      : { family: 'qwen2_5_vl', ...common, hidden: int(v, 'hidden_size', w), intermediate: int(v, 'intermediate_size', w), outHidden: int(v, 'out_hidden_size', w) };
  if (vision.outHidden !== text.hidden) {
    throw new ConfigError(field, `${source}: the vision merger writes ${vision.outHidden} features but the text model is ${text.hidden} wide`, { hint: 'Use the config.json the checkpoint was published with' });
  }
  return { architecture, modelType: SUPPORTED_ARCHITECTURES[architecture], text, vision };
}

/** Parameters of a text decoder: embeddings, per layer attention (GQA: kvHeads key/value heads) + SwiGLU MLP + 2 RMSNorms, final norm, LM head unless tied. */
function textParameters(t: TextShape): number {
  const q = t.heads * t.headDim;
  const kv = t.kvHeads * t.headDim;
  // q, k, v projections carry biases (Qwen2); the output projection does not.
  const attention = t.hidden * (q + 2 * kv) + (q + 2 * kv) + q * t.hidden;
  const mlp = 3 * t.hidden * t.intermediate;
  const perLayer = attention + mlp + 2 * t.hidden;
  return t.vocabSize * t.hidden + t.layers * perLayer + t.hidden + (t.tiedEmbeddings ? 0 : t.hidden * t.vocabSize);
}

/** Parameters of a vision tower: patch embedding (a bias-free Conv3d), blocks, and the patch merger. */
function visionParameters(v: VisionShape): number {
  const d = v.hidden;
  const patchEmbed = v.channels * v.temporalPatch * v.patch * v.patch * d;
  // Norms: LayerNorm has weight and bias (Qwen2-VL), RMSNorm a weight (Qwen2.5-VL).
  const norm = v.family === 'qwen2_vl' ? 2 * d : d;
  const attention = d * 3 * d + 3 * d + d * d + d;
  const mlp = v.family === 'qwen2_vl' ? 2 * d * v.intermediate + v.intermediate + d : 3 * d * v.intermediate + 2 * v.intermediate + d;
  const merged = d * v.spatialMerge ** 2;
  const merger = norm + merged * merged + merged + merged * v.outHidden + v.outHidden;
  return patchEmbed + v.depth * (2 * norm + attention + mlp) + merger;
}

/** Parameters of a model of this shape, by part; `total` matches `sum(p.numel() for p in model.parameters())`. */
export function pretrainedParameters(shape: PretrainedShape): { text: number; vision: number; total: number } {
  const text = textParameters(shape.text);
  const vision = shape.vision ? visionParameters(shape.vision) : 0;
  return { text, vision, total: text + vision };
}

/**
 * The shape of the model in a local directory, from its `config.json`; throws a `ConfigError` naming `field` when
 * the directory does not exist, has no config.json, or holds an unsupported class.
 */
export function readPretrainedShape(dir: string, field: string): PretrainedShape {
  const file = path.join(dir, 'config.json');
  const fix = `Give ${HOW_TO_NAME}`;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    throw new ConfigError(field, `${JSON.stringify(dir)} does not exist here (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      hint: `${fix}; a local directory must exist where the run is submitted and on every GPU worker (for separate machines, upload it and give the s3:// prefix)`,
    });
  }
  if (!isDir) throw new ConfigError(field, `${JSON.stringify(dir)} is a file, not a model directory`, { hint: fix });
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(field, `${JSON.stringify(dir)} has no readable config.json (${(err as NodeJS.ErrnoException).code ?? String(err)}): not a Hugging Face model directory`, {
      hint: `${fix}: the folder from \`huggingface-cli download … --local-dir DIR\` or \`save_pretrained(DIR)\``,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(field, `${file} is not valid JSON: ${(err as Error).message}`);
  }
  return pretrainedShape(json, field, file);
}
