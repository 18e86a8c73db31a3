/**
 * What a run's engines start from, on the worker that makes them (`ModelSource.spec`): Sophia's architecture for onnx
 * runs (`modelSpecOf`), the Hugging Face model directory for torch runs — a local directory as it is, an s3:// prefix
 * downloaded once into this worker's model cache and verified (`resolveModel`, storage/model-cache.ts).
 */
import { Context } from '@temporalio/activity';
import { type RunConfig, modelSpecOf, pretrainedUriOf } from '../config/run-config';
import type { ModelKind } from '../engine/model/config';
import { type Engine, type ModelSpec, isPretrained } from '../engine/types';
import { ConfigError } from '../common/errors';
import { ROLLOUT_WIRE_NAMES } from '../engine/factory';
import * as path from 'node:path';
import { sophiaHome } from '../cli/paths';
import { loadTemporalConfig } from '../temporal.config';
import { modelCacheDir, resolveModel } from '../storage/model-cache';

type Env = Readonly<Record<string, string | undefined>>;

const REPO_ROOT = path.join(__dirname, '..');

export class ModelSource {
  /** This machine's model cache: SOPHIA_MODEL_CACHE, else `{SOPHIA_HOME}/models`. */
  static fromEnv(env: Env = process.env): ModelSource {
    return new ModelSource({ cacheDir: modelCacheDir(loadTemporalConfig(env), sophiaHome(env, REPO_ROOT)), env });
  }

  constructor(private readonly options: { cacheDir: string; env: Env }) {}

  /** The local model directory of a torch run's `kind` model (downloaded first if it is an s3:// prefix). */
  async localDir(config: RunConfig, kind: ModelKind): Promise<string> {
    const { uri, field } = pretrainedUriOf(config, kind);
    // Heartbeat while a large model downloads, so the activity is not taken for dead (details stay the chunk's).
    const heartbeat = Context.current().info ? () => Context.current().heartbeat() : () => undefined;
    return resolveModel(uri, { cacheDir: this.options.cacheDir, env: this.options.env, field, onProgress: heartbeat });
  }

  async spec(config: RunConfig, kind: ModelKind): Promise<ModelSpec> {
    if (config.engine.kind === 'onnx') return modelSpecOf(config, kind);
    return modelSpecOf(config, kind, await this.localDir(config, kind));
  }

  /**
   * Starts `engine` from the run's `kind` model. What an engine refuses about the model itself (a class it cannot
   * run, a dtype or device this worker does not have) is the run config's problem, not a transient one: a
   * non-retryable `ConfigError` naming the config field, instead of attempts that would all fail alike.
   */
  async init(engine: Engine, config: RunConfig, kind: ModelKind, seed: number): Promise<void> {
    const spec = await this.spec(config, kind);
    try {
      await engine.init(spec, seed);
    } catch (err) {
      if (!(err instanceof RangeError || err instanceof TypeError)) throw err;
      const field = (err as { field?: unknown }).field;
      const setting = typeof field === 'string' ? ENGINE_FIELDS[field.replace(/^args\./, '')] : undefined;
      throw new ConfigError(setting ?? (kind === 'reward' && isPretrained(spec) && config.engine.kind === 'torch' && config.engine.rewardModel ? 'engine.rewardModel' : 'engine.model'), err.message, {
        hint: 'Check the engine section of the run config against what this worker has (engine/README.md: the PyTorch engine)',
      });
    }
  }
}

/** The engine process's load arguments that come from a run config's engine section. */
const ENGINE_FIELDS: Record<string, string> = {
  dtype: 'engine.dtype',
  device: 'engine.device',
  gradient_checkpointing: 'engine.gradientCheckpointing',
  threads: 'engine.threads',
  lora: 'engine.lora',
  'lora.rank': 'engine.lora.rank',
  'lora.alpha': 'engine.lora.alpha',
  'lora.dropout': 'engine.lora.dropout',
  'lora.target_modules': 'engine.lora.targetModules',
  rollout: 'engine.rollout',
  ...Object.fromEntries(Object.entries(ROLLOUT_WIRE_NAMES).map(([name, wire]) => [`rollout.${wire}`, `engine.rollout.${name}`])),
};
