/**
 * Model configuration of Sophia's built-in multimodal transformer, its validation, and its parameter list.
 *
 * One backbone serves both models: the policy (LM head over the vocabulary) and the thinking reward model
 * (scalar head, sigmoid → [0, 1]). Sizes are plain data so a run config can carry them and a checkpoint can
 * record them.
 */
import { ConfigError } from '../../common/errors';

export type ModelKind = 'policy' | 'reward';

export interface ModelConfig {
  kind: ModelKind;
  vocabSize: number;
  /** Text positions (prompt + response) the model can attend over. */
  maxLength: number;
  layers: number;
  /** Model width d. */
  width: number;
  heads: number;
  /** MLP hidden size = mlpRatio · width. */
  mlpRatio: number;
  image: {
    /** Images are size × size pixels. */
    size: number;
    channels: number;
    /** Square patch side; the image becomes (size / patch)² tokens. */
    patch: number;
  };
  /** Std of the normal initialization of weight matrices and embeddings. */
  initStd: number;
}

export const MODEL_PRESETS = {
  /** Fits CI: ~0.4 M parameters. */
  tiny: { layers: 2, width: 128, heads: 4, mlpRatio: 4, maxLength: 128, image: { size: 16, channels: 3, patch: 4 } },
  /** ~3.2 M parameters. */
  small: { layers: 4, width: 256, heads: 8, mlpRatio: 4, maxLength: 128, image: { size: 24, channels: 3, patch: 4 } },
} as const;

export type ModelPreset = keyof typeof MODEL_PRESETS;

export function presetConfig(preset: ModelPreset, kind: ModelKind, vocabSize: number): ModelConfig {
  const p = MODEL_PRESETS[preset];
  return { kind, vocabSize, initStd: 0.02, ...p, image: { ...p.image } };
}

function positiveInt(field: string, value: unknown, max = 1 << 20): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(field, `must be an integer in [1, ${max}] (got ${JSON.stringify(value)})`);
  }
  return value;
}

/** Checks a model config; throws `ConfigError` naming the field and the fix. */
export function validateModelConfig(config: ModelConfig, path = 'model'): ModelConfig {
  if (config.kind !== 'policy' && config.kind !== 'reward') {
    throw new ConfigError(`${path}.kind`, `must be "policy" or "reward" (got ${JSON.stringify(config.kind)})`);
  }
  positiveInt(`${path}.vocabSize`, config.vocabSize);
  positiveInt(`${path}.maxLength`, config.maxLength, 8192);
  positiveInt(`${path}.layers`, config.layers, 128);
  positiveInt(`${path}.width`, config.width, 16384);
  positiveInt(`${path}.heads`, config.heads, 256);
  positiveInt(`${path}.mlpRatio`, config.mlpRatio, 16);
  positiveInt(`${path}.image.size`, config.image?.size, 1024);
  positiveInt(`${path}.image.channels`, config.image.channels, 4);
  positiveInt(`${path}.image.patch`, config.image.patch, 1024);
  if (config.width % config.heads !== 0) {
    throw new ConfigError(`${path}.width`, `${config.width} is not divisible by heads = ${config.heads}`, {
      hint: `Pick a width that is a multiple of ${config.heads} (e.g. ${config.heads * Math.max(1, Math.round(config.width / config.heads))})`,
    });
  }
  if (config.image.size % config.image.patch !== 0) {
    throw new ConfigError(`${path}.image.patch`, `${config.image.patch} does not divide image.size = ${config.image.size}`);
  }
  if (!(typeof config.initStd === 'number' && config.initStd > 0 && config.initStd < 1)) {
    throw new ConfigError(`${path}.initStd`, `must be a number in (0, 1) (got ${JSON.stringify(config.initStd)})`);
  }
  return config;
}

/** Number of image tokens. */
export function imageTokens(config: ModelConfig): number {
  return (config.image.size / config.image.patch) ** 2;
}

export interface ParamSpec {
  name: string;
  shape: number[];
  init: 'normal' | 'zeros' | 'ones';
  /** AdamW decoupled weight decay applies (weight matrices and embeddings; not biases or norms). */
  decay: boolean;
}

/** Every parameter, in a fixed order (the order of state files and graph inputs). */
export function parameterSpecs(config: ModelConfig): ParamSpec[] {
  const d = config.width;
  const hidden = d * config.mlpRatio;
  const patchDim = config.image.channels * config.image.patch ** 2;
  const w = (name: string, shape: number[]): ParamSpec => ({ name, shape, init: 'normal', decay: true });
  const b = (name: string, size: number): ParamSpec => ({ name, shape: [size], init: 'zeros', decay: false });
  const g = (name: string, size: number): ParamSpec => ({ name, shape: [size], init: 'ones', decay: false });
  const specs: ParamSpec[] = [
    w('tok_emb', [config.vocabSize, d]),
    w('pos_emb', [config.maxLength, d]),
    w('patch_w', [patchDim, d]),
    b('patch_b', d),
    w('img_pos', [imageTokens(config), d]),
  ];
  for (let l = 0; l < config.layers; l++) {
    specs.push(
      g(`h${l}.ln1_g`, d),
      b(`h${l}.ln1_b`, d),
      w(`h${l}.qkv_w`, [d, 3 * d]),
      b(`h${l}.qkv_b`, 3 * d),
      w(`h${l}.proj_w`, [d, d]),
      b(`h${l}.proj_b`, d),
      g(`h${l}.ln2_g`, d),
      b(`h${l}.ln2_b`, d),
      w(`h${l}.fc_w`, [d, hidden]),
      b(`h${l}.fc_b`, hidden),
      w(`h${l}.out_w`, [hidden, d]),
      b(`h${l}.out_b`, d),
    );
  }
  specs.push(g('lnf_g', d), b('lnf_b', d));
  if (config.kind === 'policy') specs.push(w('head_w', [d, config.vocabSize]));
  else specs.push(w('score_w', [d, 1]), b('score_b', 1));
  return specs;
}

export function parameterCount(config: ModelConfig): number {
  return parameterSpecs(config).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
}

/** Where each parameter sits in the flat parameter vector (graphs and the engine keep all weights in one). */
export interface ParamLayout {
  specs: ParamSpec[];
  /** Start of each parameter in the flat vector, in `specs` order. */
  offsets: number[];
  sizes: number[];
  total: number;
}

export function paramLayout(config: ModelConfig): ParamLayout {
  const specs = parameterSpecs(config);
  const offsets: number[] = [];
  const sizes: number[] = [];
  let total = 0;
  for (const spec of specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1);
    offsets.push(total);
    sizes.push(size);
    total += size;
  }
  return { specs, offsets, sizes, total };
}
