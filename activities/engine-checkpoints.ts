/**
 * Engine state through the checkpoint store: a checkpoint's files are the engine's `saveState()` files (the ONNX
 * engine: one `state.bin`, as every earlier version wrote it; a Hugging Face engine: safetensors shards, config and
 * processor files), committed by manifest and verified on load. These functions only move the files: what they
 * hold is the engine's business (engine/types.ts), so the activities work with any engine.
 *
 * States pass through local disk, never whole through memory: a save has the engine write its files into a folder
 * under the scratch dir (`scratchFolder`: SOPHIA_SCRATCH, else the OS temp folder) and streams them from there to the
 * store; a load streams the checkpoint's files into such a folder (verifying each) and has the engine load them
 * from there. Each folder is removed when its save or load ends.
 *
 * A save that finds the storage full waits and saves again, inside the activity (`saveCheckpoint`): failing the
 * activity would have its retry redo every step since the last checkpoint, while the state to save is right here in
 * memory.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Context, log } from '@temporalio/activity';
import { formatDurationMs } from '../common/duration';
import { StorageFullError } from '../common/errors';
import { pretrainedParameters, pretrainedShape } from '../config/pretrained';
import { parameterCount } from '../engine/model/config';
import { engineFileStream, isOnDisk, readEngineFile } from '../engine/state-files';
import { observeCheckpoint } from '../observability/metrics';
import { type Engine, type EngineFile, type LoadStateOptions, type ModelSpec, type OnDiskEngineFile, isPretrained } from '../engine/types';
import type { CheckpointStore, SaveCheckpointInput } from '../storage/checkpoints';
import { checkpointKey as checkpointDirKey, manifestKey } from '../storage/keys';
import type { CheckpointManifest } from '../storage/manifest';
import { makeOwnedFolder, removeDeadFolders } from '../storage/owned-folders';
import { CHECKPOINT_KEEPALIVE_MS, STORAGE_FULL_SAVE_RETRY, type StorageFullRetrySettings, loadTemporalConfig } from '../temporal.config';

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
  heartbeat?: (phase: string) => void,
): Promise<CheckpointManifest> {
  const writer = new CheckpointWriter(store, { retry, ...(heartbeat ? { heartbeat } : {}) });
  await writer.save(engine, target);
  return (await writer.flush())!;
}

/** An engine state written to local disk, ready to commit (`input`), and the folder to remove when done. */
export interface StagedCheckpoint {
  input: SaveCheckpointInput;
  release(): Promise<void>;
}

/**
 * The engine's state saved into a fresh folder under the scratch dir (`scratchFolder`), as a checkpoint to commit:
 * files on disk are streamed from there when uploaded, never held in memory. This is the part of a checkpoint that
 * training waits for; the upload can go on beside it (`CheckpointWriter`).
 */
