/**
 * Resuming onto a checkpoint that does not read back intact (a file missing, or its size or sha256 not what its
 * manifest records): the checkpoint is quarantined — out of `latest`, its files kept with a marker saying why
 * (`CheckpointStore.quarantine`) — and the newest one before it is loaded instead. Training redoes the steps since
 * that one; data order and engine state are functions of (seed, step) and the checkpoint, so it ends with the
 * weights it would have had. Each quarantine is logged and returned as a run event that the stage workflow keeps
 * in its progress and output, so `sophia status`, the API and the report show it.
 */
import { log } from '@temporalio/activity';
import { CorruptCheckpointError } from '../common/errors';
import type { Engine, LoadStateOptions } from '../engine/types';
import type { CheckpointStore } from '../storage/checkpoints';
import type { CheckpointManifest } from '../storage/manifest';
import { loadEngineCheckpoint } from './engine-checkpoints';

/**
 * Something that happened to a run that its progress alone would not show: a corrupt checkpoint quarantined (by an
 * activity), or the run resumed after a failure (by the client that resumed it).
 */
export type RunEvent =
  | {
      kind: 'checkpoint-quarantined';
      /** When it happened (ISO time, the activity's clock). */
      at: string;
      /** Storage stage of the checkpoint (`sft`, `rm`, `grpo`, …). */
      stage: string;
      step: number;
      /** The checkpoint's directory key (its files are still there). */
      checkpointKey: string;
      message: string;
    }
  | {
      kind: 'resumed';
      at: string;
      /** The stage the failed execution was in, if any. */
      stage: string | undefined;
      /** Why the failed execution ended, and what the resumed one skips. */
      message: string;
    };

/**
 * Loads the newest committed checkpoint that reads back intact into `engine`, trying the stages in order (e.g. the
 * stage's own checkpoints, then its initial weights) and quarantining every corrupt one met on the way (appended to
 * `events`). Returns the manifest loaded, or undefined when none of them has an intact checkpoint.
 */
export async function loadNewestIntact(
  store: CheckpointStore,
  engine: Engine,
  where: { runId: string; stages: string[] },
  events: RunEvent[],
  options: LoadStateOptions = {},
): Promise<CheckpointManifest | undefined> {
  for (const stage of where.stages) {
    for (let manifest = await store.latest(where.runId, stage); manifest; manifest = await store.latest(where.runId, stage)) {
      try {
        await loadEngineCheckpoint(store, manifest.key, engine, options);
        return manifest;
      } catch (err) {
        if (!(err instanceof CorruptCheckpointError)) throw err;
        events.push(await quarantineCheckpoint(store, manifest, err));
      }
    }
  }
  return undefined;
}

/** Quarantines `manifest`'s checkpoint for `error`, logs it, and returns the run event that reports it. */
export async function quarantineCheckpoint(store: CheckpointStore, manifest: CheckpointManifest, error: CorruptCheckpointError): Promise<RunEvent> {
  const marker = await store.quarantine(manifest, error.message);
  const event: RunEvent = {
    kind: 'checkpoint-quarantined',
    at: marker.quarantinedAt,
    stage: manifest.stage,
    step: manifest.step,
    checkpointKey: manifest.key,
    message: `${error.message}; quarantined (its files are kept), resuming from the checkpoint before it`,
  };
  log.warn('corrupt checkpoint quarantined', { runId: manifest.runId, stage: manifest.stage, step: manifest.step, checkpointKey: manifest.key, reason: error.message });
  return event;
}
