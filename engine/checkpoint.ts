/**
 * Engine state through the checkpoint store: one `state.bin` (the engine's `saveState()` bytes: weights,
 * AdamW moments, step, RNG, model config) per checkpoint, committed by manifest and verified on load.
 */
import type { CheckpointStore } from '../storage/checkpoints';
import type { CheckpointManifest } from '../storage/manifest';
import type { Engine } from './types';

export const ENGINE_STATE_FILE = 'state.bin';

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
  const state = await engine.saveState();
  return store.save({
    runId: target.runId,
    stage: target.stage,
    step: target.step ?? engine.step(),
    configHash: target.configHash,
    metrics: target.metrics ?? {},
    meta: { ...target.meta, engine: engine.info.description, model: engine.config(), engineStep: engine.step() },
    files: [{ name: ENGINE_STATE_FILE, data: state }],
  });
}

/** Loads a committed checkpoint's engine state (verified against its manifest) into `engine`. */
export async function loadEngineCheckpoint(store: CheckpointStore, checkpointKey: string, engine: Engine): Promise<CheckpointManifest> {
  const manifest = await store.manifest(checkpointKey);
  await engine.loadState(await store.readFile(manifest, ENGINE_STATE_FILE));
  return manifest;
}