export async function stageEngineState(engine: Engine, target: EngineCheckpointTarget): Promise<StagedCheckpoint> {
  const dir = await scratchFolder('save');
  const release = () => rm(dir, { recursive: true, force: true });
  try {
    const files = await engine.saveState({ dir: path.join(dir, 'state') });
    const input: SaveCheckpointInput = {
      runId: target.runId,
      stage: target.stage,
      step: target.step ?? engine.step(),
      configHash: target.configHash,
      metrics: target.metrics ?? {},
      meta: { ...target.meta, engine: engine.info.description, model: engine.config(), parameters: await parametersOf(engine.config(), files), engineStep: engine.step() },
      files: files.map((f) => (isOnDisk(f) ? { name: f.name, stream: () => engineFileStream(f) } : { name: f.name, data: f.data })),
    };
    return { input, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/**
 * Checkpoints committed beside training. `save` waits only while the engine writes its state to local disk (the
 * training stall); the upload and the manifest commit then go on in the background while training continues. One
 * commit is in flight at a time: the next `save` and `flush` wait for it, so commits land in step order and the
 * scratch dir holds at most two states. `onCommitted` (metrics, retention, bookkeeping) runs in `flush`, in the
 * activity, after its manifest is committed. A background commit that failed is redone by `flush` from the staged
 * files, through `saveCheckpoint` (which waits out a full storage inside an activity); if that fails too, `flush`
 * throws and the activity's retry resumes from the last committed checkpoint. Callers `flush` before they end.
 */
export class CheckpointWriter {
  private inFlight: InFlightCommit | undefined;
  private readonly retry: StorageFullRetrySettings;
  private readonly heartbeat: ((phase: string) => void) | undefined;

  /**
   * `heartbeat(phase)` is called every `CHECKPOINT_KEEPALIVE_MS` while `save` or `flush` waits (the activity's own
   * heartbeat, with what it is waiting for), so that a long write or upload neither times the activity out nor
   * shows it as stalled.
   */
  constructor(
    private readonly store: CheckpointStore,
    options: { retry?: StorageFullRetrySettings; heartbeat?: (phase: string) => void } = {},
  ) {
    this.retry = options.retry ?? STORAGE_FULL_SAVE_RETRY;
    this.heartbeat = options.heartbeat;
  }

  /** Waits for the previous commit, stages the engine's state, starts committing it; returns its checkpoint key. */
  async save(engine: Engine, target: EngineCheckpointTarget, onCommitted: (manifest: CheckpointManifest) => Promise<void> = () => Promise.resolve()): Promise<string> {
    await this.flush();
    const step = target.step ?? engine.step();
    const started = performance.now();
    const staged = await this.keepAlive(`writing the checkpoint of step ${step}`, stageEngineState(engine, target));
    const { runId, stage } = staged.input;
    const dir = checkpointDirKey(runId, stage, step);
    try {
      // What the folder held before this commit: anything else in it, while no manifest commits the step, was written
      // by this commit's failed attempt (flush removes it before committing again).
      const before = new Set((await this.store.storage.listAll(`${dir}/`)).map((o) => o.key));
      const commit = this.store.save(staged.input);
      commit.catch(() => undefined); // observed by flush
      this.inFlight = { staged, commit, before, onCommitted, started };
    } catch (err) {
      await staged.release();
      throw err;
    }
    return dir;
  }

  /** The commit in flight, awaited (redone here if it failed), then its `onCommitted`; undefined if none. */
  async flush(): Promise<CheckpointManifest | undefined> {
    const job = this.inFlight;
    if (!job) return undefined;
    this.inFlight = undefined;
    const { runId, stage, step } = job.staged.input;
    try {
      let manifest: CheckpointManifest;
      try {
        manifest = await this.keepAlive(`committing the checkpoint of step ${step}`, job.commit);
      } catch (err) {
        // (A full storage is logged by saveCheckpoint, which waits for space.)
        if (!(err instanceof StorageFullError)) warn('checkpoint commit failed: committing it again', { runId, stage, step, error: err instanceof Error ? err.message : String(err) });
        const dir = checkpointDirKey(runId, stage, step);
        await removeFailedAttempt(this.store, dir, job.before);
        manifest = await this.keepAlive(`committing the checkpoint of step ${step}`, saveCheckpoint(this.store, job.staged.input, this.retry, job.before));
      }
      observeCheckpoint(stage, manifest.totalBytes, (performance.now() - job.started) / 1000);
      await job.onCommitted(manifest);
      return manifest;
    } finally {
      await job.staged.release();
    }
  }

  /** `flush` for an activity that is failing anyway: a commit error is logged, not thrown over the first error. */
  async flushQuietly(): Promise<void> {
    try {
      await this.flush();
    } catch (err) {
      warn('checkpoint commit lost with the failing activity', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** `work`, heartbeating `phase` every CHECKPOINT_KEEPALIVE_MS until it settles (when there is a heartbeat). */
  private async keepAlive<T>(phase: string, work: Promise<T>): Promise<T> {
    const beat = this.heartbeat;
    if (!beat) return work;
    const timer = setInterval(() => beat(phase), CHECKPOINT_KEEPALIVE_MS);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }
}

interface InFlightCommit {
  staged: StagedCheckpoint;
  commit: Promise<CheckpointManifest>;
  /** The checkpoint folder's keys before the commit started. */
  before: ReadonlySet<string>;
  onCommitted: (manifest: CheckpointManifest) => Promise<void>;
  /** performance.now() when the state began to be staged (the checkpoint's save time runs from there). */
  started: number;
}

/** Where engine states are staged on this machine: SOPHIA_SCRATCH (temporal.config.ts), else the OS temp folder. */
export function scratchRoot(env: NodeJS.ProcessEnv = process.env): string {
  return loadTemporalConfig(env).scratchDir ?? tmpdir();
}

/** What a scratch folder holds: a state being saved, a checkpoint being loaded, an evicted engine's state. */
export type ScratchUse = 'save' | 'load' | 'spill';
const SCRATCH_USES: readonly ScratchUse[] = ['save', 'load', 'spill'];
const scratchPrefix = (use: ScratchUse) => `sophia-${use}-`;
/** Scratch roots this process has cleaned of folders that dead processes left behind. */
const cleaned = new Set<string>();

/**
 * A fresh folder for `use` under the scratch dir (SOPHIA_SCRATCH, temporal.config.ts, else the OS temp folder),
 * named for this process (`storage/owned-folders.ts`); the caller removes it when done. The first one a process
 * makes under a root removes the folders there that killed processes of this host left (a worker killed mid-save
 * leaves a whole state: ~75 GB for a 7B policy), not those of live workers sharing the folder.
 */
export async function scratchFolder(use: ScratchUse, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const root = scratchRoot(env);
  if (!cleaned.has(root)) {
    cleaned.add(root);
    for (const u of SCRATCH_USES) {
      const removed = await removeDeadFolders(root, scratchPrefix(u));
      if (removed.length > 0) warn('removed scratch folders that killed processes left', { root, removed });
    }
  }
  return makeOwnedFolder(root, scratchPrefix(use));
}

/**
 * The model's parameter count, for reports: Sophia's architecture from its config; a Hugging Face model from the
 * config.json among its saved files (its backbone: a reward model's scalar head is not counted); undefined otherwise.
 */
export async function parametersOf(model: ModelSpec, files: readonly EngineFile[]): Promise<number | undefined> {
  if (!isPretrained(model)) return parameterCount(model);
  const config = files.find((f) => f.name === 'config.json');
  if (!config) return undefined;
  try {
    return pretrainedParameters(pretrainedShape(JSON.parse(new TextDecoder().decode(await readEngineFile(config))), 'config.json')).total;
  } catch {
    return undefined; // a model class the estimate does not know: the report says so
  }
}

/** A warning in the activity's log, or on stderr outside an activity. */
function warn(message: string, attrs: Record<string, unknown>): void {
  if (activityContext()) log.warn(message, attrs);
  else console.warn(message, attrs);
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
export async function saveCheckpoint(
  store: CheckpointStore,
  input: SaveCheckpointInput,
  retry: StorageFullRetrySettings = STORAGE_FULL_SAVE_RETRY,
  knownBefore?: ReadonlySet<string>,
): Promise<CheckpointManifest> {
  const ctx = activityContext();
  if (!ctx) return store.save(input);
  const dir = checkpointDirKey(input.runId, input.stage, input.step);
  // What the folder held before this save (`knownBefore`: before an earlier attempt of it): anything else in it, while
  // no manifest commits the step, was written by a failed attempt of this save (a file may land after its save
  // failed: the store's other upload lane goes on).
  const before = knownBefore ?? new Set((await store.storage.listAll(`${dir}/`)).map((o) => o.key));
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

/**
 * Every file of a committed checkpoint, verified against its manifest and streamed into a fresh folder under the
 * scratch dir, given to `use` as engine state files on disk; the folder is removed when `use` ends.
 */
export async function withEngineFiles<T>(store: CheckpointStore, checkpointKey: string, use: (files: OnDiskEngineFile[], manifest: CheckpointManifest) => Promise<T>): Promise<T> {
  const dir = await scratchFolder('load');
  try {
    const { manifest, files } = await store.loadInto(checkpointKey, path.join(dir, 'state'));
    return await use(files, manifest);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * How engines that only sample, score or give reference logprobs load a checkpoint: the weights without the AdamW
 * moments (a PyTorch engine then holds no optimizer state: a 7B policy's moments are twice its bf16 weights).
 */
export const INFERENCE_ONLY: LoadStateOptions = { freshOptimizer: true };

/** Loads a committed checkpoint's engine state into `engine` (optimizer included, unless `freshOptimizer`). */
export async function loadEngineCheckpoint(store: CheckpointStore, checkpointKey: string, engine: Engine, options: LoadStateOptions = {}): Promise<CheckpointManifest> {
  return withEngineFiles(store, checkpointKey, async (files, manifest) => {
    await engine.loadState(files, options);
    return manifest;
  });
}
