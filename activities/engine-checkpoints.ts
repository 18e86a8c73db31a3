/**
 * Engine state through the checkpoint store: a checkpoint's files are the engine's `saveState()` files (the ONNX
 * engine: one `state.bin`, as every earlier version wrote it; a Hugging Face engine: safetensors, config and
 * processor files), committed by manifest and verified on load. These functions only move the files: what they
 * hold is the engine's business (engine/types.ts), so the activities work with any engine.
 */
import type { Engine, EngineFile, LoadStateOptions } from '../engine/types';
import type { CheckpointStore } from '../storage/checkpoints';
import type { CheckpointManifest } from '../storage/manifest';

export interface EngineCheckpointTarget {
  runId: string;
  stage: string;
  /** Defaults to the engine's optimizer step. */
  step?: number;
  configHash: string;
  metrics?: Record<string, number>;
  meta?: Record<string, unknown>;
}

export async function saveEngineCheckpoint(store: CheckpointStore, engine: Engine, target: EngineCheckpointTarget): Promise<CheckpointManifest> {
  const files = await engine.saveState();
  return store.save({
    runId: target.runId,
    stage: target.stage,
    step: target.step ?? engine.step(),
    configHash: target.configHash,
    metrics: target.metrics ?? {},
    meta: { ...target.meta, engine: engine.info.description, model: engine.config(), engineStep: engine.step() },
    files,
  });
}

/** Every file of a committed checkpoint (verified against its manifest), as engine state files. */
export async function readEngineFiles(store: CheckpointStore, checkpointKey: string): Promise<{ manifest: CheckpointManifest; files: EngineFile[] }> {
  const { manifest, files } = await store.load(checkpointKey);
  return { manifest, files: [...files].map(([name, data]) => ({ name, data })) };
}

/** Loads a committed checkpoint's engine state into `engine` (optimizer included, unless `freshOptimizer`). */
export async function loadEngineCheckpoint(store: CheckpointStore, checkpointKey: string, engine: Engine, options: LoadStateOptions = {}): Promise<CheckpointManifest> {
  const { manifest, files } = await readEngineFiles(store, checkpointKey);
  await engine.loadState(files, options);
  return manifest;
}
