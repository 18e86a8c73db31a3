/**
 * Engine state through the checkpoint store: a checkpoint's files are the engine's `saveState()` files (the ONNX
 * engine: one `state.bin`, as every earlier version wrote it; a Hugging Face engine: safetensors, config and
 * processor files), committed by manifest and verified on load. These functions only move the files: what they
 * hold is the engine's business (engine/types.ts), so the activities work with any engine.
 *
 * A save that finds the storage full waits and saves again, inside the activity (`saveCheckpoint`): failing the
 * activity would have its retry redo every step since the last checkpoint, while the state to save is right here in
 * memory.
 */
import { Context, log } from '@temporalio/activity';
import { formatDurationMs } from '../common/duration';
import { StorageFullError } from '../common/errors';
import { pretrainedParameters, pretrainedShape } from '../config/pretrained';
import { parameterCount } from '../engine/model/config';
import { type Engine, type EngineFile, type LoadStateOptions, type ModelSpec, isPretrained } from '../engine/types';
import type { CheckpointStore, SaveCheckpointInput } from '../storage/checkpoints';
import { checkpointKey as checkpointDirKey, manifestKey } from '../storage/keys';
import type { CheckpointManifest } from '../storage/manifest';
import { STORAGE_FULL_SAVE_RETRY, type StorageFullRetrySettings } from '../temporal.config';

export interface EngineCheckpointTarget {
  runId: string;
  stage: string;
  /** Defaults to the engine's optimizer step. */
  step?: number;
  configHash: string;
  metrics?: Record<string, number>;
  meta?: Record<string, unknown>;
}

export async function saveEngineCheckpoint(
  store: CheckpointStore,
  engine: Engine,
  target: EngineCheckpointTarget,
  retry: StorageFullRetrySettings = STORAGE_FULL_SAVE_RETRY,
): Promise<CheckpointManifest> {
  const files = await engine.saveState();
  const input: SaveCheckpointInput = {
    runId: target.runId,
    stage: target.stage,
    step: target.step ?? engine.step(),
    configHash: target.configHash,
    metrics: target.metrics ?? {},
    meta: { ...target.meta, engine: engine.info.description, model: engine.config(), parameters: parametersOf(engine.config(), files), engineStep: engine.step() },
    files,
  };
  return saveCheckpoint(store, input, retry);
}

/**
 * The model's parameter count, for reports: Sophia's architecture from its config; a Hugging Face model from the
 * config.json among its saved files (its backbone: a reward model's scalar head is not counted); undefined otherwise.
 */
export function parametersOf(model: ModelSpec, files: readonly EngineFile[]): number | undefined {
  if (!isPretrained(model)) return parameterCount(model);
  const config = files.find((f) => f.name === 'config.json');
  if (!config) return undefined;
  try {
    return pretrainedParameters(pretrainedShape(JSON.parse(new TextDecoder().decode(config.data)), 'config.json')).total;
  } catch {
    return undefined; // a model class the estimate does not know: the report says so
  }
}

/** The running activity's context, or undefined outside an activity (`sophia sft` saves in its own process). */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * `store.save(input)`, waiting while the storage is full. Inside an activity, a save that fails with a
 * `StorageFullError` keeps `input` (the engine state it was given) and saves again after a backoff
 * (`STORAGE_FULL_SAVE_RETRY`, temporal.config.ts), logging each wait and heartbeating every second
 * `{ step, phase: 'disk is full: retrying the checkpoint save of step S in N s' }` (what `sophia status` shows), so
 * the activity neither fails nor is presumed lost. The files a failed attempt wrote are deleted before the next, so
 * they do not take the space being freed. After `retry.totalWaitMs` of waiting it throws a `StorageFullError`
 * (retryable: the activity is retried from its last committed checkpoint). A cancellation ends the wait (the
 * activity ends cancelled). Outside an activity the error is thrown at once: the user is watching.
 */
export async function saveCheckpoint(store: CheckpointStore, input: SaveCheckpointInput, retry: StorageFullRetrySettings = STORAGE_FULL_SAVE_RETRY): Promise<CheckpointManifest> {
  const ctx = activityContext();
  if (!ctx) return store.save(input);
  const dir = checkpointDirKey(input.runId, input.stage, input.step);
  // What the folder held before this save: anything else in it, while no manifest commits the step, was written by a
  // failed attempt of this save (a file may land after its save failed: the store's other upload lane goes on).
  const before = new Set((await store.storage.listAll(`${dir}/`)).map((o) => o.key));
  let waitedMs = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return await store.save(input);
    } catch (err) {
      if (!(err instanceof StorageFullError)) throw err;
      const waitMs = Math.min(retry.initialIntervalMs * retry.backoffCoefficient ** attempt, retry.maximumIntervalMs, retry.totalWaitMs - waitedMs);
      if (waitMs <= 0) {
        throw new StorageFullError(`checkpoint ${dir} could not be saved: the disk stayed full for ${formatDurationMs(waitedMs)} (${err.message})`, {
          cause: err,
          hint: 'Free space on the storage; the activity is retried from its last committed checkpoint',
        });
      }
      await removeFailedAttempt(store, dir, before);
      log.warn(`disk is full: retrying the checkpoint save of step ${input.step} in ${Math.ceil(waitMs / 1000)} s`, { runId: input.runId, stage: input.stage, step: input.step, waitedMs, error: err.message });
      for (let left = waitMs; left > 0; left -= 1000) {
        ctx.heartbeat({ step: input.step, phase: `disk is full: retrying the checkpoint save of step ${input.step} in ${Math.ceil(left / 1000)} s` });
        await ctx.sleep(Math.min(1000, left));
      }
      waitedMs += waitMs;
    }
  }
}

/**
 * Deletes the objects under a checkpoint's folder that were not there before the save (`before`): the files its
 * failed attempts wrote before the storage filled. Nothing is deleted once the step has a manifest (committed by
 * someone). Best effort: what is left (a failure here, a file still being written) is removed by the next call, or
 * by retention once the step is committed.
 */
async function removeFailedAttempt(store: CheckpointStore, dir: string, before: ReadonlySet<string>): Promise<void> {
  try {
    if (await store.storage.head(manifestKey(dir))) return;
    for (const o of await store.storage.listAll(`${dir}/`)) if (!before.has(o.key)) await store.storage.delete(o.key);
  } catch (err) {
    log.warn('could not remove the files of a failed checkpoint save', { dir, error: err instanceof Error ? err.message : String(err) });
  }
}

/** Every file of a committed checkpoint (verified against its manifest), as engine state files. */
export async function readEngineFiles(store: CheckpointStore, checkpointKey: string): Promise<{ manifest: CheckpointManifest; files: EngineFile[] }> {
  const { manifest, files } = await store.load(checkpointKey);
  return { manifest, files: [...files].map(([name, data]) => ({ name, data })) };
}

/**
 * How engines that only sample, score or give reference logprobs load a checkpoint: the weights without the AdamW
 * moments (a PyTorch engine then holds no optimizer state: a 7B policy's moments are twice its bf16 weights).
 */
export const INFERENCE_ONLY: LoadStateOptions = { freshOptimizer: true };

/** Loads a committed checkpoint's engine state into `engine` (optimizer included, unless `freshOptimizer`). */
export async function loadEngineCheckpoint(store: CheckpointStore, checkpointKey: string, engine: Engine, options: LoadStateOptions = {}): Promise<CheckpointManifest> {
  const { manifest, files } = await readEngineFiles(store, checkpointKey);
  await engine.loadState(files, options);
  return manifest;
}
